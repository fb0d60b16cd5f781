"""Loading of molecule tables: registered property datasets and user tables as :class:`MolDataset`.

The registry (:class:`DatasetSpec`, :func:`registry`, :func:`get_spec`, :func:`resolve_targets`)
and file location/download (:func:`locate`, :func:`default_cache_dir`) live in
:mod:`bartsmiles.data.registry`.

Loading
-------
:func:`load_table` reads a CSV (plain or compressed) or a DataFrame. Rows are
numbered **0-based over the data rows as read** (``row``); for a CSV with a header
line the file line is ``row + 2``, and messages give both. Rows whose SMILES RDKit
cannot parse (including empty cells) are dropped and reported, never silently;
missing labels stay NaN.
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from bartsmiles.core.chem import parse_smiles
from bartsmiles.core.files import read_csv
from bartsmiles.data.registry import PROPERTY_TASKS, get_spec, locate, resolve_targets
from bartsmiles.errors import InvalidSmilesError, MissingColumnError

__all__ = [
    "InvalidRow",
    "MolDataset",
    "load_dataset",
    "load_table",
]

logger = logging.getLogger(__name__)


@dataclass
class InvalidRow:
    """A dropped row: ``row`` is the 0-based data-row index (CSV line = row + 2)."""

    row: int
    smiles: str
    reason: str


@dataclass
class MolDataset:
    """Molecules with a label matrix; only rows whose SMILES parse, in file order."""

    name: str
    smiles: list[str]
    labels: np.ndarray
    task_names: list[str]
    task_type: str
    rows: np.ndarray
    invalid: list[InvalidRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.smiles)

    def summary(self) -> dict[str, Any]:
        """Counts and per-task label statistics (positive fraction, or mean/std)."""
        labels = self.labels
        observed = ~np.isnan(labels)
        tasks: dict[str, dict[str, float | int]] = {}
        for j, task in enumerate(self.task_names):
            values = labels[observed[:, j], j]
            stats: dict[str, float | int] = {"n_labeled": int(values.size)}
            if self.task_type == "classification":
                stats["positive_fraction"] = float(values.mean()) if values.size else float("nan")
            else:
                stats["mean"] = float(values.mean()) if values.size else float("nan")
                stats["std"] = float(values.std()) if values.size else float("nan")
            tasks[task] = stats
        return {
            "name": self.name,
            "n": len(self),
            "n_invalid": len(self.invalid),
            "invalid_rows": [r.row for r in self.invalid],
            "n_tasks": len(self.task_names),
            "task_type": self.task_type,
            "missing_fraction": float(1.0 - observed.mean()) if labels.size else 0.0,
            "tasks": tasks,
        }

    def write_invalid_report(self, path: str | os.PathLike[str]) -> None:
        """Write the dropped rows as CSV with columns ``row,smiles,reason``."""
        _write_invalid(self.invalid, Path(path))


def _write_invalid(invalid: Sequence[InvalidRow], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["row", "smiles", "reason"])
        for item in invalid:
            writer.writerow([item.row, item.smiles, item.reason])


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    strict: bool = False,
) -> MolDataset:
    """Load the registered property dataset ``name`` as PROTOCOL.md prescribes."""
    spec = get_spec(name)
    if not spec.is_property_dataset:
        raise ValueError(
            f"dataset {name!r} is a {spec.task_type} file, not a property dataset; use locate({name!r}) to get its path"
        )
    path = locate(spec, data_dir, cache_dir=cache_dir, download=download)
    frame = read_csv(path)
    targets = resolve_targets(spec, [str(c) for c in frame.columns])
    dataset = _build(frame, spec.smiles_column, targets, task_type=spec.task_type, strict=strict,
                     name=name, source=str(path), header=True)
    return dataset


def load_table(
    source: str | Path | pd.DataFrame,
    smiles_column: str,
    target_columns: Sequence[str] | None = None,
    *,
    task_type: str | None = None,
    strict: bool = False,
    invalid_report: Path | None = None,
    name: str | None = None,
) -> MolDataset:
    """Load a user table (CSV path, possibly compressed, or DataFrame).

    ``target_columns=None`` takes every column except ``smiles_column``; ``[]`` loads
    molecules without labels (``task_type`` then defaults to ``"none"``). With
    ``task_type=None`` it is inferred: all labels in {0, 1} -> classification, else
    regression. ``strict=True`` raises :class:`InvalidSmilesError` listing every
    unparsable row instead of dropping them; ``invalid_report`` receives the dropped
    rows as CSV.
    """
    if isinstance(source, pd.DataFrame):
        frame, src, header = source, "<DataFrame>", False
    else:
        path = Path(source)
        frame, src, header = read_csv(path), str(path), True
    if target_columns is None:
        target_columns = [str(c) for c in frame.columns if c != smiles_column]
    dataset = _build(frame, smiles_column, list(target_columns), task_type=task_type, strict=strict,
                     name=name or (Path(src).stem if header else "table"), source=src, header=header)
    if invalid_report is not None:
        dataset.write_invalid_report(invalid_report)
    return dataset


def _where(row: int, header: bool) -> str:
    return f"row {row} (line {row + 2})" if header else f"row {row}"


def _build(
    frame: pd.DataFrame,
    smiles_column: str,
    targets: list[str],
    *,
    task_type: str | None,
    strict: bool,
    name: str,
    source: str,
    header: bool,
) -> MolDataset:
    columns = [str(c) for c in frame.columns]
    missing = [c for c in [smiles_column, *targets] if c not in columns]
    if missing:
        raise MissingColumnError(f"{source}: missing column(s) {missing}; the table has columns {columns}")
    if len(frame) == 0:
        raise ValueError(f"{source}: the table has no data rows")
    if task_type is not None and task_type not in (*PROPERTY_TASKS, "none"):
        raise ValueError(f"task_type must be 'classification' or 'regression', got {task_type!r}")

    labels = np.empty((len(frame), len(targets)), dtype=np.float64)
    for j, column in enumerate(targets):
        raw = frame[column]
        numeric = pd.to_numeric(raw, errors="coerce")
        bad = numeric.isna().to_numpy() & raw.notna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{source}: non-numeric label {raw.iloc[i]!r} in column {column!r} at {_where(i, header)}"
                f" ({int(bad.sum())} such cell(s) in this column)"
            )
        labels[:, j] = numeric.to_numpy(dtype=np.float64)

    observed = labels[~np.isnan(labels)]
    if task_type is None:
        if not targets:
            task_type = "none"
        elif observed.size == 0:
            raise ValueError(f"{source}: cannot infer task_type, every label in {targets} is missing")
        else:
            task_type = "classification" if np.isin(observed, (0.0, 1.0)).all() else "regression"
    if task_type == "classification":
        for j, column in enumerate(targets):
            col = labels[:, j]
            bad = ~np.isnan(col) & ~np.isin(col, (0.0, 1.0))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{source}: classification labels must be 0 or 1, column {column!r} has {col[i]!r} "
                    f"at {_where(i, header)}"
                )

    kept: list[int] = []
    smiles_out: list[str] = []
    invalid: list[InvalidRow] = []
    for i, value in enumerate(frame[smiles_column].tolist()):
        # surrounding whitespace is not SMILES (ESOL has 212 trailing spaces): strip it
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
        try:
            parse_smiles(text)
        except InvalidSmilesError as exc:
            invalid.append(InvalidRow(i, text, exc.reason or "unparsable"))
            continue
        kept.append(i)
        smiles_out.append(text)

    if invalid:
        listing = ", ".join(_where(r.row, header) for r in invalid[:50])
        more = f" and {len(invalid) - 50} more" if len(invalid) > 50 else ""
        if strict:
            raise InvalidSmilesError(
                invalid[0].smiles, row=invalid[0].row, reason=invalid[0].reason,
                message=f"{source}: {len(invalid)} invalid SMILES in column {smiles_column!r}: {listing}{more}",
            )
        logger.warning("%s: dropped %d row(s) whose SMILES RDKit cannot parse: %s%s",
                       source, len(invalid), listing, more)
    if not kept:
        raise ValueError(f"{source}: none of the {len(frame)} SMILES in column {smiles_column!r} parse")
    rows = np.asarray(kept, dtype=np.int64)
    return MolDataset(name=name, smiles=smiles_out, labels=labels[rows], task_names=list(targets),
                      task_type=task_type, rows=rows, invalid=invalid)
