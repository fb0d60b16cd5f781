"""The property tables of the ``smiles_property`` task: reading the splits, checking and summarizing the labels.

:func:`read_property_splits` reads a CSV plus split file, or a folder of ``train``/``valid``/``test``
CSVs, into :class:`bartsmiles.data.datasets.MolDataset` tables (invalid rows left out and reported);
:func:`check_trainable` rejects data a model cannot learn or be validated on;
:func:`label_statistics` derives ``pos_weight`` and the target scaling from the training labels.
The rules are described in :mod:`bartsmiles.tasks.property`, which re-exports everything here.
"""

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

from bartsmiles.core.metrics import default_metric
from bartsmiles.errors import PropertyDataError

# bartsmiles.data.datasets needs RDKit: imported where used, so that `import bartsmiles.tasks` (and
# GPU pretraining on a machine without RDKit) does not need it.
if TYPE_CHECKING:  # pragma: no cover
    from bartsmiles.data.datasets import MolDataset

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def split_targets(target_columns) -> Optional[List[str]]:
    """``"a,b"`` -> ``["a", "b"]``; a JSON list (``'["a, b", "c"]'``, for names that hold
    commas, as SIDER's do) -> that list; empty -> None (every other column)."""
    if target_columns is None:
        return None
    if isinstance(target_columns, str) and target_columns.lstrip().startswith("["):
        try:
            parsed = json.loads(target_columns)
        except json.JSONDecodeError as exc:
            raise PropertyDataError(f"--target-columns: not a JSON list of column names: {exc}") from None
        if not isinstance(parsed, list) or not all(isinstance(c, str) for c in parsed):
            raise PropertyDataError("--target-columns: a JSON value must be a list of column names")
        names = [c for c in parsed if c.strip()]
    elif isinstance(target_columns, str):
        names = [c.strip() for c in target_columns.split(",") if c.strip()]
    else:
        names = [str(c) for c in target_columns]
    return names or None


def read_property_splits(
    data: str,
    smiles_column: str,
    target_columns,
    task_type: str,
    split_file: Optional[str] = None,
    report_dir: Optional[str] = None,
) -> Dict[str, "MolDataset"]:
    """The train/valid/test tables of ``data`` (see :mod:`bartsmiles.tasks.property`), invalid rows left out.

    Raises :class:`PropertyDataError` (or the loader's ValueError) with a clear message for a
    missing file, a missing split file, wrong label values, or an empty train/valid split.
    """
    from bartsmiles.core.splits import Split  # lazy: RDKit is optional for the plugin
    from bartsmiles.data.datasets import MolDataset, load_table  # lazy: RDKit is optional for the plugin

    targets = split_targets(target_columns)
    path = Path(data)
    report = Path(report_dir) if report_dir else None
    out: Dict[str, "MolDataset"] = {}
    if path.is_dir():
        for split in SPLITS:
            f = path / f"{split}.csv"
            if not f.is_file():
                if split == "test":
                    continue
                raise PropertyDataError(f"{path} is a folder but has no {split}.csv")
            out[split] = load_table(
                f, smiles_column, targets, task_type=task_type,
                invalid_report=(report / f"invalid_rows_{split}.csv") if report else None,
            )
    elif path.is_file():
        if not split_file:
            raise PropertyDataError(
                f"{path} is one CSV file: give --split-file (from bartsmiles.core.splits), or a folder with train/valid/test.csv"
            )
        if not Path(split_file).is_file():
            raise PropertyDataError(f"split file not found: {split_file}")
        table = load_table(
            path, smiles_column, targets, task_type=task_type,
            invalid_report=(report / "invalid_rows.csv") if report else None,
        )
        split = Split.load(split_file)
        n = len(table)
        for name in SPLITS:
            idx = np.asarray(getattr(split, name), dtype=np.int64)
            if idx.size and idx.max() >= n:
                raise PropertyDataError(
                    f"split file {split_file}: {name} index {int(idx.max())} is out of range: {path} has {n} parsable rows "
                    f"({len(table.invalid)} invalid row(s) dropped); indices count parsable rows only"
                )
            out[name] = MolDataset(
                name=f"{table.name}:{name}", smiles=[table.smiles[i] for i in idx], labels=table.labels[idx],
                task_names=table.task_names, task_type=table.task_type, rows=table.rows[idx],
                invalid=table.invalid if name == "train" else [],
            )
    else:
        raise PropertyDataError(f"property data not found: {data!r} is neither a CSV file nor a folder")
    for name in ("train", "valid"):
        if len(out[name]) == 0:
            raise PropertyDataError(f"the {name} split of {data} is empty")
    names = {tuple(d.task_names) for d in out.values()}
    if len(names) > 1:
        raise PropertyDataError(f"the splits of {data} have different target columns: {sorted(names)}")
    return out


def check_trainable(splits: Dict[str, "MolDataset"], task_type: str, metric: str = "") -> None:
    """Errors for data fairseq would train on to no purpose (single-class train set, nothing to validate on)."""
    train, valid = splits["train"], splits["valid"]
    names = train.task_names
    if not names:
        raise PropertyDataError("no target columns")
    if task_type != "classification":
        for label, ds in (("train", train), ("valid", valid)):
            if np.isnan(ds.labels).all():
                raise PropertyDataError(f"every {label} label is missing")
        return
    single = []
    for j, name in enumerate(names):
        col = train.labels[:, j]
        classes = np.unique(col[~np.isnan(col)])
        if classes.size < 2:
            single.append(f"{name!r} ({'no labels' if classes.size == 0 else f'only class {int(classes[0])}'})")
    if len(single) == len(names):
        raise PropertyDataError(
            "the training set has a single class in every task: " + ", ".join(single)
            + "; a classifier cannot learn from it (check the split and the label columns)"
        )
    if single:
        logger.warning("training labels of %d task(s) have a single class: %s", len(single), ", ".join(single))
    ok = False
    for j in range(len(names)):
        col = valid.labels[:, j]
        ok = ok or np.unique(col[~np.isnan(col)]).size == 2
    if not ok:
        raise PropertyDataError(
            "no task has both classes among the validation labels: the validation "
            f"{default_metric('classification', metric)} is undefined; use a different split"
        )


def label_statistics(train: "MolDataset", task_type: str, pos_weight: str, scaling: str) -> Dict[str, Any]:
    """pos_weight (classification) and mean/std (regression) from the training labels only."""
    labels = train.labels
    stats: Dict[str, Any] = {"pos_weight": None, "target_mean": None, "target_std": None}
    if task_type == "classification":
        pw = (pos_weight or "none").strip().lower()
        if pw == "auto":
            n_pos = np.nansum(labels == 1.0, axis=0).astype(float)
            n_neg = np.nansum(labels == 0.0, axis=0).astype(float)
            stats["pos_weight"] = [float(n / p) if p > 0 and n > 0 else 1.0 for n, p in zip(n_neg, n_pos)]
        elif pw not in ("none", ""):
            try:
                value = float(pw)
            except ValueError:
                raise PropertyDataError(f"pos_weight must be 'auto', 'none' or a number, got {pos_weight!r}") from None
            if not value > 0:
                raise PropertyDataError(f"pos_weight must be positive, got {value}")
            stats["pos_weight"] = [value] * labels.shape[1]
    elif scaling == "standardize":
        mean = np.nanmean(labels, axis=0)
        std = np.nanstd(labels, axis=0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        stats["target_mean"] = [float(m) if np.isfinite(m) else 0.0 for m in mean]
        stats["target_std"] = [float(s) for s in std]
    return stats


__all__ = [
    "SPLITS", "split_targets", "read_property_splits",
    "check_trainable", "label_statistics",
]
