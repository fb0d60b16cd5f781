"""Calibrated uncertainty on the protocol's test sets: split-conformal coverage and ensemble spread.

For each dataset and split kind, three fine-tuned members (seeds 0, 1, 2; same split) form an
ensemble.  Everything is computed from the members' predictions on the validation and test
splits:

* **conformal** (:mod:`bartsmiles.model.uncertainty`): calibrated on the validation split, at
  90 % nominal; regression -> empirical coverage of the test labels by the intervals and the
  mean interval width (dataset units); classification -> coverage of the test labels by the
  prediction sets and the mean set size.  Reported for the ensemble mean and for each single
  member (mean over the three seeds).
* **ensemble spread**: Spearman rank correlation of the members' standard deviation with the
  absolute error of the ensemble mean (regression: |y - mean|; classification: |y - mean P(1)|).

Scaffold split: the checkpoints the background benchmark keeps
(``runs/bench_cpu2/bartsmiles_<dataset>_scaffold_seed<s>/checkpoint_best.pt``, 5 epochs, lr 1e-4,
batch 32), read only; a run counts once its ``finetune_result.json`` exists.  Random split (the
contrast, where exchangeability holds): fine-tuned here with the same settings under
``runs/uncertainty/random/`` on one random 80/10/10 split (split seed 0) for all three seeds,
so that the members share their test set.

Resumable: each member's validation and test predictions are cached in
``runs/uncertainty/preds/``; each random-split run resumes (finetune) or is skipped when done.
Rerun the same command when more checkpoints exist; a dataset with fewer than three members is
reported as missing.

    nice -n 10 env OMP_NUM_THREADS=1 BARTSMILES_DATA=/work/shared/data \\
        .venv/bin/python benchmarks/uncertainty.py --train-random esol freesolv

Writes ``benchmarks/results/uncertainty.json`` and ``benchmarks/results/uncertainty.md``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from bartsmiles.core.metrics import score
from bartsmiles.data.registry import get_spec
from bartsmiles.evaluation.machine import machine_info
from bartsmiles.model.predictor import PropertyPredictor
from bartsmiles.model.resolve import shipped_model_dir
from bartsmiles.model.uncertainty import Calibration
from bartsmiles.tasks.property_table import read_property_splits
from bartsmiles.training.finetuning import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCAFFOLD_RUNS = ROOT / "runs" / "bench_cpu2"
WORK = ROOT / "runs" / "uncertainty"
DATASETS = ("esol", "freesolv", "lipo", "bbbp", "bace")
SEEDS = (0, 1, 2)
SETTINGS = {"epochs": 5, "lr": 1e-4, "batch_size": 32}


def run_dir(dataset: str, split: str, seed: int) -> Path:
    if split == "scaffold":
        return SCAFFOLD_RUNS / f"bartsmiles_{dataset}_scaffold_seed{seed}"
    return WORK / "random" / f"{dataset}_seed{seed}"


def train_random(dataset: str, seed: int) -> None:
    """Fine-tune one random-split member (skipped when done; a killed run resumes)."""
    save = run_dir(dataset, "random", seed)
    if (save / "finetune_result.json").is_file():
        return
    t0 = time.perf_counter()
    cfg = FinetuneConfig(data=dataset, pretrained=str(shipped_model_dir() / "model.pt"), split="random",
                         split_seed=0, seed=seed, save_dir=str(save), keep_last_epochs=0, progress=False,
                         **SETTINGS)
    result = finetune(cfg)
    print(f"trained {dataset} random seed {seed}: test {result.metric} {result.test_metric:.4f} "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)


def member_predictions(dataset: str, split: str, seed: int) -> dict | None:
    """{valid, test: (predictions, labels)} of one finished run, cached; None while it is not there."""
    save = run_dir(dataset, split, seed)
    if not (save / "finetune_result.json").is_file() or not (save / "checkpoint_best.pt").is_file():
        return None
    cache = WORK / "preds" / f"{dataset}_{split}_seed{seed}.npz"
    stamp = (save / "finetune_result.json").stat().st_mtime
    if cache.is_file():
        held = np.load(cache)
        if float(held["stamp"]) == stamp:
            return {part: (held[f"{part}_pred"], held[f"{part}_y"]) for part in ("valid", "test")}
    cfg = json.loads((save / "finetune_config.json").read_text())
    splits = read_property_splits(cfg["data"], cfg["smiles_column"] or "smiles", list(cfg["target_columns"]),
                                  cfg["task_type"], str(save / "split.json"))
    predictor = PropertyPredictor(save / "checkpoint_best.pt")
    out, arrays = {}, {"stamp": np.float64(stamp)}
    for part in ("valid", "test"):
        pred = predictor.predict(splits[part].smiles)
        labels = np.asarray(splits[part].labels, dtype=np.float64).reshape(len(pred), -1)
        out[part] = (pred, labels)
        arrays[f"{part}_pred"], arrays[f"{part}_y"] = pred, labels
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return out


def _coverage(calibration: Calibration, pred: np.ndarray, y: np.ndarray, alpha: float) -> dict:
    """Empirical coverage of the test labels at level 1 - alpha (tasks pooled), with its size measure."""
    labelled = ~np.isnan(y) & ~np.isnan(pred)
    if calibration.task_type == "regression":
        lower, upper = calibration.interval(pred, alpha)
        hit = (lower <= y) & (y <= upper)
        size = {"mean_width": float(np.mean((upper - lower)[labelled]))}
    else:
        sets = calibration.prediction_set(pred, alpha)
        label = np.where(np.isnan(y), 0, y).astype(int)
        hit = np.take_along_axis(sets, label[..., None], axis=-1)[..., 0]
        counts = sets.sum(axis=-1)[labelled]
        size = {"mean_set_size": float(np.mean(counts)), "singletons": float(np.mean(counts == 1)),
                "empty": float(np.mean(counts == 0)),
                # coverage among the test molecules of each label: where a marginal guarantee can hide a failure
                "coverage_by_label": [float(np.mean(hit[labelled & (y == c)])) if (labelled & (y == c)).any()
                                      else None for c in (0, 1)]}
    coverage = float(np.mean(hit[labelled]))
    n = int(labelled.sum())
    return {"coverage": coverage, "coverage_se": float(np.sqrt(coverage * (1 - coverage) / n)), "n_test": n,
            "n_calibration": min(calibration.n), **size}


def _spearman(std: np.ndarray, error: np.ndarray) -> float | None:
    keep = ~np.isnan(std) & ~np.isnan(error)
    if keep.sum() < 3 or np.ptp(std[keep]) == 0:
        return None
    return float(spearmanr(std[keep], error[keep]).statistic)


def evaluate(dataset: str, split: str, members: list[dict], alpha: float, seeds: list[int]) -> dict:
    """Single-member conformal coverage; with every seed, also the ensemble's and the spread-error correlation."""
    spec = get_spec(dataset)
    task_type = spec.task_type
    y_valid, y_test = members[0]["valid"][1], members[0]["test"][1]
    for m in members[1:]:  # the members must share the split
        if not (np.array_equal(m["valid"][1], y_valid, equal_nan=True)
                and np.array_equal(m["test"][1], y_test, equal_nan=True)):
            raise SystemExit(f"{dataset} {split}: the members do not share their validation/test split")
    singles = []
    for m in members:
        cal = Calibration.from_predictions(m["valid"][0], y_valid, task_type)
        singles.append({**_coverage(cal, m["test"][0], y_test, alpha),
                        "test_metric": float(score(spec.metric, y_test, m["test"][0]))})
    summary = {k: [float(np.mean([r[k] for r in singles])), float(np.std([r[k] for r in singles]))]
               for k in singles[0] if k not in ("n_test", "n_calibration", "coverage_by_label")}
    row = {"dataset": dataset, "split": split, "task_type": task_type, "metric": spec.metric,
           "status": "ok" if len(members) == len(SEEDS) else "partial", "seeds": seeds,
           "n_calibration": singles[0]["n_calibration"], "n_test": singles[0]["n_test"],
           "ensemble": None, "single_mean_sd": summary, "single": singles}
    if len(members) < len(SEEDS):
        return row
    valid_mean = np.mean([m["valid"][0] for m in members], axis=0)
    test_stack = np.stack([m["test"][0] for m in members])
    test_mean, test_std = test_stack.mean(axis=0), test_stack.std(axis=0)
    ensemble = _coverage(Calibration.from_predictions(valid_mean, y_valid, task_type), test_mean, y_test, alpha)
    ensemble["test_metric"] = float(score(spec.metric, y_test, test_mean))
    error = np.abs(y_test - test_mean)
    ensemble["spearman_std_abs_error"] = _spearman(test_std.ravel(), error.ravel())
    if task_type == "regression":  # the spread read as a Gaussian standard deviation: not calibrated
        z = 1.6448536269514722 if abs(alpha - 0.1) < 1e-12 else None
        if z is not None:
            keep = ~np.isnan(y_test)
            ensemble["gaussian_std_coverage"] = float(np.mean(error[keep] <= z * test_std[keep]))
    row["ensemble"] = ensemble
    return row


def measure(args: argparse.Namespace, argv: list[str]) -> int:
    rows = []
    for split in ("scaffold", "random"):
        for dataset in args.datasets:
            found = {seed: member_predictions(dataset, split, seed) for seed in SEEDS}
            have = [seed for seed, m in found.items() if m is not None]
            if not have:
                rows.append({"dataset": dataset, "split": split, "status": "missing", "seeds_found": []})
                continue
            rows.append(evaluate(dataset, split, [found[seed] for seed in have], args.alpha, have))
            print(f"{dataset} {split} seeds {have}: single coverage {rows[-1]['single_mean_sd']['coverage'][0]:.3f}"
                  + (f", ensemble {rows[-1]['ensemble']['coverage']:.3f}" if rows[-1]["ensemble"] else ""), flush=True)
    record = {
        "command": " ".join(["python", "benchmarks/uncertainty.py", *map(shlex.quote, argv)]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(), "seeds": list(SEEDS), "alpha": args.alpha, "nominal": 1 - args.alpha,
        "settings": {**SETTINGS, "model": "shipped pretrained (pretrained/model.pt)",
                     "scaffold_runs": str(SCAFFOLD_RUNS.relative_to(ROOT)),
                     "random_runs": str((WORK / "random").relative_to(ROOT)), "random_split_seed": 0,
                     "calibration": "split-conformal on each run's validation split (80/10/10)"},
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    out.with_suffix(".md").write_text(markdown(record))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def _seeds(row: dict) -> str:
    return "" if row["status"] == "ok" else f" (seeds {', '.join(map(str, row['seeds']))})"


def _by_label(row: dict) -> str:
    parts = [[r["coverage_by_label"][c] for r in row["single"] if r["coverage_by_label"][c] is not None] for c in (0, 1)]
    return " / ".join(_f(float(np.mean(p)) if p else None, 2) for p in parts)


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(record: dict) -> str:
    nominal = record["nominal"]
    lines = [f"# Calibrated uncertainty: split-conformal at {nominal:.0%} nominal, ensembles of 3 seeds", "",
             f"`{record['command']}` -- {record['date']}, {record['machine'].get('cpu', '?')} "
             f"({record['machine'].get('cpu_count', '?')} cores); seeds {record['seeds']}; fine-tuning "
             f"{record['settings']['epochs']} epochs, lr {record['settings']['lr']}, batch "
             f"{record['settings']['batch_size']} from the shipped model. Calibrated on each run's validation "
             "split; coverage on its test split (± its binomial standard error). Ensemble = mean of the 3 "
             "members; single = each member calibrated alone (mean ± sd over seeds). Spearman: the members' "
             "std against the ensemble's absolute error on the test split.", "",
             "## Regression (interval width in the dataset's units)", "",
             "| dataset | split | n valid / test | ensemble coverage | mean width | single coverage | single width "
             "| Spearman(std, abs err) | mean ± 1.645 std coverage | RMSE ens. / single |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in record["results"]:
        if row["status"] == "missing" or row["task_type"] != "regression":
            continue
        e, s = row["ensemble"] or {}, row["single_mean_sd"]
        lines.append(f"| {row['dataset']} | {row['split']}{_seeds(row)} | {row['n_calibration']} / {row['n_test']} | "
                     f"{_f(e.get('coverage'))} ± {_f(e.get('coverage_se'))} | {_f(e.get('mean_width'))} | "
                     f"{_f(s['coverage'][0])} ± {_f(s['coverage'][1])} | {_f(s['mean_width'][0])} | "
                     f"{_f(e.get('spearman_std_abs_error'), 2)} | {_f(e.get('gaussian_std_coverage'))} | "
                     f"{_f(e.get('test_metric'))} / {_f(s['test_metric'][0])} |")
    lines += ["", "## Classification (prediction sets over {0, 1})", "",
              "| dataset | split | n valid / test | ensemble coverage | mean set size | singletons | single coverage "
              "| single set size | single coverage y=0 / y=1 | Spearman(std, abs err) | ROC-AUC ens. / single |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in record["results"]:
        if row["status"] == "missing" or row["task_type"] != "classification":
            continue
        e, s = row["ensemble"] or {}, row["single_mean_sd"]
        lines.append(f"| {row['dataset']} | {row['split']}{_seeds(row)} | {row['n_calibration']} / {row['n_test']} | "
                     f"{_f(e.get('coverage'))} ± {_f(e.get('coverage_se'))} | {_f(e.get('mean_set_size'), 2)} | "
                     f"{_f(e.get('singletons'), 2)} | {_f(s['coverage'][0])} ± {_f(s['coverage'][1])} | "
                     f"{_f(s['mean_set_size'][0], 2)} | {_by_label(row)} | {_f(e.get('spearman_std_abs_error'), 2)} | "
                     f"{_f(e.get('test_metric'))} / {_f(s['test_metric'][0])} |")
    missing = [f"{r['dataset']} ({r['split']})" for r in record["results"] if r["status"] == "missing"]
    lines += ["", "n/a: not measured yet. A split marked (seeds ...) has fewer than 3 finished members: single-member "
              "columns only (over those seeds), no ensemble; rerun the command when the rest exist."]
    if missing:
        lines += ["", "No finished member yet: " + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-random", nargs="*", default=[], metavar="DATASET",
                        help="first fine-tune the random-split members of these datasets (skipped when done)")
    parser.add_argument("--train-only", action="store_true", help="train, then stop (no measurement)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="datasets to measure")
    parser.add_argument("--alpha", type=float, default=0.1, help="miscoverage level (0.1: 90 %% nominal)")
    parser.add_argument("--out", default=str(RESULTS / "uncertainty"), help="output prefix (.json, .md)")
    args = parser.parse_args(argv)
    for seed in SEEDS:  # seeds outer: a budget cut short leaves every dataset with the same seeds
        for dataset in args.train_random:
            train_random(dataset, seed)
    if args.train_only:
        return 0
    return measure(args, argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
