"""One picture of two neuron-probe reports: neurons used against ROC-AUC, model against control.

    python benchmarks/probe_compare.py benchmarks/results/probe_clintox_shipped.json \\
        benchmarks/results/probe_clintox_random_init.json --labels "shipped model" "random init" \\
        --out benchmarks/results/probe_clintox_compare.png

Reads the ``mean`` sweep of each ``bartsmiles probe`` JSON (neurons = union over the tasks) and
draws validation and test ROC-AUC against the number of neurons, one line per report.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", help="probe JSON files")
    p.add_argument("--labels", nargs="+", default=None, help="one legend label per report")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args(argv)
    labels = args.labels or [Path(r).stem for r in args.reports]
    if len(labels) != len(args.reports):
        raise SystemExit("give one label per report")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    dataset = None
    for path, label in zip(args.reports, labels):
        report = json.loads(Path(path).read_text())
        dataset = report["dataset"]
        points = [q for q in report["mean"] if q["neurons"] > 0]
        for ax, key in zip(axes, ("valid_roc_auc", "test_roc_auc")):
            ax.plot([q["neurons"] for q in points], [q[key] for q in points], marker="o", label=label)
    for ax, title in zip(axes, ("validation", "test")):
        ax.set_xscale("log")
        ax.set_xlabel("neurons used (union over tasks)")
        ax.set_title(f"{title} ROC-AUC (mean over tasks)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ROC-AUC")
    axes[0].legend()
    fig.suptitle(f"L1 probe on frozen mean-pooled features, {dataset} (scaffold split)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
