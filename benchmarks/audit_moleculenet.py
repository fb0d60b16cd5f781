"""The data-trust audit (:mod:`bartsmiles.data.audit`) of the eleven PROTOCOL.md datasets, in one table.

Each dataset is audited under the protocol's scaffold split and the seeded random split (seed 0,
the kind the original BARTSmiles used for most sets): invalid rows, duplicates and their label
conflicts, molecules shared between split parts, test scaffolds seen in train, and the
spelling-leak test (writing features of the SMILES as given vs. of RDKit canonical SMILES).

    PYTHONPATH=. python benchmarks/audit_moleculenet.py [--data-dir DIR]

Writes ``OUT.md`` and ``OUT.json`` (default ``benchmarks/results/audit_moleculenet``; the JSON
records the command, the date and the machine) and each dataset's full report,
``audit_<name>.md/.json``, into the folder ``OUT/``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

from bartsmiles.data.audit import AuditReport, audit
from bartsmiles.evaluation.machine import machine_info

DATASETS = ["bbbp", "bace", "clintox", "tox21", "toxcast", "sider", "hiv", "muv", "esol", "freesolv", "lipo"]
SPLITS = ("scaffold", "random")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "audit_moleculenet"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def row(report: AuditReport) -> dict:
    """The summary row of one dataset's report."""
    dup = {d.by: d for d in report.duplicates}
    leak = report.leak
    worst = leak.worst
    out = {
        "dataset": report.dataset,
        "rows": report.n_rows,
        "invalid": len(report.invalid),
        "tasks": len(report.tasks),
        "task_type": report.task_type,
        "duplicate_groups_canonical": dup["canonical_smiles"].n_groups,
        "conflicting_canonical": dup["canonical_smiles"].n_conflicting,
        "duplicate_groups_inchikey": dup["inchikey"].n_groups,
        "conflicting_inchikey": dup["inchikey"].n_conflicting,
        "splits": {},
        "leak_metric": leak.metric,
        "leak_tasks_tested": len(leak.tested),
        "leak_rows_used": leak.n_rows_used,
        "leak_notes": leak.notes,
        "as_written_max": leak.stat("as_written", "max"),
        "as_written_mean": leak.stat("as_written", "mean"),
        "canonical_max": leak.stat("canonical", "max"),
        "canonical_mean": leak.stat("canonical", "mean"),
        "worst_task": worst.task if worst else None,
        "worst_as_written": worst.as_written if worst else None,
        "worst_canonical": worst.canonical if worst else None,
        "worst_difference": worst.difference if worst else None,
        "leak_flagged_tasks": leak.flagged_tasks,
        "warnings": report.warnings,
        "exit_code": report.exit_code,
        "seconds": report.elapsed_s,
    }
    for s in report.splits:
        out["splits"][s.name] = {
            "sizes": list(s.sizes),
            "shared_molecules": max(sum(s.shared_canonical.values()), sum(s.shared_inchikey.values())),
            "shared_canonical": s.shared_canonical,
            "shared_inchikey": s.shared_inchikey,
            "test_rows_in_train": s.test_rows_in_train,
            "test_scaffold_seen_fraction": s.test_scaffold_seen_fraction,
        }
    return out


def to_markdown(rows: list[dict], header: dict) -> str:
    lines = [
        "# Data audit of the MoleculeNet sets (PROTOCOL.md)",
        "",
        f"Command: `{header['command']}`, {header['date']}, on {header['machine'].get('cpu', '?')} "
        f"({header['machine'].get('usable_cpus', header['machine'].get('cpu_count'))} usable CPUs, shared with "
        f"other jobs); {header['seconds']:.0f} s in all. Full reports: `{header['reports']}/audit_<name>.md`.",
        "",
        "Rows are as read; invalid rows (RDKit cannot parse) are left out of every other column. Duplicate groups: "
        "same RDKit canonical SMILES / same InChIKey, with the number of groups whose labels disagree in brackets. "
        "Split overlap: distinct molecules (canonical SMILES or InChIKey) found in two parts of the scaffold / "
        "random (seed 0) split. Scaffolds seen: fraction of test rows whose Murcko scaffold also occurs in train "
        "(0 by construction for the scaffold split). Spelling leak: cross-validated ROC-AUC (classification) or "
        "R^2 (regression) of a linear model on writing features of the SMILES as given vs. the same features of "
        "RDKit canonical SMILES, for the task with the largest difference, then max/mean over tasks; a task is "
        "flagged when as written > 0.75 AUC (0.30 R^2) and it beats canonical by > 0.10, or by > 0.05 while "
        "halving the canonical error (`bartsmiles.data.audit`).",
        "",
        "| dataset | rows | invalid | duplicate groups: canonical (conflicting) | InChIKey (conflicting) "
        "| split overlap: scaffold / random | test scaffolds seen in train: scaffold / random "
        "| spelling leak, largest gap: as written vs canonical (task) | as written max / mean | canonical max / mean "
        "| flag |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sc, ra = r["splits"]["scaffold"], r["splits"]["random"]
        metric = "AUC" if r["leak_metric"] == "roc_auc" else "R^2"
        task = r["worst_task"] if r["tasks"] > 1 else ""
        flagged = r["leak_flagged_tasks"]
        flag = (f"**LEAK** ({len(flagged)} task{'s' if len(flagged) > 1 else ''})" if flagged else "-")
        lines.append(
            f"| {r['dataset']} | {r['rows']} | {r['invalid']} "
            f"| {r['duplicate_groups_canonical']} ({r['conflicting_canonical']}) "
            f"| {r['duplicate_groups_inchikey']} ({r['conflicting_inchikey']}) "
            f"| {sc['shared_molecules']} / {ra['shared_molecules']} "
            f"| {_num(sc['test_scaffold_seen_fraction'])} / {_num(ra['test_scaffold_seen_fraction'])} "
            f"| {metric} {_num(r['worst_as_written'])} vs {_num(r['worst_canonical'])}{f' ({task})' if task else ''} "
            f"| {_num(r['as_written_max'])} / {_num(r['as_written_mean'])} "
            f"| {_num(r['canonical_max'])} / {_num(r['canonical_mean'])} | {flag} |")
    notes = [f"- {r['dataset']}: {note}" for r in rows for note in r["leak_notes"]]
    if notes:
        lines += ["", "Caps of the spelling-leak test (the other columns use every row):", "", *notes]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="data folder (default: $BARTSMILES_DATA, then the cache)")
    p.add_argument("--datasets", nargs="+", default=DATASETS, help="registered datasets (default: all eleven)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="OUT.md / OUT.json, full reports in OUT/")
    args = p.parse_args(argv)
    out = Path(args.out)
    reports = out  # the folder OUT/ beside OUT.md and OUT.json
    start = time.perf_counter()
    rows = []
    for name in args.datasets:
        report = audit(name, split=SPLITS, data_dir=args.data_dir, seed=0)
        report.write(reports)
        rows.append(row(report))
        print(report.summary(), flush=True)
    header = {
        "command": " ".join(["python", "benchmarks/audit_moleculenet.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "seconds": round(time.perf_counter() - start, 1),
        "splits": list(SPLITS),
        "reports": str(reports.relative_to(Path.cwd()) if reports.is_relative_to(Path.cwd()) else reports),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**header, "datasets": rows}, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(to_markdown(rows, header), encoding="utf-8")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
