"""The home side of the device retrosynthesis run (scripts/device/retro.sh): what RDKit must do.

    python scripts/device/retro_kit.py prepare [--rooted runs/retro_rooted] [--views 5]
    python scripts/device/retro_kit.py score DEVICE_OUT [--out benchmarks/results/retro_uspto50k_gpu]

``prepare`` writes ``.devkit/retro/``: the root-aligned training pairs of ``bartsmiles
prepare-retro`` (gzipped), the validation pairs, and ``test_views.csv.gz`` -- ``--views`` rooted
spellings of every test product (:func:`bartsmiles.seq2seq.rooted_or_given`, seed 0: the views
``generate(views="rooted")`` would make), view 0 of every product first.

``score`` reads the raw beams the device wrote (``beams.jsonl.gz``), aggregates each product's
views by summed probability of the canonical candidates (:func:`bartsmiles.seq2seq.aggregate_beams`,
invalid candidates dropped), and scores top-1/3/5/10 against the references with
:func:`bartsmiles.evaluation.retro.topk_accuracy`, for 1 view and for all views; the invalid
top-1 is that of view 0's raw beam.  Writes ``OUT.json`` and ``OUT.md`` with the device run's record.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import json
import shlex
import sys
from collections import defaultdict
from pathlib import Path

from bartsmiles.evaluation.machine import machine_info
from bartsmiles.evaluation.retro import topk_accuracy
from bartsmiles.seq2seq import aggregate_beams, rooted_or_given

REPO = Path(__file__).resolve().parents[2]


def prepare(args) -> int:
    kit = REPO / ".devkit" / "retro"
    kit.mkdir(parents=True, exist_ok=True)
    rooted = Path(args.rooted)
    with open(rooted / "train.csv", "rb") as src, gzip.open(kit / "train.csv.gz", "wb") as dst:
        dst.write(src.read())
    (kit / "valid.csv").write_bytes((rooted / "valid.csv").read_bytes())
    with open(rooted / "test.csv", newline="") as handle:
        products = [row["source"] for row in csv.DictReader(handle)]
    views = [rooted_or_given(p, args.views, 0) for p in products]
    with gzip.open(kit / "test_views.csv.gz", "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["product", "view", "source"])
        for v in range(args.views):
            for i, spellings in enumerate(views):
                writer.writerow([i, v, spellings[v]])
    print(json.dumps({"kit": str(kit), "test_products": len(products), "views": args.views,
                      "bytes": {p.name: p.stat().st_size for p in sorted(kit.iterdir())}}, indent=2))
    return 0


def score(args) -> int:
    device_out = Path(args.device_out)
    with open(Path(args.rooted) / "test.csv", newline="") as handle:
        references = [row["target"] for row in csv.DictReader(handle)]
    beams: dict[int, dict[int, list]] = defaultdict(dict)
    with gzip.open(device_out / "beams.jsonl.gz", "rt") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # the last line of a cut-off run
                break
            beams[row["product"]][row["view"]] = [tuple(c) for c in row["beams"]]
    products = sorted(beams)
    n_views = max(len(v) for v in beams.values())
    complete = [p for p in products if len(beams[p]) == n_views]
    refs = [references[p] for p in complete]
    one = topk_accuracy([beams[p][0] for p in complete], refs)
    agg = topk_accuracy([aggregate_beams([beams[p][v] for v in sorted(beams[p])], "prob", 10, drop_invalid=True)
                         for p in complete], refs)
    run = json.loads((device_out / "run.json").read_text()) if (device_out / "run.json").is_file() else {}
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "scored_on": machine_info(), "device_run": run, "products_scored": len(complete),
              "products_in_test": len(references), "views": n_views,
              "one_view": one, "all_views": agg}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = ["# Retrosynthesis on USPTO-50k (Liu split, reaction class unknown), trained on the lent GPU",
             "", f"Command: `{result['command']}`; device run: {run.get('device', '?')}, "
             f"{run.get('train_wall_s', '?')} s of training, {run.get('n_train', '?')} root-aligned pairs.",
             f"Scored: {len(complete):,} of {len(references):,} test products with all {n_views} views.", "",
             "| views | top-1 | top-3 | top-5 | top-10 | invalid top-1 |", "|---|---|---|---|---|---|",
             f"| 1 (raw beam of view 0) | {pct(one['top1'])} | {pct(one['top3'])} | {pct(one['top5'])} | "
             f"{pct(one['top10'])} | {pct(one['invalid_top1'])} |",
             f"| {n_views} (aggregated, invalid dropped) | {pct(agg['top1'])} | {pct(agg['top3'])} | "
             f"{pct(agg['top5'])} | {pct(agg['top10'])} | {pct(agg['invalid_top1'])} |", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write .devkit/retro/")
    p.add_argument("--rooted", default=str(REPO / "runs" / "retro_rooted"), help="bartsmiles prepare-retro's folder")
    p.add_argument("--views", type=int, default=5, help="rooted views per test product")
    s = sub.add_parser("score", help="score the beams a device run brought back")
    s.add_argument("device_out", help="the folder the device's $OUT came back to")
    s.add_argument("--rooted", default=str(REPO / "runs" / "retro_rooted"), help="bartsmiles prepare-retro's folder")
    s.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "retro_uspto50k_gpu"))
    args = parser.parse_args()
    return prepare(args) if args.command == "prepare" else score(args)


if __name__ == "__main__":
    sys.exit(main())
