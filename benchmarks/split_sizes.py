"""Scaffold split sizes of the eleven PROTOCOL.md datasets, plus the rows dropped as unparsable.

Writes ``benchmarks/results/split_sizes.json`` and ``benchmarks/results/split_sizes.md``.
Run: ``PYTHONPATH=. python benchmarks/split_sizes.py [--data-dir DIR]`` (HIV and MUV take
a minute or so of RDKit time on two cores).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import rdkit

from bartsmiles.core.splits import scaffold_split
from bartsmiles.data.datasets import load_dataset
from bartsmiles.data.registry import get_spec, locate

DATASETS = ["bbbp", "bace", "clintox", "tox21", "toxcast", "sider", "hiv", "muv", "esol", "freesolv", "lipo"]
RESULTS = Path(__file__).resolve().parent / "results"


def measure(name: str, data_dir: str | None) -> dict:
    """Load ``name``, split it, and return the row counts, dropped rows and split sizes."""
    start = time.perf_counter()
    data = load_dataset(name, data_dir, download=False)
    split = scaffold_split(data.smiles)
    n_file = len(data) + len(data.invalid)
    train, valid, test = split.sizes()
    return {
        "dataset": name,
        "file": str(locate(name, data_dir, download=False).name),
        "rows_in_file": n_file,
        "n_invalid": len(data.invalid),
        "invalid_rows": [r.row for r in data.invalid],
        "n_kept": len(data),
        "n_tasks": len(data.task_names),
        "metric": get_spec(name).metric,
        "train": train,
        "valid": valid,
        "test": test,
        "checksum": split.checksum(),
        "seconds": round(time.perf_counter() - start, 2),
    }


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "# Scaffold split sizes (PROTOCOL.md, 80/10/10)",
        "",
        "Row numbers are 0-based data rows (CSV line = row + 2).",
        "",
        "| dataset | rows in file | invalid dropped | rows dropped | kept | tasks | train | valid | test | split sha256 (first 12) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        dropped = ", ".join(map(str, r["invalid_rows"])) if r["invalid_rows"] else "-"
        lines.append(
            f"| {r['dataset']} | {r['rows_in_file']} | {r['n_invalid']} | {dropped} | {r['n_kept']} | {r['n_tasks']} "
            f"| {r['train']} | {r['valid']} | {r['test']} | {r['checksum'][:12]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="data root (default: $BARTSMILES_DATA / cache)")
    parser.add_argument("--datasets", nargs="*", default=DATASETS)
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        rows.append(measure(name, args.data_dir))
        print(f"{name}: {rows[-1]['train']}/{rows[-1]['valid']}/{rows[-1]['test']} "
              f"(dropped {rows[-1]['n_invalid']}, {rows[-1]['seconds']} s)", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"rdkit": rdkit.__version__, "python": platform.python_version(), "split": "scaffold 0.8/0.1/0.1"}
    (RESULTS / "split_sizes.json").write_text(json.dumps({"meta": meta, "datasets": rows}, indent=1) + "\n")
    (RESULTS / "split_sizes.md").write_text(to_markdown(rows))


if __name__ == "__main__":
    main()
