"""Do attributions find the atoms that decide the label?  A synthetic ground-truth benchmark.

For each task a label is *defined* by a SMARTS pattern from the shipped library
(``bartsmiles/attribution/functional_groups.json``): a MOSES molecule is positive when the
pattern matches, and the ground-truth atoms of a positive are the union of its matches.
Balanced train / valid / test sets are drawn from MOSES; a BARTSmiles model is fine-tuned on
them (:func:`bartsmiles.training.finetuning.finetune`); then, for every positive test molecule, the
atom scores are compared with the ground-truth atoms by a per-molecule ROC-AUC (atoms ranked by
score; molecules whose atoms are all ground truth are skipped), averaged over molecules.

Attributions compared:

* ``bartsmiles_ig`` -- :class:`bartsmiles.attribution.Attributor` (IG at the encoder input
  embeddings, baseline ``--baseline``, ``--n-steps`` steps), atom scores via the token alignment;
* ``ecfp_rf`` -- a random forest on ECFP4 bit vectors with RDKit's
  ``SimilarityMaps.GetAtomicWeightsForModel`` (prediction drop when an atom's bits are removed);
* ``random`` -- random atom scores (expected AUC 0.5).

Writes ``OUT/attribution_groundtruth.json`` and ``OUT/attribution_groundtruth.md``.

The committed run (2 CPU cores shared with other jobs, about 30 minutes; the shipped model)::

    PYTHONPATH=. python benchmarks/attribution_groundtruth.py --pretrained pretrained/model.pt \\
        --tasks "aromatic halide,nitrile,sulfonamide" --n-train 1200 --n-valid 200 --n-test 200 \\
        --epochs 3 --batch-size 32 --lr 1e-4 --n-steps 32 --rf-trees 200 --seed 0

Smoke run (seconds, random-init tiny model, numbers meaningless)::

    PYTHONPATH=. python benchmarks/attribution_groundtruth.py --smoke --out /tmp/gt_smoke
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
MOSES = Path(os.environ.get("BARTSMILES_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data") \
    / "pretrain" / "moses" / "train.csv.gz"


def read_moses(path: Path, limit: int) -> list[str]:
    frame = pd.read_csv(path, nrows=limit)
    column = "SMILES" if "SMILES" in frame.columns else frame.columns[0]
    return [str(s) for s in frame[column].dropna()]


def label_task(smiles: list[str], smarts: str) -> tuple[list[str], list[float], list[set]]:
    """Labels and ground-truth atom sets of the parsable ``smiles`` for ``smarts``."""
    from bartsmiles.core.chem import match_smarts, parse_smiles
    from bartsmiles.errors import InvalidSmilesError

    kept, labels, truth = [], [], []
    for s in smiles:
        try:
            mol = parse_smiles(s)
        except InvalidSmilesError:
            continue
        atoms = {a for match in match_smarts(mol, smarts) for a in match}
        kept.append(s)
        labels.append(float(bool(atoms)))
        truth.append(atoms)
    return kept, labels, truth


def balanced_sample(labels: list[float], n: int, rng: np.random.Generator) -> list[int]:
    pos = [i for i, y in enumerate(labels) if y == 1.0]
    neg = [i for i, y in enumerate(labels) if y == 0.0]
    k = min(n // 2, len(pos), len(neg))
    if k < 2:
        raise SystemExit(f"not enough positives/negatives ({len(pos)}/{len(neg)}) for a balanced sample of {n}")
    picked = list(rng.choice(pos, k, replace=False)) + list(rng.choice(neg, k, replace=False))
    rng.shuffle(picked)
    return [int(i) for i in picked]


def atom_auc(scores: np.ndarray, truth: set) -> float | None:
    from sklearn.metrics import roc_auc_score

    y = np.zeros(len(scores))
    y[list(truth)] = 1
    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, scores))


def ecfp_rf_weights(train_smiles, train_y, test_smiles, seed: int, n_estimators: int) -> list[np.ndarray]:
    from rdkit import DataStructs
    from rdkit.Chem.Draw import SimilarityMaps
    from sklearn.ensemble import RandomForestClassifier

    from bartsmiles.core.chem import parse_smiles

    def bits(fp) -> np.ndarray:
        arr = np.zeros((fp.GetNumBits(),), dtype=np.uint8)
        DataStructs.ConvertToNumpyArray(fp, arr)
        return arr

    def fp_function(mol, atom_id=-1):
        return SimilarityMaps.GetMorganFingerprint(mol, atomId=atom_id, radius=2, fpType="bv", nBits=2048)

    from rdkit.rdBase import BlockLogs

    quiet = BlockLogs()  # GetMorganFingerprint logs a deprecation notice per call
    try:
        X = np.stack([bits(fp_function(parse_smiles(s))) for s in train_smiles])
        forest = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=1).fit(X, train_y)
        predict = lambda fp: float(forest.predict_proba(bits(fp)[None, :])[0, 1])  # noqa: E731
        return [np.asarray(SimilarityMaps.GetAtomicWeightsForModel(parse_smiles(s), fp_function, predict),
                           dtype=float) for s in test_smiles]
    finally:
        del quiet


def run_task(name: str, smarts: str, pool: list[str], args, rng: np.random.Generator, workdir: Path) -> dict:
    from bartsmiles.attribution import Attributor
    from bartsmiles.training.finetuning import FinetuneConfig, finetune

    smiles, labels, truth = label_task(pool, smarts)
    n_total = args.n_train + args.n_valid + args.n_test
    picked = balanced_sample(labels, n_total, rng)
    parts = {"train": picked[: args.n_train], "valid": picked[args.n_train: args.n_train + args.n_valid],
             "test": picked[args.n_train + args.n_valid:]}
    folder = workdir / name.replace(" ", "_").replace("/", "_")
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, idx in parts.items():
        pd.DataFrame({"smiles": [smiles[i] for i in idx], "label": [labels[i] for i in idx]}).to_csv(
            folder / "data" / f"{split}.csv", index=False)
    start = time.perf_counter()
    cfg = FinetuneConfig(data=str(folder / "data"), pretrained=args.pretrained or "", save_dir=str(folder / "run"),
                         arch="" if args.pretrained else args.arch, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, keep_last_epochs=1, seed=args.seed, num_workers=0, log_interval=100)
    result = finetune(cfg)
    train_seconds = time.perf_counter() - start

    test_pos = [i for i in parts["test"] if labels[i] == 1.0]
    start = time.perf_counter()
    attributions = Attributor(result.best_checkpoint).attribute(
        [smiles[i] for i in test_pos], baselines=args.baseline, n_steps=args.n_steps, on_delta="ignore")
    ig_seconds = time.perf_counter() - start
    rf = ecfp_rf_weights([smiles[i] for i in parts["train"]], [labels[i] for i in parts["train"]],
                         [smiles[i] for i in test_pos], args.seed, args.rf_trees)
    methods = {"bartsmiles_ig": [a.atom_scores for a in attributions], "ecfp_rf": rf,
               "random": [rng.normal(size=len(a.atom_scores)) for a in attributions]}
    summary = {}
    for method, per_mol in methods.items():
        aucs = [atom_auc(scores, truth[i]) for scores, i in zip(per_mol, test_pos)]
        aucs = [x for x in aucs if x is not None]
        summary[method] = {"mean_atom_auc": float(np.mean(aucs)) if aucs else None,
                           "std_atom_auc": float(np.std(aucs)) if aucs else None, "n_molecules": len(aucs)}
    return {"task": name, "smarts": smarts, "sizes": {k: len(v) for k, v in parts.items()},
            "n_test_positives": len(test_pos), "model_valid_metric": result.best_valid_metric,
            "model_test_metric": result.test_metric, "train_seconds": train_seconds, "ig_seconds": ig_seconds,
            "max_abs_delta": float(max((abs(a.delta) for a in attributions), default=0.0)),
            "methods": summary}


def to_markdown(report: dict) -> str:
    lines = ["# Attribution ground truth (synthetic SMARTS tasks on MOSES)", "",
             *([f"Command: `{report['command']}`", ""] if report.get("command") else []),
             f"Model: {report['config']['pretrained'] or report['config']['arch'] + ' (random init)'}; "
             f"IG baseline {report['config']['baseline']}, {report['config']['n_steps']} steps. "
             "Per-molecule atom ROC-AUC (ground truth = atoms of the SMARTS matches), mean over positive "
             "test molecules.", "",
             "| task | test ROC-AUC of the model | BARTSmiles IG | ECFP4+RF (RDKit) | random | molecules | max abs IG delta |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    for t in report["tasks"]:
        m = t["methods"]
        lines.append(f"| {t['task']} | {fmt(t['model_test_metric'])} | {fmt(m['bartsmiles_ig']['mean_atom_auc'])} | "
                     f"{fmt(m['ecfp_rf']['mean_atom_auc'])} | {fmt(m['random']['mean_atom_auc'])} | "
                     f"{m['bartsmiles_ig']['n_molecules']} | {t['max_abs_delta']:.3g} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--moses", default=str(MOSES), help="MOSES CSV(.gz) with a SMILES column")
    p.add_argument("--pool", type=int, default=200000, help="MOSES rows read")
    p.add_argument("--tasks", default="aromatic halide,nitrile,sulfonamide",
                   help="comma-separated names from the shipped SMARTS library (MOSES's filters removed nitro "
                        "groups, aldehydes and most alkyl halides: such tasks have no positives)")
    p.add_argument("--pretrained", default="", help="pretrained checkpoint (empty: random init of --arch)")
    p.add_argument("--arch", default="bartsmiles_small")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-valid", type=int, default=400)
    p.add_argument("--n-test", type=int, default=400)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--baseline", default="pad", choices=("pad", "mask", "eos"))
    p.add_argument("--n-steps", type=int, default=50)
    p.add_argument("--rf-trees", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--work-dir", default="runs/attribution_groundtruth",
                   help="fine-tuning runs and data (large: checkpoints); empty: OUT/attribution_groundtruth_runs")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, bartsmiles_tiny, 1 task: checks the script runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.pool, args.n_train, args.n_valid, args.n_test = min(args.pool, 3000), 40, 16, 16
        args.epochs, args.n_steps, args.rf_trees, args.arch, args.lr = 2, 8, 20, "bartsmiles_tiny", 1e-3
        args.tasks = args.tasks.split(",")[1] if "," in args.tasks else args.tasks

    import torch

    from bartsmiles.attribution import functional_groups

    if args.smoke:
        torch.set_num_threads(1)
    library = {g.name: g.smarts for g in functional_groups()}
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in names if t not in library]
    if unknown:
        raise SystemExit(f"unknown task(s) {unknown}; choose from {sorted(library)}")
    rng = np.random.default_rng(args.seed)
    pool = read_moses(Path(args.moses), args.pool)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir) if args.work_dir else out / "attribution_groundtruth_runs"
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    tasks = [run_task(name, library[name], pool, args, rng, work) for name in names]
    from bartsmiles.evaluation.machine import machine_info

    report = {"command": " ".join(["python", "benchmarks/attribution_groundtruth.py", *(argv or sys.argv[1:])]),
              "started": started, "machine": machine_info(),
              "config": {k: v for k, v in vars(args).items()}, "tasks": tasks,
              "platform": {"python": platform.python_version(), "torch": torch.__version__,
                           "device": "cuda" if torch.cuda.is_available() else "cpu"}}
    (out / "attribution_groundtruth.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "attribution_groundtruth.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
