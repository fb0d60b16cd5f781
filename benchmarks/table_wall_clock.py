"""How long the whole CPU fine-tuned benchmark takes: 8 datasets x 3 seeds x (pretrained, random init).

Reads the runs that finished in ``benchmarks/results/benchmark_moleculenet_cpu.json`` (each run's
own ``wall_s``: one process, one torch thread).  A (dataset, model) pair that was not run is
extrapolated from the other model on the same dataset: the two have the same shape, data and
settings, so the same cost (where both ran, they differ by a few percent).  The total is given as
single-thread hours and as wall-clock hours on this machine's 2 cores with two queues side by side
(``benchmarks/finetuned_table.sh``).

    python benchmarks/table_wall_clock.py

Writes ``benchmarks/results/table_wall_clock.{json,md}``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("bbbp", "bace", "clintox", "tox21", "sider", "esol", "freesolv", "lipo")
MODELS = ("bartsmiles", "bartsmiles_random_init")
SEEDS = 3


def estimate(runs: list[dict], queues: int) -> dict:
    rows, total = [], 0.0
    for dataset in DATASETS:
        measured = {m: [r["wall_s"] for r in runs if r["dataset"] == dataset and r["model"] == m
                        and r.get("status") == "ok" and r.get("wall_s")] for m in MODELS}
        for model in MODELS:
            walls = measured[model]
            other = measured[MODELS[1 - MODELS.index(model)]]
            if walls:
                per_run, source = float(np.mean(walls)), f"measured, {len(walls)} run(s)"
            elif other:
                per_run, source = float(np.mean(other)), "extrapolated from the other model"
            else:
                per_run, source = None, "no run of either model"
            rows.append({"dataset": dataset, "model": model, "per_run_s": per_run, "source": source,
                         "n_measured": len(walls)})
            if per_run is not None:
                total += per_run * SEEDS
    missing = [r["dataset"] for r in rows if r["per_run_s"] is None]
    return {"rows": rows, "single_thread_hours": total / 3600, "queues": queues,
            "wall_clock_hours": total / 3600 / queues, "missing": sorted(set(missing)),
            "measured_runs": sum(r["n_measured"] for r in rows), "total_runs": len(DATASETS) * len(MODELS) * SEEDS}


def markdown(result: dict) -> str:
    lines = ["# Wall clock of the whole CPU fine-tuned benchmark", "",
             f"Command: `{result['command']}`; date {result['date']}. Source: `{result['source']}` "
             f"({result['measured_runs']} of {result['total_runs']} runs measured; each run one process, one torch "
             "thread, two runs side by side on 2 shared cores, so these are the times of the table as it was run).",
             "", "| dataset | model | s per run | source |", "|---|---|---|---|"]
    for r in result["rows"]:
        per = "—" if r["per_run_s"] is None else f"{r['per_run_s']:,.0f}"
        lines.append(f"| {r['dataset']} | {r['model']} | {per} | {r['source']} |")
    lines += ["", f"**Total:** {result['single_thread_hours']:.1f} single-thread hours for 8 datasets x "
              f"{SEEDS} seeds x 2 models, so about **{result['wall_clock_hours']:.1f} hours of wall clock** with "
              f"{result['queues']} queues on this machine's 2 cores."]
    if result["missing"]:
        lines.append(f"Not covered (no run yet): {', '.join(result['missing'])}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "benchmark_moleculenet_cpu.json")
    parser.add_argument("--queues", type=int, default=2, help="runs side by side (one per core)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "table_wall_clock")
    args = parser.parse_args()
    runs = json.loads(args.results.read_text())["runs"]
    result = estimate(runs, args.queues)
    result.update(command="python " + " ".join(shlex.quote(a) for a in sys.argv),
                  date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  source=str(args.results.relative_to(ROOT) if args.results.is_relative_to(ROOT) else args.results))
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
