"""Dataset registry, file location/download, and loading of molecule tables.

Registry
--------
The known data files are described as data in ``bartsmiles/resources/datasets.json``
(no per-dataset code branches). Each entry becomes a frozen :class:`DatasetSpec`:

``filename`` / ``subdir``
    The file is stored as ``<data root>/<subdir>/<filename>`` (``subdir`` may be empty).
``smiles_column``, ``targets``, ``task_type``, ``metric``
    As in ``PROTOCOL.md``. ``targets`` is a list of column names, or
    ``{"all_except": [...]}`` meaning every column of the file except those; such
    entries get ``targets == ()`` and ``targets_exclude`` set, and the real column list
    is resolved when the file is read (:func:`resolve_targets`): 617 for toxcast, 27
    for sider. Entries that are not property-prediction sets (MOSES pretraining,
    USPTO-50k reactions) have ``task_type`` ``"pretraining"``/``"retrosynthesis"`` and
    ``metric`` ``"none"``; :func:`locate` handles them, :func:`load_dataset` refuses them.
``sha256``
    Sum of the file **exactly as stored** in the shared data folder (SOURCES.md).
``url``, ``url_sha256``, ``archive_member``, ``transform``, ``content_sha256``
    Where the public origin serves the data, and how to get from those bytes to the
    stored file. ``url_sha256`` is the sum of what ``url`` serves (the whole archive
    when ``archive_member`` names a file inside a wheel/zip or sdist/tar).
    ``transform`` lists edits applied after download, in order: ``crlf_to_lf``,
    ``drop_blank_lines``, ``gzip``. ``content_sha256`` is the sum of the decompressed
    content of a ``.gz`` file (equal to ``sha256`` for plain files).

Honesty about checksums: for bace and tox21 the shared copy was gzipped locally and
for HIV it was also edited (line endings, blank lines), so upstream serves different
bytes than ``sha256`` describes. The downloader therefore checks the download
against ``url_sha256``, applies ``transform``, and then checks the result: against
``sha256`` when no re-compression happened (byte-identical copies), otherwise the
decompressed content against ``content_sha256`` (Python's gzip output is not
byte-identical to ``gzip -n -9``, so a downloaded ``.gz`` has its own file sum).

Location and download
---------------------
:func:`locate` searches, in order, an explicit ``data_dir``, ``$BARTSMILES_DATA`` and
the cache (:func:`default_cache_dir`); in each root both ``<root>/<filename>`` and
``<root>/<subdir>/<filename>``. Failing that it downloads into
``<cache>/<subdir>/<filename>`` through a temporary file in the same folder that is
renamed into place only after every check passed; on any failure nothing is left.

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
import gzip
import json
import logging
import os
import urllib.error
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .chem import InvalidSmilesError, parse_smiles
from .download import _TRANSFORMS, ChecksumError, DownloadError, download_verified, sha256_file

__all__ = [
    "DatasetSpec",
    "ChecksumError",
    "MissingColumnError",
    "registry",
    "get_spec",
    "resolve_targets",
    "default_cache_dir",
    "locate",
    "InvalidRow",
    "MolDataset",
    "load_dataset",
    "load_table",
]

logger = logging.getLogger(__name__)

_REGISTRY_PATH = Path(__file__).with_name("resources") / "datasets.json"
_PROPERTY_TASKS = ("classification", "regression")


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry; see the module docstring for the meaning of each field."""

    name: str
    filename: str
    smiles_column: str
    targets: tuple[str, ...]
    task_type: str
    metric: str
    url: str
    sha256: str
    description: str
    subdir: str = ""
    targets_exclude: tuple[str, ...] | None = None
    url_sha256: str | None = None
    content_sha256: str | None = None
    archive_member: str | None = None
    transform: tuple[str, ...] = ()
    file_format: str = "csv"
    note: str = ""

    @property
    def is_property_dataset(self) -> bool:
        """True for classification/regression sets that :func:`load_dataset` can load."""
        return self.task_type in _PROPERTY_TASKS


class MissingColumnError(KeyError):
    """A table lacks a required column (message names it and lists the existing ones)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _spec_from_json(name: str, entry: dict[str, Any]) -> DatasetSpec:
    where = f"{_REGISTRY_PATH}: entry {name!r}"
    try:
        raw_targets = entry["targets"]
        if isinstance(raw_targets, dict):
            targets: tuple[str, ...] = ()
            exclude: tuple[str, ...] | None = tuple(raw_targets["all_except"])
        else:
            targets, exclude = tuple(raw_targets), None
        transform = tuple(entry.get("transform") or ())
        unknown = [t for t in transform if t not in _TRANSFORMS]
        if unknown:
            raise ValueError(f"{where}: unknown transform step(s) {unknown}; known: {list(_TRANSFORMS)}")
        return DatasetSpec(
            name=name,
            filename=entry["filename"],
            smiles_column=entry["smiles_column"],
            targets=targets,
            task_type=entry["task_type"],
            metric=entry["metric"],
            url=entry["url"],
            sha256=entry["sha256"],
            description=entry.get("description", ""),
            subdir=entry.get("subdir", "") or "",
            targets_exclude=exclude,
            url_sha256=entry.get("url_sha256"),
            content_sha256=entry.get("content_sha256"),
            archive_member=entry.get("archive_member"),
            transform=transform,
            file_format=entry.get("file_format", "csv"),
            note=entry.get("note", ""),
        )
    except KeyError as exc:
        raise ValueError(f"{where} lacks the required field {exc.args[0]!r}") from None


@lru_cache(maxsize=1)
def _load_registry() -> dict[str, DatasetSpec]:
    with open(_REGISTRY_PATH, encoding="utf-8") as fh:
        data = json.load(fh)
    return {name: _spec_from_json(name, entry) for name, entry in data["datasets"].items()}


def registry() -> dict[str, DatasetSpec]:
    """All registered data files, by name (a fresh dict; the specs are immutable)."""
    return dict(_load_registry())


def get_spec(name: str) -> DatasetSpec:
    """The spec called ``name``. Unknown names raise KeyError listing the known ones."""
    specs = _load_registry()
    if name not in specs:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(specs))}")
    return specs[name]


def resolve_targets(spec: DatasetSpec, columns: Sequence[str]) -> list[str]:
    """The target column names of ``spec`` for a file whose header is ``columns``."""
    if spec.targets_exclude is None:
        return list(spec.targets)
    excluded = set(spec.targets_exclude)
    return [c for c in columns if c not in excluded]


# --------------------------------------------------------------------------- location


def default_cache_dir() -> Path:
    """``$BARTSMILES_CACHE``, else ``$XDG_CACHE_HOME/bartsmiles``, else ``~/.cache/bartsmiles``."""
    if os.environ.get("BARTSMILES_CACHE"):
        return Path(os.environ["BARTSMILES_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "bartsmiles"
    return Path.home() / ".cache" / "bartsmiles"


def _candidates(root: Path, spec: DatasetSpec) -> list[Path]:
    paths = [root / spec.filename]
    if spec.subdir:
        paths.append(root / spec.subdir / spec.filename)
    return paths


def locate(
    name_or_spec: str | DatasetSpec,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Path:
    """Path of the file of ``name_or_spec``, downloading it into the cache if needed.

    Raises:
        FileNotFoundError: not found and ``download=False`` (lists every place searched).
        ChecksumError: a download did not match its checksum (nothing is left behind).
    """
    spec = get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(Path(data_dir))
    if os.environ.get("BARTSMILES_DATA"):
        roots.append(Path(os.environ["BARTSMILES_DATA"]))
    roots.append(cache)
    searched: list[Path] = []
    for root in roots:
        for path in _candidates(root, spec):
            searched.append(path)
            if path.is_file():
                return path
    if not download:
        listing = "\n  ".join(str(p) for p in searched)
        raise FileNotFoundError(
            f"data file {spec.filename!r} of dataset {spec.name!r} not found (download=False); "
            f"searched:\n  {listing}"
        )
    target = cache / spec.subdir / spec.filename if spec.subdir else cache / spec.filename
    try:
        download_verified(spec, target)
    except urllib.error.URLError as exc:  # HTTPError included
        listing = "\n  ".join(str(p) for p in searched)
        raise DownloadError(
            f"dataset {spec.name!r}: {spec.filename} is not in any data folder and downloading it from "
            f"{spec.url} failed ({getattr(exc, 'reason', exc)}). Put the file in a folder and pass it as "
            f"data_dir (--data-dir), or set $BARTSMILES_DATA. Searched:\n  {listing}"
        ) from exc
    return target


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
    frame = _read_csv(path)
    targets = resolve_targets(spec, [str(c) for c in frame.columns])
    dataset = _build(frame, spec.smiles_column, targets, task_type=spec.task_type, strict=strict,
                     name=name, source=str(path), header=True)
    return dataset


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"table file not found: {path}")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"table {path} is empty (no header and no rows)") from None


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
        frame, src, header = _read_csv(path), str(path), True
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
    if task_type is not None and task_type not in (*_PROPERTY_TASKS, "none"):
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
