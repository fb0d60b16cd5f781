"""A compact markdown table of a benchmark results file, for the README.

    python benchmarks/compact_table.py benchmarks/results/benchmark_moleculenet_cpu.json \\
        [--peers ../shared/PEERS.md]

One row per dataset, one column per model: mean ± std over the seeds that finished, with n.
With ``--peers``, chemprop's scores are copied from that file's table (measured there, not in
this run) and marked so.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from bartsmiles.evaluation.report import MODELS, load_results, summarize

LABELS = {"ecfp4_rf": "ECFP4+RF", "bartsmiles": "fine-tuned", "bartsmiles_random_init": "fine-tuned, random init",
          "bartsmiles_frozen": "frozen + linear", "bartsmiles_frozen_random_init": "frozen + linear, random init"}


def peer_scores(path: Path) -> dict[str, str]:
    """dataset -> chemprop cell of PEERS.md's table."""
    out = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.match(r"^[a-z0-9]+$", cells[0]) and "±" in cells[2] + cells[3]:
            out[cells[0]] = cells[3]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results")
    p.add_argument("--peers", default=None)
    args = p.parse_args(argv)
    results = load_results(args.results)
    table = summarize([r for r in results["runs"] if r.get("status") == "ok"])
    models = [m for m in MODELS if any(k[2] == m for k in table)]
    datasets = list(dict.fromkeys(k[0] for k in table))
    peers = peer_scores(Path(args.peers)) if args.peers else {}
    head = ["dataset", "metric"] + [LABELS.get(m, m) for m in models] + (["chemprop (PEERS.md)"] if peers else [])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for ds in datasets:
        metric = next(r["metric"] for r in results["runs"] if r["dataset"] == ds)
        arrow = "RMSE ↓" if metric == "rmse" else ("PRC-AUC ↑" if metric == "prc_auc" else "ROC-AUC ↑")
        cells = []
        for m in models:
            entry = next((v for k, v in table.items() if k[0] == ds and k[2] == m), None)
            cells.append("—" if entry is None else f"{entry['mean']:.3f} ± {entry['std']:.3f} (n={entry['n']})")
        row = [ds, arrow] + cells + ([peers.get(ds, "—")] if peers else [])
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
