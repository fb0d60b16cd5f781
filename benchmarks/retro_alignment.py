"""Canonical against root-aligned SMILES for retrosynthesis, at a scale 2 CPU cores afford (issue 13).

The same model (the shipped pretrained one by default) is fine-tuned twice for the same number of
updates on the first N reactions of the USPTO-50k (Liu) train split:

* ``canonical``: the pairs as distributed (canonical product >> canonical reactants), N pairs an
  epoch, ``k`` epochs;
* ``rooted``: ``k`` root-aligned views per reaction (``bartsmiles prepare-retro``'s alignment), N×k
  pairs, one epoch.

Every ``--eval-every`` updates a checkpoint is kept; each is scored on a fixed, seeded sample of
valid-split reactions: teacher-forced token accuracy (fairseq's validation with
``--report-accuracy``, on that sample written as the model was trained) and top-1 / top-5 exact
match of the reactant set with beam search (the product in canonical form, which is also the
first root-aligned view). The result is a learning curve per spelling:
``OUT.json``, ``OUT.md`` and ``OUT.png``. A killed run resumes: finished trainings and scored
checkpoints are kept, and an unfinished training continues from its ``checkpoint_last.pt``. A
larger ``--updates`` continues a finished one the same way (the learning-rate schedule still ends
at one epoch of the training pairs).

    python benchmarks/retro_alignment.py --train 4000 --k 5 --updates 625 --eval-every 125 \\
        --sample 500 --maps runs/retro_rooted/maps --work runs/retro_alignment \\
        --out benchmarks/results/retro_alignment
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bartsmiles.data.atom_mapping import build_root_aligned, read_reaction_lines
from bartsmiles.data.registry import locate
from bartsmiles.evaluation.machine import machine_info
from bartsmiles.evaluation.retro import topk_accuracy
from bartsmiles.model.checkpoint import safe_load
from bartsmiles.seq2seq import BartSmilesSeq2Seq
from bartsmiles.training.seq2seq import Seq2SeqConfig

logger = logging.getLogger("retro_alignment")
SPELLINGS = ("canonical", "rooted")


def _write_smi(path: Path, pairs) -> None:
    path.write_text("".join(f"{p} >> {r}\n" for p, r in pairs))


def prepare(args, work: Path) -> tuple[Path, Path, list[tuple[str, str]]]:
    """The two data folders and the scoring sample (product, reactants)."""
    liu = Path(args.source) if args.source else locate("uspto50k_train").parent
    train = read_reaction_lines(liu / "retrosynthesis-train.smi")[: args.train]
    valid = read_reaction_lines(liu / "retrosynthesis-valid.smi")
    rng = np.random.default_rng(args.seed)
    sample = [valid[i] for i in sorted(rng.choice(len(valid), size=min(args.sample, len(valid)), replace=False))]
    canonical, rooted, source = work / "canonical_data", work / "rooted_data", work / "source"
    for folder in (canonical, source):
        folder.mkdir(parents=True, exist_ok=True)
    _write_smi(canonical / "retrosynthesis-train.smi", train)
    _write_smi(canonical / "retrosynthesis-valid.smi", sample)
    _write_smi(source / "retrosynthesis-train.smi", train)
    _write_smi(source / "retrosynthesis-valid.smi", sample)
    _write_smi(source / "retrosynthesis-test.smi", sample)
    maps = work / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    if args.maps and not (maps / "train.csv").is_file() and (Path(args.maps) / "train.csv").is_file():
        # the train file's first N lines have the same indices as in the full split: reuse their maps
        with open(Path(args.maps) / "train.csv", newline="") as fh, open(maps / "train.csv", "w", newline="") as out:
            writer = csv.writer(out)
            for row in csv.reader(fh):
                if row and (row[0] == "index" or (row[0].isdigit() and int(row[0]) < args.train)):
                    writer.writerow(row)
    if not (rooted / "report.json").is_file():
        build_root_aligned(source, rooted, k_train=args.k, k_valid=1, seed=args.seed, cache=maps,
                           progress=not args.quiet)
    return canonical, rooted, sample


def train(args, spelling: str, data: Path, work: Path) -> Path:
    """Fine-tune up to ``args.updates`` updates, keeping a checkpoint every ``eval_every``; returns the run folder.

    ``done`` records each training call (``parts``: the update it was asked to reach, its wall time and
    torch threads) and the total.  A run done to fewer updates than asked continues from its
    ``checkpoint_last.pt`` (optimizer and schedule as saved) and adds a part."""
    run = work / spelling
    record = json.loads((run / "done").read_text()) if (run / "done").is_file() else None
    if record is not None and record.get("updates", args.updates) >= args.updates:
        return run
    epochs = args.k if spelling == "canonical" else 1
    flags = ["--max-update", str(args.updates), "--save-interval-updates", str(args.eval_every),
             "--keep-interval-updates", "-1", "--validate-interval-updates", str(args.eval_every),
             "--report-accuracy"]
    # a killed run (or one given more --updates) continues its checkpoint_last.pt: optimizer and schedule as saved
    cfg = Seq2SeqConfig(data=str(data), pretrained=args.pretrained, arch=args.arch if not args.pretrained else "",
                        save_dir=str(run), epochs=epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                        skip_invalid=True, source_views="rooted" if spelling == "rooted" else "random",
                        log_file=str(run / "train.log"), extra_args=tuple(flags), cpu=True, resume=True)
    t0 = time.perf_counter()
    BartSmilesSeq2Seq(cfg).fit_data()
    parts = (record or {}).get("parts", []) + [{"to_update": args.updates, "train_s": round(time.perf_counter() - t0, 1),
                                                 "threads": torch.get_num_threads()}]
    (run / "done").write_text(json.dumps({"updates": args.updates, "train_s": round(sum(p["train_s"] for p in parts), 1),
                                          "parts": parts}))
    return run


def _valid_accuracy(run: Path) -> dict[int, float]:
    """Teacher-forced valid token accuracy (%) by update, from fairseq's log."""
    out = {}
    for line in (run / "train.log").read_text().splitlines():
        if line.startswith("{") and '"valid_accuracy"' in line:
            record = json.loads(line)
            out[int(record["valid_num_updates"])] = float(record["valid_accuracy"])
    return out


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(updates, file) of every kept checkpoint, the final one included: fairseq writes no interval
    checkpoint at the end of training, only checkpoint_last.pt."""
    found = {int(p.stem.split("_")[-1]): p for p in run.glob("checkpoint_*_*.pt")}
    last = run / "checkpoint_last.pt"
    if (run / "done").is_file() and last.is_file():
        updates = int(safe_load(last)["optimizer_history"][-1]["num_updates"])
        found.setdefault(updates, last)
    return sorted(found.items())


def score(args, run: Path, sample, results: dict, key: str) -> None:
    products, reactants = [p for p, _ in sample], [r for _, r in sample]
    for updates, ckpt in _checkpoints(run):
        done = {p["updates"] for p in results["curves"].setdefault(key, [])}
        if updates in done:
            continue
        t0 = time.perf_counter()
        model = BartSmilesSeq2Seq.load(ckpt)
        preds = model.generate(products, beam=args.beam, n_best=args.beam, augment=0, batch_size=args.gen_batch)
        top = topk_accuracy(preds, reactants, ks=(1, 5) if args.beam >= 5 else (1,))
        results["curves"][key].append({"updates": updates, **top, "score_s": round(time.perf_counter() - t0, 1)})
        results["curves"][key].sort(key=lambda p: p["updates"])
        save(args, results)
    accuracy = _valid_accuracy(run)
    for point in results["curves"].get(key, []):
        point["valid_token_accuracy"] = accuracy.get(point["updates"])
    save(args, results)


def save(args, results: dict) -> None:
    """Write OUT.json and OUT.md; the curves of a spelling scored by another process (``--only``) are kept."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    on_disk = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    mine = [args.only] if args.only else list(SPELLINGS)
    curves = {k: v for k, v in on_disk.get("curves", {}).items() if k not in mine}
    curves.update({k: v for k, v in results["curves"].items() if k in mine})
    results["curves"] = curves
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    lines = [f"Command: `{results['command']}`", "",
             f"Machine: {results['machine'].get('cpu', '?')}, {results['machine'].get('usable_cpus', '?')} usable CPUs. "
             f"First {args.train} Liu train reactions; " + {
                 None: f"{args.k} root-aligned views each against {args.k} epochs of the canonical pairs",
                 "rooted": f"{args.k} root-aligned views each (the canonical spelling not run)",
                 "canonical": f"{args.k} epochs of the canonical pairs (the rooted spelling not run)"}[args.only] +
             f" ({args.updates} updates of {args.batch_size}); scored on {len(results['sample'])} "
             f"valid reactions (seed {args.seed}), beam {args.beam}.", "",
             "| spelling | updates | valid token accuracy (%) | top-1 | top-5 | invalid top-1 |", "|---|---|---|---|---|---|"]
    for key in SPELLINGS:
        for p in results["curves"].get(key, []):
            acc = "—" if p.get("valid_token_accuracy") is None else f"{p['valid_token_accuracy']:.1f}"
            lines.append(f"| {key} | {p['updates']} | {acc} | {p['top1']:.3f} | {p.get('top5', float('nan')):.3f} | "
                         f"{p['invalid_top1']:.3f} |")
    if results.get("edit_distance"):
        ed = results["edit_distance"]
        lines += ["", f"Mean token edit distance between source and target (train, first view): canonical "
                      f"{ed['canonical']:.1f}, root-aligned {ed['root_aligned']:.1f} (n = {ed['n']})."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def plot(args, results: dict) -> None:
    try:
        import matplotlib  # lazy: the optional "viz" extra
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for key in SPELLINGS:
        pts = results["curves"].get(key, [])
        if not pts:  # a run of one spelling (--only) draws one curve
            continue
        x = [p["updates"] for p in pts]
        axes[0].plot(x, [p.get("valid_token_accuracy") or math.nan for p in pts], marker="o", label=key)
        axes[1].plot(x, [100 * p["top1"] for p in pts], marker="o", label=key)
    axes[0].set(xlabel="updates", ylabel="valid token accuracy (%)")
    axes[1].set(xlabel="updates", ylabel="top-1 (%)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(Path(args.out).with_suffix(".png"), dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=4000, help="first N reactions of the Liu train split")
    p.add_argument("--k", type=int, default=5, help="root-aligned views per reaction (= canonical epochs)")
    p.add_argument("--updates", type=int, default=625, help="updates per spelling")
    p.add_argument("--eval-every", type=int, default=125, help="updates between scored checkpoints")
    p.add_argument("--sample", type=int, default=500, help="valid reactions scored (seeded sample)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--gen-batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrained", default="pretrained/model.pt", help="start from this model ('' = random init)")
    p.add_argument("--arch", default="bartsmiles_small", help="architecture without --pretrained")
    p.add_argument("--source", default="", help="Liu split folder (default: the registered one)")
    p.add_argument("--maps", default="", help="atom-map cache of the full train split to reuse (prepare-retro's OUT/maps)")
    p.add_argument("--work", default="runs/retro_alignment")
    p.add_argument("--out", default="benchmarks/results/retro_alignment")
    p.add_argument("--only", choices=SPELLINGS, default=None, help="train/score one spelling (two processes in parallel)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    canonical, rooted, sample = prepare(args, work)
    out = Path(args.out).with_suffix(".json")
    results = json.loads(out.read_text()) if out.is_file() else {"curves": {}}
    report = json.loads((rooted / "report.json").read_text())
    results.update(command="python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
                   machine=machine_info(), date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), sample=[p for p, _ in sample],
                   settings={k: v for k, v in vars(args).items()},
                   edit_distance=report.get("edit_distance", {}).get("train"),
                   mapped=report.get("mapped"), unmapped_train=len(report.get("unmapped", {}).get("train", [])))
    for key, data in (("canonical", canonical), ("rooted", rooted)):
        if args.only and key != args.only:
            continue
        run = train(args, key, data, work)
        score(args, run, sample, results, key)
        results = json.loads(out.read_text())
    plot(args, results)
    print(Path(args.out).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
