"""Does explaining a seed ensemble find the rule's atoms better than explaining one model?

Reads a finished ground-truth set of :mod:`attribution_groundtruth` (its ``--work-dir``: each task's
molecules and one fine-tuned model per seed, cached) and, per task, attributes the same explained
positives with the default method (``Attributor``'s defaults, environment radius 2):

* each seed's model alone (what the ground-truth table reports, recomputed here in this process);
* the ensemble of all the seeds' models, ``Attributor([model_0, model_1, ...])``: the attribution
  of the members' mean logit, which is the mean of their attributions
  (:func:`bartsmiles.attribution.result.mean_scores`).

Per task it writes ``TASK/ensemble_scores.json`` (cached; ``--rescore`` recomputes), and a last run
over every task writes ``OUT/attribution_ensemble.{json,md}`` with the ECFP4+RF map's atom ROC-AUC
from the set's ``scores.json`` (the mean over the seeds' forests) beside them.  Molecules per second
are measured in one process; the ensemble costs one run per member.

The committed runs (two processes of one thread split by ``--tasks``, then one all-cached run), e.g.
for the user-default set::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python \\
        benchmarks/attribution_ensemble.py --work-dir runs/attribution_gt_default \\
        --out benchmarks/results/attribution_ensemble_finetune_defaults

(the lr 1e-4 set), and the same for ``runs/attribution_gt`` (``_3epochs``),
``runs/attribution_gt_n1200_rand05`` (``_n1200_randomized_smiles``) and ``runs/attribution_gt_user``
(``_finetune_config_defaults``: ``FinetuneConfig``'s own defaults, lr 3e-5).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bartsmiles.attribution import Attributor
from bartsmiles.attribution.groundtruth import atom_auc, top_k_hit_rate
from bartsmiles.evaluation.machine import machine_info
from bartsmiles.model.predictor import PropertyPredictor

ROOT = Path(__file__).resolve().parents[1]


def _groundtruth():
    """The ground-truth script as a module (its TASKS and task folders)."""
    spec = importlib.util.spec_from_file_location("attribution_groundtruth", ROOT / "benchmarks" / "attribution_groundtruth.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def score_task(folder: Path, seeds: list[int], n_explain: int) -> dict:
    frame = pd.read_json(folder / "molecules.json", orient="records")
    test = frame[frame.split == "test"]
    positives = test[test.label == 1.0].head(n_explain)
    smiles, truth = list(positives.smiles), [set(t) for t in positives.truth]
    predictors = [PropertyPredictor(json.loads((folder / f"seed{s}" / "model.json").read_text())["checkpoint"])
                  for s in seeds]

    def scores(attributor) -> dict:
        start = time.perf_counter()
        results = attributor.attribute(smiles)
        seconds = time.perf_counter() - start
        if any(a.smiles != s for a, s in zip(results, smiles)):
            raise SystemExit(f"{folder}: a molecule was rewritten before attribution; atom indices would differ")
        called = np.array([a.output for a in results]) > 0  # the explained output, as computed for the scores
        aucs = [atom_auc(a.environment_scores, t) for a, t in zip(results, truth)]
        hits = [top_k_hit_rate(a.environment_scores, t) for a, t in zip(results, truth)]
        return {"atom_auc": float(np.mean(aucs)), "top_k_hit": float(np.mean(hits)),
                "atom_auc_called": float(np.mean([a for a, c in zip(aucs, called) if c])) if called.any() else None,
                "n_called": int(called.sum()), "n_molecules": len(aucs), "method": attributor.method,
                "precision": attributor.precision, "molecules_per_second": round(len(aucs) / seconds, 3)}

    single = {str(s): scores(Attributor(p)) for s, p in zip(seeds, predictors)}
    ensemble = scores(Attributor(predictors))
    rf = [json.loads((folder / f"seed{s}" / "scores.json").read_text())["methods"].get("ecfp_rf", {}).get("atom_auc")
          for s in seeds]
    return {"seeds": seeds, "single": single, "ensemble": ensemble,
            "ecfp_rf": float(np.mean(rf)) if all(r is not None for r in rf) else None}


def to_markdown(report: dict) -> str:
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    lines = ["# Explaining a seed ensemble (default method, environment radius 2)", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['machine'].get('cpu', '?')}, {report['machine'].get('cpu_count')} cores; "
             f"{report['started']}. Set: `{report['work_dir']}`, seeds {report['seeds']}. Atom ROC-AUC (top-k hit "
             "rate in brackets) over the explained positives; single = the mean over the seeds' models explained "
             "alone; ensemble = `Attributor([all seeds])`, the members' mean logit explained. The goal's test: at "
             "least ECFP4+RF - 0.02 on a single pattern, above ECFP4+RF on AND and OR.", "",
             "| task | single (seed mean) | ensemble | ECFP4+RF map | single meets goal | ensemble meets goal |",
             "|---|---|---|---|---|---|"]
    met = {"single": 0, "ensemble": 0}
    for t in report["tasks"]:
        single = float(np.mean([s["atom_auc"] for s in t["single"].values()]))
        single_hit = float(np.mean([s["top_k_hit"] for s in t["single"].values()]))
        ens, rf = t["ensemble"]["atom_auc"], t["ecfp_rf"]
        composite = t["kind"] in ("and", "or")
        def ok(x: float) -> str:  # the count rule is not part of the goal
            if rf is None or t["kind"] == "count":
                return "n/a"
            return "yes" if (x > rf if composite else x >= rf - 0.02) else "no"

        for key, value in (("single", single), ("ensemble", ens)):
            met[key] += ok(value) == "yes"
        lines.append(f"| {t['task'].replace('|', chr(92) + '|')} | {fmt(single)} ({fmt(single_hit)}) | {fmt(ens)} "
                     f"({fmt(t['ensemble']['top_k_hit'])}) | {fmt(rf)} | {ok(single)} | {ok(ens)} |")
    speed_single = np.mean([s["molecules_per_second"] for t in report["tasks"] for s in t["single"].values()])
    speed_ens = np.mean([t["ensemble"]["molecules_per_second"] for t in report["tasks"]])
    n_goal = sum(t["kind"] != "count" for t in report["tasks"])
    lines += ["", f"Tasks meeting the goal's test (7 single patterns, AND, OR): single {met['single']} of {n_goal}, "
              f"ensemble {met['ensemble']} of {n_goal}. Molecules/s (mean over tasks, this process): single "
              f"{speed_single:.1f}, ensemble of {len(report['seeds'])} {speed_ens:.1f}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work-dir", required=True, help="a finished ground-truth set (attribution_groundtruth.py --work-dir)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated model seeds of the set: the ensemble's members")
    p.add_argument("--tasks", default="", help="comma-separated task names (default: every task of the ground truth)")
    p.add_argument("--n-explain", type=int, default=25, help="positive test molecules attributed per task (as the set)")
    p.add_argument("--rescore", action="store_true", help="recompute although cached")
    p.add_argument("--out", default="", help="folder for attribution_ensemble.{json,md} (only when every task is scored)")
    args = p.parse_args(argv)
    gt = _groundtruth()
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in wanted if t not in {r.name for r in gt.TASKS}]
    if unknown:
        print(f"attribution_ensemble: unknown task(s) {unknown}; tasks: {[r.name for r in gt.TASKS]}", file=sys.stderr)
        return 2
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    tasks = []
    for rule in gt.TASKS:
        if wanted and rule.name not in wanted:
            continue
        folder = Path(args.work_dir) / gt.slug(rule.name)
        missing = [s for s in seeds if not (folder / f"seed{s}" / "model.json").is_file()]
        if missing:
            print(f"attribution_ensemble: {folder} has no model for seed(s) {missing}: run "
                  f"attribution_groundtruth.py with this --work-dir first", file=sys.stderr)
            return 2
        path = folder / "ensemble_scores.json"
        cached = json.loads(path.read_text()) if path.is_file() and not args.rescore else None
        if cached is None or cached.get("seeds") != seeds or cached.get("n_explain") != args.n_explain:
            cached = {**score_task(folder, seeds, args.n_explain), "n_explain": args.n_explain,
                      "machine": machine_info(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            path.write_text(json.dumps(cached, indent=2))
        tasks.append({"task": rule.name, "kind": rule.kind, **cached})
        single = np.mean([s["atom_auc"] for s in cached["single"].values()])
        print(f"{rule.name}: single {single:.3f}, ensemble {cached['ensemble']['atom_auc']:.3f}, "
              f"ECFP4+RF {cached['ecfp_rf']}", flush=True)
    if args.out and not wanted:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report = {"command": "python benchmarks/attribution_ensemble.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  "machine": machine_info(), "started": started, "work_dir": args.work_dir, "seeds": seeds,
                  "tasks": tasks}
        (out / "attribution_ensemble.json").write_text(json.dumps(report, indent=2))
        (out / "attribution_ensemble.md").write_text(to_markdown(report))
        print(f"wrote {out / 'attribution_ensemble.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
