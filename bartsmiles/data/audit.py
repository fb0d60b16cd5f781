"""A data-trust report for a property dataset: can these labels and this split be trusted?

:func:`audit` loads a registered dataset or a table (:mod:`bartsmiles.data.datasets`, so invalid
rows are dropped and reported exactly as for training) and checks:

* **invalid rows** -- the rows RDKit cannot parse, with their 0-based data row and the reason;
* **duplicates** -- rows that are the same molecule, by RDKit canonical (isomeric) SMILES and by
  standard InChIKey (which also joins some tautomers and charge-separated spellings); a group
  *conflicts* when its labels for some task disagree (classification: both 0 and 1;
  regression: a spread above ``CONFLICT_STD_FRACTION`` times the task's standard deviation);
* **split overlap** -- molecules (canonical SMILES or InChIKey) found in two parts of the split,
  after canonicalization, and the test rows whose molecule is in train;
* **label balance** -- per task and split part: the positive fraction (classification) or the
  mean and standard deviation (regression);
* **scaffolds** -- the fraction of test rows whose Bemis-Murcko scaffold
  (:func:`bartsmiles.core.chem.murcko_scaffold`, as the scaffold split uses it; acyclic molecules
  share the scaffold ``""``) also occurs in train. A scaffold split makes it 0 by construction;
  a random split shows how optimistic its test part is;
* **a spelling-leak test** -- whether the labels can be predicted from how the SMILES are
  *written* rather than from the molecules.

Spelling-leak test
------------------
For every SMILES, :func:`spelling_features` measures the writing only (:data:`FEATURES`): the
fraction of atoms written as lower-case aromatic symbols, the fraction of RDKit-aromatic atoms
written upper-case (a Kekulé ring with alternating ``=``), bracket atoms with an explicit H,
charged atoms, ``@`` stereo centres, ``/`` and ``\\`` bond marks, ring-closure digits, ``.``
fragments and the string length. A standardized linear model (logistic regression with balanced
class weights, or ridge regression) is cross-validated on these features per task
(``N_FOLDS``-fold, stratified for classification, shuffled with ``seed``); the out-of-fold
predictions of all folds are pooled into one ROC-AUC (classification) or R^2 (regression).
The same is done on the same features of the RDKit canonical SMILES, which write every molecule
one way: what the canonical features predict is chemistry (size, charges, stereo), what the
as-written features predict *beyond* that is the spelling.

A task is **flagged** (:func:`is_leak`) when the as-written score is above ``LEAK_MIN_SCORE``
(ROC-AUC 0.75, R^2 0.30) **and** it beats the canonical score either

* by more than ``LEAK_MIN_DIFFERENCE`` (0.10), or
* by more than ``LEAK_MIN_GAIN`` (0.05) while leaving at most ``LEAK_ERROR_RATIO`` (half) of the
  canonical model's error (``1 - AUC`` or ``1 - R^2``).

The difference is the leak itself; the floor keeps a task where both scores are near chance
(0.5 AUC, 0 R^2) from being flagged on cross-validation noise, and 0.10 is well above the noise
of the *paired* difference (both scores use the same folds and molecules; on the MoleculeNet sets
without a leak it stays below 0.05 on all but BBBP). The second clause is for a leak on top of
chemistry that already predicts well: near the top of the scale a gain of 0.10 is impossible, but
halving the ranking errors is as telling. ClinTox is the reference leak: CT_TOX-positive molecules
are never written with lower-case aromatic atoms, and the as-written features reach ROC-AUC 0.99
against 0.88 for the canonical ones (which still see that the approved drugs were written
protonated, a difference canonicalization keeps); both clauses hold there.
A task whose minority class has fewer than ``MIN_CLASS_ROWS`` labelled rows (classification)
or with fewer than ``MIN_REGRESSION_ROWS`` labelled rows (regression) is skipped and says so.

To stay fast on large sets, the test uses at most ``max_rows`` rows (default
``MAX_ROWS``): every minority-class row of each tested task plus a seeded random sample of the
other rows (ROC-AUC does not depend on the class balance, so keeping the rare class whole loses
nothing), or a plain random sample for regression; and at most ``max_tasks`` tasks (default
``MAX_TASKS``), those with the most minority-class (classification) or labelled (regression)
rows. The report says when either cap was used. Everything else uses every row.

No torch, no fairseq.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bartsmiles.core.chem import (
    canonicalize,
    inchi_key,
    murcko_scaffold,
    parse_in_written_order,
    parse_smiles,
)
from bartsmiles.core.files import read_csv
from bartsmiles.core.splits import SPLIT_KINDS, Split, make_split
from bartsmiles.core.tokenizer import SMILES_REGEX, SmilesTokenizer
from bartsmiles.data.datasets import InvalidRow, MolDataset, load_dataset, load_table
from bartsmiles.data.registry import get_spec, locate, registry, resolve_targets
from bartsmiles.errors import DataError, InvalidSmilesError, SplitFileError

__all__ = [
    "FEATURES", "LEAK_MIN_DIFFERENCE", "LEAK_MIN_GAIN", "LEAK_ERROR_RATIO", "LEAK_MIN_SCORE", "MAX_ROWS", "MAX_TASKS", "MIN_CLASS_ROWS",
    "MIN_REGRESSION_ROWS", "N_FOLDS", "CONFLICT_STD_FRACTION",
    "DuplicateGroup", "Duplicates", "SplitAudit", "TaskBalance", "TaskLeak", "SpellingLeakTest", "AuditReport",
    "audit", "audit_name", "is_leak", "spelling_features",
]

#: The writing features of :func:`spelling_features`, in column order.
FEATURES: tuple[str, ...] = (
    "aromatic_lowercase",  # atoms written as lower-case aromatic symbols (c, n, [nH], [se]) / atoms
    "kekule_aromatic",  # RDKit-aromatic atoms written upper-case (Kekulé form) / aromatic atoms (0 without any)
    "explicit_h",  # bracket atoms with an explicit H count, and [H] atoms, / atoms
    "charged_atoms",  # atoms written with a + or - charge
    "stereo_centres",  # atoms written with @ or @@
    "stereo_bonds",  # / and \ bond marks
    "ring_closures",  # ring-closure digits (each closure counts twice: opened and closed)
    "fragments",  # '.' separators
    "length",  # characters
)
#: A flagged task's as-written score is above this (per metric) ...
LEAK_MIN_SCORE: dict[str, float] = {"roc_auc": 0.75, "r2": 0.30}
#: ... and beats the canonical score by more than this ...
LEAK_MIN_DIFFERENCE = 0.10
#: ... or by more than this while leaving at most LEAK_ERROR_RATIO of the canonical model's error.
LEAK_MIN_GAIN = 0.05
LEAK_ERROR_RATIO = 0.5
#: Default row cap of the spelling-leak test (the other checks use every row).
MAX_ROWS = 10_000
#: Default task cap of the spelling-leak test.
MAX_TASKS = 100
#: Classification tasks need this many labelled rows of the minority class to be tested.
MIN_CLASS_ROWS = 20
#: Regression tasks need this many labelled rows to be tested.
MIN_REGRESSION_ROWS = 50
#: Cross-validation folds of the spelling-leak test.
N_FOLDS = 5
#: Regression duplicates conflict when their labels spread more than this times the task's std.
CONFLICT_STD_FRACTION = 0.1

_TOKEN = re.compile(SMILES_REGEX)
_PARTS = ("train", "valid", "test")
_PAIRS = (("train", "valid"), ("train", "test"), ("valid", "test"))
_SHOW = 20  # rows of a long list shown in the markdown (the JSON has all of them)


# ------------------------------------------------------------------------------------ results


@dataclass
class DuplicateGroup:
    """Rows that hold the same molecule. ``rows`` are 0-based data rows of the table as read;
    ``spread`` is the largest label range (max - min) of a task within the group (regression only)."""

    key: str
    rows: list[int]
    smiles: list[str]
    conflicting_tasks: list[str] = field(default_factory=list)
    spread: float | None = None

    @property
    def conflicting(self) -> bool:
        """True when the labels of some task disagree within the group."""
        return bool(self.conflicting_tasks)


@dataclass
class Duplicates:
    """The duplicate groups under one identity (``by``: ``canonical_smiles`` or ``inchikey``)."""

    by: str
    groups: list[DuplicateGroup]
    n_without_key: int = 0  # molecules that have no key (InChI refused them); never grouped

    @property
    def n_groups(self) -> int:
        """Number of groups (each has two rows or more)."""
        return len(self.groups)

    @property
    def n_rows(self) -> int:
        """Rows that belong to a group."""
        return sum(len(g.rows) for g in self.groups)

    @property
    def n_conflicting(self) -> int:
        """Groups whose labels disagree for some task."""
        return sum(g.conflicting for g in self.groups)


@dataclass
class TaskBalance:
    """Label balance of one task: ``parts`` maps ``all``/``train``/``valid``/``test`` to
    ``{"n": labelled rows, "positive_fraction": ...}`` (classification) or ``{"n", "mean", "std"}``."""

    task: str
    parts: dict[str, dict[str, float | int | None]]


@dataclass
class SplitAudit:
    """One split of the audited rows: overlap between its parts, scaffolds, label balance.

    ``shared_canonical`` / ``shared_inchikey`` map ``"train/valid"``, ``"train/test"`` and
    ``"valid/test"`` to the number of distinct molecules found in both parts. ``test_rows_in_train``
    counts test rows whose molecule (either identity) is also in train. ``test_rows_scaffold_in_train``
    counts test rows whose Murcko scaffold occurs in train.
    """

    name: str
    kind: str
    seed: int | None
    sizes: tuple[int, int, int]
    checksum: str
    shared_canonical: dict[str, int]
    shared_inchikey: dict[str, int]
    test_rows_in_train: int
    valid_rows_in_train: int
    shared_examples: list[str]
    test_rows_scaffold_in_train: int
    test_scaffolds: int
    test_scaffolds_in_train: int
    balance: list[TaskBalance]

    @property
    def overlapping(self) -> bool:
        """True when some molecule sits in two parts."""
        return any(self.shared_canonical.values()) or any(self.shared_inchikey.values())

    @property
    def test_scaffold_seen_fraction(self) -> float | None:
        """Fraction of test rows whose scaffold also occurs in train (None without test rows)."""
        return self.test_rows_scaffold_in_train / self.sizes[2] if self.sizes[2] else None


@dataclass
class TaskLeak:
    """The spelling-leak test of one task: scores of the as-written and the canonical features."""

    task: str
    n: int
    n_minority: int | None
    as_written: float | None
    canonical: float | None
    flagged: bool = False
    skipped: str = ""

    @property
    def difference(self) -> float | None:
        """``as_written - canonical`` (None when the task was skipped)."""
        if self.as_written is None or self.canonical is None:
            return None
        return self.as_written - self.canonical


@dataclass
class SpellingLeakTest:
    """Can the labels be predicted from how the SMILES are written? (see the module docstring)"""

    metric: str
    model: str
    folds: int
    seed: int
    features: list[str]
    rule: str
    n_rows: int
    n_rows_used: int
    max_rows: int
    n_tasks: int
    max_tasks: int
    tasks: list[TaskLeak]
    notes: list[str] = field(default_factory=list)
    unmapped_smiles: int = 0  # SMILES whose written atoms could not be matched to RDKit's (kekule feature 0)

    @property
    def tested(self) -> list[TaskLeak]:
        """The tasks that were not skipped."""
        return [t for t in self.tasks if not t.skipped]

    @property
    def flagged_tasks(self) -> list[str]:
        """Names of the flagged tasks."""
        return [t.task for t in self.tasks if t.flagged]

    @property
    def flagged(self) -> bool:
        """True when some task is flagged."""
        return bool(self.flagged_tasks)

    def _values(self, what: str) -> list[float]:
        return [getattr(t, what) for t in self.tested]

    def stat(self, what: str, how: str) -> float | None:
        """``max`` or ``mean`` of ``as_written``, ``canonical`` or ``difference`` over the tested tasks."""
        values = self._values(what)
        if not values:
            return None
        return float(max(values)) if how == "max" else float(np.mean(values))

    @property
    def worst(self) -> TaskLeak | None:
        """The tested task with the largest difference."""
        tested = self.tested
        return max(tested, key=lambda t: t.difference) if tested else None


@dataclass
class AuditReport:
    """Everything :func:`audit` found. ``rows`` numbers in it are 0-based data rows of the table
    as read (CSV line = row + 2); ``invalid`` are the dropped rows."""

    dataset: str
    source: str
    task_type: str
    tasks: list[str]
    n_rows: int
    n_valid: int
    invalid: list[InvalidRow]
    duplicates: list[Duplicates]
    splits: list[SplitAudit]
    leak: SpellingLeakTest
    seed: int
    elapsed_s: float

    @property
    def warnings(self) -> list[str]:
        """What makes the data untrustworthy as given (empty when clean)."""
        out = []
        if self.leak.flagged:
            names = self.leak.flagged_tasks
            out.append(f"spelling leak in {len(names)} task(s): {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}")
        for dup in self.duplicates:
            if dup.n_conflicting:
                out.append(f"{dup.n_conflicting} duplicate group(s) by {dup.by} with conflicting labels")
        for split in self.splits:
            if split.overlapping:
                shared = max(sum(split.shared_canonical.values()), sum(split.shared_inchikey.values()))
                out.append(f"{split.name} split: {shared} molecule(s) in more than one part")
        return out

    @property
    def exit_code(self) -> int:
        """0 when clean, 1 when there are warnings (the command line's exit status)."""
        return 1 if self.warnings else 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN written as null), with the derived counts and flags included."""
        out = asdict(self)
        for dup, raw in zip(self.duplicates, out["duplicates"]):
            raw.update(n_groups=dup.n_groups, n_rows=dup.n_rows, n_conflicting=dup.n_conflicting)
        for split, raw in zip(self.splits, out["splits"]):
            raw.update(overlapping=split.overlapping, test_scaffold_seen_fraction=split.test_scaffold_seen_fraction)
        for task, raw in zip(self.leak.tasks, out["leak"]["tasks"]):
            raw["difference"] = task.difference
        out["leak"]["summary"] = {f"{how}_{what}": self.leak.stat(what, how)
                                  for what in ("as_written", "canonical", "difference") for how in ("max", "mean")}
        out["leak"].update(flagged=self.leak.flagged, flagged_tasks=self.leak.flagged_tasks,
                           n_tested=len(self.leak.tested))
        out["warnings"] = self.warnings
        out["exit_code"] = self.exit_code
        return _json_ready(out)

    def summary(self) -> str:
        """A few lines for a terminal."""
        lines = [f"audit {self.dataset}: {self.n_rows} rows read, {len(self.invalid)} invalid, {self.n_valid} audited "
                 f"({len(self.tasks)} {self.task_type} task(s))"]
        lines.append("duplicates: " + "; ".join(f"{d.n_groups} group(s) by {d.by} ({d.n_conflicting} conflicting)"
                                                for d in self.duplicates))
        for s in self.splits:
            seen = s.test_scaffold_seen_fraction
            lines.append(f"{s.name} split {'/'.join(map(str, s.sizes))}: "
                         f"{max(sum(s.shared_canonical.values()), sum(s.shared_inchikey.values()))} molecule(s) shared "
                         f"between parts; test rows with a train scaffold: {_fmt(seen)}")
        lines.append(_leak_line(self.leak))
        warnings = self.warnings
        lines.append("verdict: " + ("WARNINGS: " + "; ".join(warnings) if warnings else "clean"))
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The human-readable report."""
        return _markdown(self)

    def write(self, out_dir: str | os.PathLike[str] = ".") -> tuple[Path, Path]:
        """Write ``audit_<dataset>.md`` and ``audit_<dataset>.json`` into ``out_dir``; returns both paths."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        md, js = folder / f"audit_{self.dataset}.md", folder / f"audit_{self.dataset}.json"
        md.write_text(self.to_markdown(), encoding="utf-8")
        js.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return md, js


# ----------------------------------------------------------------------------- the features


def spelling_features(smiles: str) -> np.ndarray:
    """The writing features (:data:`FEATURES`) of one SMILES string, as a float vector.

    Only the string is read, except ``kekule_aromatic``, which needs RDKit's aromaticity
    (:func:`bartsmiles.core.chem.parse_in_written_order`); it is ``nan`` when the SMILES does not
    parse or its atom tokens cannot be matched to RDKit's atoms.
    """
    tokens = _TOKEN.findall(smiles)
    lowercase: list[bool] = []
    explicit_h = charged = centres = 0
    for token in tokens:
        if not SmilesTokenizer.is_atom_token(token):
            continue
        if token[0] == "[":
            inner = token[1:-1].lstrip("0123456789")
            symbol = re.match(r"[A-Z][a-z]?|[a-z]{1,2}|\*", inner)
            rest = inner[symbol.end():] if symbol else inner
            lowercase.append(bool(inner) and inner[0].islower())
            explicit_h += symbol is not None and (symbol.group() == "H" or re.search(r"H\d*", rest) is not None)
            charged += "+" in rest or "-" in rest
            centres += "@" in rest
        else:
            lowercase.append(token[0].islower())
    n_atoms = max(len(lowercase), 1)
    kekule = math.nan
    try:
        mol = parse_in_written_order(smiles)
    except InvalidSmilesError:
        mol = None
    if mol is not None and mol.GetNumAtoms() == len(lowercase):
        aromatic = [atom.GetIsAromatic() for atom in mol.GetAtoms()]
        n_aromatic = sum(aromatic)
        kekule = sum(a and not low for a, low in zip(aromatic, lowercase)) / n_aromatic if n_aromatic else 0.0
    return np.array([
        sum(lowercase) / n_atoms,
        kekule,
        explicit_h / n_atoms,
        charged,
        centres,
        smiles.count("/") + smiles.count("\\"),
        sum(1 for t in tokens if t[0] == "%" or t.isdigit()),
        smiles.count("."),
        len(smiles),
    ], dtype=np.float64)


def is_leak(as_written: float, canonical: float, metric: str) -> bool:
    """The flag rule of the spelling-leak test (module docstring); ``metric`` is ``roc_auc`` or ``r2``."""
    gain = as_written - canonical
    if as_written <= LEAK_MIN_SCORE[metric]:
        return False
    return gain > LEAK_MIN_DIFFERENCE or (gain > LEAK_MIN_GAIN and
                                          1.0 - as_written <= LEAK_ERROR_RATIO * (1.0 - canonical))


def _rule(metric: str) -> str:
    error = "1 - AUC" if metric == "roc_auc" else "1 - R^2"
    return (f"as written > {LEAK_MIN_SCORE[metric]} and (as written - canonical > {LEAK_MIN_DIFFERENCE}, or > "
            f"{LEAK_MIN_GAIN} with at most {LEAK_ERROR_RATIO:g} x the canonical error ({error}))")


def _feature_matrix(smiles: Sequence[str]) -> tuple[np.ndarray, int]:
    """Features of each SMILES; unmapped Kekulé fractions become 0 and are counted."""
    x = np.vstack([spelling_features(s) for s in smiles]) if len(smiles) else np.zeros((0, len(FEATURES)))
    unmapped = int(np.isnan(x).any(axis=1).sum())
    return np.nan_to_num(x, nan=0.0), unmapped


# ------------------------------------------------------------------------------ loading


def audit_name(data: str | os.PathLike[str] | pd.DataFrame) -> str:
    """The name a report on ``data`` carries (``audit_<name>.md``): a registered dataset's name, a
    file's name without ``.csv``/compression suffixes, or ``table`` for a DataFrame."""
    if isinstance(data, pd.DataFrame):
        return "table"
    text = str(data)
    if not Path(text).is_file() and text in registry():
        return text
    name = Path(text).name
    for suffix in (".gz", ".bz2", ".xz", ".zip", ".zst", ".csv", ".tsv", ".txt"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "table"


def _load(data, smiles_column: str | None, target_columns: Sequence[str] | None, data_dir) -> tuple[MolDataset, str]:
    """The dataset to audit and where it came from (a registered name, a path or a DataFrame)."""
    if isinstance(data, pd.DataFrame):
        return load_table(data, smiles_column or "smiles", target_columns, name="table"), "<DataFrame>"
    text = str(data)
    path = Path(text)
    if path.is_file():
        return load_table(path, smiles_column or "smiles", target_columns, name=audit_name(text)), str(path)
    specs = registry()
    if text in specs:
        spec = get_spec(text)
        if smiles_column is None and target_columns is None:
            found = locate(spec, data_dir)
            return load_dataset(text, data_dir), str(found)
        if not spec.is_property_dataset:
            raise DataError(f"dataset {text!r} is a {spec.task_type} file, not a property dataset")
        found = locate(spec, data_dir)
        if target_columns is None:
            header = [str(c) for c in read_csv(found, nrows=0).columns]
            targets = resolve_targets(spec, header)
        else:
            targets = list(target_columns)
        return load_table(found, smiles_column or spec.smiles_column, targets, name=text,
                          task_type=spec.task_type if target_columns is None else None), str(found)
    known = ", ".join(sorted(n for n, s in specs.items() if s.is_property_dataset))
    raise DataError(f"{text}: no such file, and not a registered dataset (known: {known})")


# ------------------------------------------------------------------------------- checks


def _molecules(smiles: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """Canonical SMILES, InChIKey and Murcko scaffold of each (valid) SMILES, one parse each."""
    canonical, keys, scaffolds = [], [], []
    for s in smiles:
        mol = parse_smiles(s)
        canonical.append(canonicalize(mol))
        keys.append(inchi_key(mol))
        scaffolds.append(murcko_scaffold(mol))
    return canonical, keys, scaffolds


def _group(key: str, idx: list[int], ds: MolDataset, tolerance: np.ndarray) -> DuplicateGroup:
    """One duplicate group, with the tasks whose labels disagree in it."""
    conflicting, widest = [], None
    for j, task in enumerate(ds.task_names):
        values = ds.labels[idx, j]
        values = values[~np.isnan(values)]
        if values.size < 2:
            continue
        if ds.task_type == "classification":
            if np.unique(values).size > 1:
                conflicting.append(task)
            continue
        spread = float(values.max() - values.min())
        widest = spread if widest is None else max(widest, spread)
        if spread > tolerance[j]:
            conflicting.append(task)
    return DuplicateGroup(key=key, rows=[int(ds.rows[i]) for i in idx], smiles=[ds.smiles[i] for i in idx],
                          conflicting_tasks=conflicting, spread=widest)


def _duplicates(by: str, keys: Sequence[str], ds: MolDataset) -> Duplicates:
    positions: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        if key:
            positions[key].append(i)
    labels = ds.labels
    with np.errstate(all="ignore"):
        std = np.array([np.nanstd(labels[:, j]) if np.isfinite(labels[:, j]).any() else 0.0
                        for j in range(labels.shape[1])])
    tolerance = CONFLICT_STD_FRACTION * np.nan_to_num(std)
    groups = [_group(key, idx, ds, tolerance) for key, idx in positions.items() if len(idx) > 1]
    groups.sort(key=lambda g: g.rows[0])
    return Duplicates(by=by, groups=groups, n_without_key=sum(1 for k in keys if not k))


def _resolve_split(spec: str | os.PathLike[str] | Split, ds: MolDataset, seed: int) -> tuple[str, Split]:
    if isinstance(spec, Split):
        split, name = spec, spec.kind
    elif str(spec) in SPLIT_KINDS:
        split, name = make_split(str(spec), ds.smiles, seed=seed), str(spec)
    else:
        path = Path(spec)
        split, name = Split.load(path), path.name
        n = len(ds)
        for part in _PARTS:
            bad = [i for i in getattr(split, part) if i >= n]
            if bad:
                raise SplitFileError(f"{path}: {part} index {bad[0]} is out of range: {ds.name} has {n} rows "
                                     f"after dropping invalid SMILES ({len(bad)} such index(es))")
    return name, split


def _balance(ds: MolDataset, parts: dict[str, list[int]]) -> list[TaskBalance]:
    out = []
    for j, task in enumerate(ds.task_names):
        stats: dict[str, dict[str, float | int | None]] = {}
        for part, idx in parts.items():
            values = ds.labels[idx, j]
            values = values[~np.isnan(values)]
            if ds.task_type == "classification":
                stats[part] = {"n": int(values.size), "positive_fraction": float(values.mean()) if values.size else None}
            else:
                stats[part] = {"n": int(values.size), "mean": float(values.mean()) if values.size else None,
                               "std": float(values.std()) if values.size else None}
        out.append(TaskBalance(task=task, parts=stats))
    return out


def _split_audit(name: str, split: Split, ds: MolDataset, canonical: list[str], keys: list[str],
                 scaffolds: list[str]) -> SplitAudit:
    parts = {p: list(getattr(split, p)) for p in _PARTS}
    by_canonical = {p: {canonical[i] for i in idx} for p, idx in parts.items()}
    by_key = {p: {keys[i] for i in idx if keys[i]} for p, idx in parts.items()}
    shared_c = {f"{a}/{b}": len(by_canonical[a] & by_canonical[b]) for a, b in _PAIRS}
    shared_k = {f"{a}/{b}": len(by_key[a] & by_key[b]) for a, b in _PAIRS}
    examples = sorted(set().union(*(by_canonical[a] & by_canonical[b] for a, b in _PAIRS)))[:10]

    def in_train(part: str) -> int:
        return sum(1 for i in parts[part] if canonical[i] in by_canonical["train"] or (keys[i] and keys[i] in by_key["train"]))

    train_scaffolds = {scaffolds[i] for i in parts["train"]}
    test_scaffolds = {scaffolds[i] for i in parts["test"]}
    return SplitAudit(
        name=name, kind=split.kind, seed=split.seed, sizes=split.sizes(), checksum=split.checksum(),
        shared_canonical=shared_c, shared_inchikey=shared_k,
        test_rows_in_train=in_train("test"), valid_rows_in_train=in_train("valid"), shared_examples=examples,
        test_rows_scaffold_in_train=sum(1 for i in parts["test"] if scaffolds[i] in train_scaffolds),
        test_scaffolds=len(test_scaffolds), test_scaffolds_in_train=len(test_scaffolds & train_scaffolds),
        balance=_balance(ds, {"all": list(range(len(ds))), **parts}),
    )


# ------------------------------------------------------------------------- spelling leak


def _minority(values: np.ndarray) -> tuple[float, int]:
    """The rarer class of observed 0/1 ``values`` and its count."""
    positives = int((values == 1).sum())
    negatives = int((values == 0).sum())
    return (1.0, positives) if positives <= negatives else (0.0, negatives)


def _cv_score(x: np.ndarray, y: np.ndarray, task_type: str, seed: int) -> float:
    if task_type == "classification":
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
        folds = StratifiedKFold(n_splits=N_FOLDS, shuffle=True, random_state=seed)
        scores = cross_val_predict(model, x, y, cv=folds, method="decision_function")
        return float(roc_auc_score(y, scores))
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    folds = KFold(n_splits=N_FOLDS, shuffle=True, random_state=seed)
    return float(r2_score(y, cross_val_predict(model, x, y, cv=folds)))


def _leak_test(ds: MolDataset, canonical: list[str], *, seed: int, max_rows: int, max_tasks: int) -> SpellingLeakTest:
    classification = ds.task_type == "classification"
    metric = "roc_auc" if classification else "r2"
    labels, n = ds.labels, len(ds)
    notes: list[str] = []
    n_tasks = len(ds.task_names)
    power = []
    for j in range(n_tasks):
        observed = labels[~np.isnan(labels[:, j]), j]
        power.append(_minority(observed)[1] if classification else observed.size)
    order = sorted(range(n_tasks), key=lambda j: (-power[j], j))
    chosen = sorted(order[:max_tasks])
    if n_tasks > max_tasks:
        notes.append(f"tested {max_tasks} of {n_tasks} tasks: those with the most "
                     f"{'minority-class' if classification else 'labelled'} rows")
    rng = np.random.default_rng(seed)
    if n > max_rows:
        keep = np.zeros(n, dtype=bool)
        if classification:
            for j in chosen:
                observed = ~np.isnan(labels[:, j])
                rare, _ = _minority(labels[observed, j])
                keep |= observed & (labels[:, j] == rare)
            if keep.sum() > max_rows:
                keep[rng.choice(np.flatnonzero(keep), size=int(keep.sum()) - max_rows, replace=False)] = False
        room = max_rows - int(keep.sum())
        if room > 0:
            keep[rng.choice(np.flatnonzero(~keep), size=room, replace=False)] = True
        used = np.flatnonzero(keep)
        notes.append(f"used {used.size} of {n} rows: "
                     + ("every minority-class row of the tested tasks plus a seeded random sample of the rest"
                        if classification else "a seeded random sample"))
    else:
        used = np.arange(n)
    x_written, unmapped = _feature_matrix([ds.smiles[i] for i in used])
    x_canonical, _ = _feature_matrix([canonical[i] for i in used])
    if unmapped:
        notes.append(f"{unmapped} SMILES whose atoms could not be matched to RDKit's: their kekule_aromatic is 0")
    results = []
    for j in chosen:
        y_all = labels[used, j]
        have = ~np.isnan(y_all)
        y = y_all[have]
        task = ds.task_names[j]
        n_minority = _minority(y)[1] if classification else None
        if classification and n_minority < MIN_CLASS_ROWS:
            results.append(TaskLeak(task, int(y.size), n_minority, None, None,
                                    skipped=f"only {n_minority} minority-class row(s) (< {MIN_CLASS_ROWS})"))
            continue
        if not classification and y.size < MIN_REGRESSION_ROWS:
            results.append(TaskLeak(task, int(y.size), None, None, None,
                                    skipped=f"only {y.size} labelled row(s) (< {MIN_REGRESSION_ROWS})"))
            continue
        written = _cv_score(x_written[have], y, ds.task_type, seed)
        canon = _cv_score(x_canonical[have], y, ds.task_type, seed)
        flagged = is_leak(written, canon, metric)
        results.append(TaskLeak(task, int(y.size), n_minority, written, canon, flagged=flagged))
    model = ("StandardScaler + LogisticRegression(class_weight='balanced')" if classification
             else "StandardScaler + Ridge(alpha=1.0)")
    return SpellingLeakTest(metric=metric, model=model, folds=N_FOLDS, seed=seed, features=list(FEATURES),
                            rule=_rule(metric), n_rows=n, n_rows_used=int(used.size),
                            max_rows=max_rows, n_tasks=n_tasks, max_tasks=max_tasks, tasks=results, notes=notes,
                            unmapped_smiles=unmapped)


# ---------------------------------------------------------------------------------- audit


def audit(
    data: str | os.PathLike[str] | pd.DataFrame,
    *,
    smiles_column: str | None = None,
    target_columns: Sequence[str] | None = None,
    split: str | os.PathLike[str] | Split | Sequence[str | os.PathLike[str] | Split] = "scaffold",
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    max_rows: int = MAX_ROWS,
    max_tasks: int = MAX_TASKS,
    name: str | None = None,
) -> AuditReport:
    """Audit a property dataset (see the module docstring for every check).

    Args:
        data: a registered dataset name (``"clintox"``: the registry's SMILES and target columns),
            a CSV path (plain or compressed) or a DataFrame. An existing file wins over a name.
        smiles_column: the SMILES column (default: the registry's, or ``smiles`` for a table).
        target_columns: the label columns (default: the registry's; for a table every column
            but the SMILES one, as :func:`bartsmiles.data.datasets.load_table`).
        split: ``"scaffold"`` (PROTOCOL.md), ``"random"`` (seeded with ``seed``), a split JSON file
            (:meth:`bartsmiles.core.splits.Split.load`, indices into the valid rows) or a
            :class:`~bartsmiles.core.splits.Split`; or a list of them, each audited.
        data_dir: where registered data files are looked for first (then ``$BARTSMILES_DATA``).
        seed: the random split's seed, the cross-validation shuffle and the row sample.
        max_rows, max_tasks: caps of the spelling-leak test.
        name: the report's name (default :func:`audit_name` of ``data``).

    Raises:
        FileNotFoundError, DataError: unreadable file, or neither a file nor a registered name.
        MissingColumnError: a SMILES or target column the table lacks.
        SplitFileError: a split file that is malformed or indexes past the valid rows.
    """
    start = time.perf_counter()
    if max_rows < 2 * N_FOLDS or max_tasks < 1:
        raise ValueError(f"max_rows must be >= {2 * N_FOLDS} and max_tasks >= 1, got {max_rows} and {max_tasks}")
    specs = [split] if isinstance(split, (str, os.PathLike, Split)) else list(split)
    if not specs:
        raise ValueError("split: give at least one split (scaffold, random or a split file)")
    ds, source = _load(data, smiles_column, target_columns, data_dir)
    if ds.task_type not in ("classification", "regression"):
        raise DataError(f"{source}: no target columns to audit (give --target-columns)")
    resolved = [_resolve_split(s, ds, seed) for s in specs]
    canonical, keys, scaffolds = _molecules(ds.smiles)
    return AuditReport(
        dataset=name or audit_name(data), source=source, task_type=ds.task_type, tasks=list(ds.task_names),
        n_rows=len(ds) + len(ds.invalid), n_valid=len(ds), invalid=list(ds.invalid),
        duplicates=[_duplicates("canonical_smiles", canonical, ds), _duplicates("inchikey", keys, ds)],
        splits=[_split_audit(n, s, ds, canonical, keys, scaffolds) for n, s in resolved],
        leak=_leak_test(ds, canonical, seed=seed, max_rows=max_rows, max_tasks=max_tasks),
        seed=seed, elapsed_s=round(time.perf_counter() - start, 2),
    )


# ------------------------------------------------------------------------------- writing


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _leak_line(leak: SpellingLeakTest) -> str:
    metric = "ROC-AUC" if leak.metric == "roc_auc" else "R^2"
    worst = leak.worst
    if worst is None:
        return f"spelling leak ({metric}): no task could be tested"
    text = (f"spelling leak ({metric}, {len(leak.tested)} task(s) tested): as written max {_fmt(leak.stat('as_written', 'max'))}"
            f" mean {_fmt(leak.stat('as_written', 'mean'))}; canonical max {_fmt(leak.stat('canonical', 'max'))}"
            f" mean {_fmt(leak.stat('canonical', 'mean'))}; largest difference {_fmt(worst.difference)} ({worst.task})")
    return text + (f" -> LEAK in {len(leak.flagged_tasks)} task(s)" if leak.flagged else " -> no leak")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _markdown(r: AuditReport) -> str:
    warnings = r.warnings
    out = [f"# Data audit: {r.dataset}", "",
           f"Source: `{r.source}`. {r.n_rows} rows read, {len(r.invalid)} invalid, {r.n_valid} audited; "
           f"{len(r.tasks)} {r.task_type} task(s). Seed {r.seed}; {r.elapsed_s:.1f} s.", "",
           "**Verdict: " + ("warnings** (exit status 1):" if warnings else "clean** (exit status 0)."), ""]
    out += [f"- {w}" for w in warnings] + ([""] if warnings else [])

    out += ["## Invalid rows", ""]
    if r.invalid:
        out += ["Rows are 0-based data rows (CSV line = row + 2); they are left out of every other check.", "",
                "| row | SMILES | reason |", "|---|---|---|"]
        out += [f"| {i.row} | `{_cell(i.smiles)}` | {_cell(i.reason)} |" for i in r.invalid[:50]]
        if len(r.invalid) > 50:
            out.append(f"| ... | {len(r.invalid) - 50} more in the JSON | |")
    else:
        out.append("None: every SMILES parses with RDKit.")
    out.append("")

    out += ["## Duplicates", "",
            "Same molecule by RDKit canonical (isomeric) SMILES, and by standard InChIKey. A group conflicts when "
            "its labels disagree for a task (regression: spread above "
            f"{CONFLICT_STD_FRACTION} x the task's std).", "",
            "| identity | groups | rows in groups | conflicting groups |", "|---|---|---|---|"]
    out += [f"| {d.by} | {d.n_groups} | {d.n_rows} | {d.n_conflicting} |" for d in r.duplicates]
    out.append("")
    listed: set[tuple[int, ...]] = set()
    for d in r.duplicates:
        conflicting = [g for g in d.groups if g.conflicting and tuple(g.rows) not in listed]
        listed.update(tuple(g.rows) for g in d.groups)
        if conflicting:
            what = "Conflicting groups" if d is r.duplicates[0] else "Further conflicting groups"
            out += [f"{what} by {d.by} (first {min(len(conflicting), _SHOW)} of {len(conflicting)}):", "",
                    "| rows | SMILES as written | tasks that disagree |", "|---|---|---|"]
            for g in conflicting[:_SHOW]:
                tasks = ", ".join(g.conflicting_tasks[:5]) + (" ..." if len(g.conflicting_tasks) > 5 else "")
                if g.spread is not None:
                    tasks += f" (labels differ by up to {g.spread:.3g})"
                out.append(f"| {', '.join(map(str, g.rows))} | {_cell(' / '.join(f'`{s}`' for s in g.smiles[:3]))} "
                           f"| {_cell(tasks)} |")
            out.append("")

    for s in r.splits:
        out += [f"## Split: {s.name}", "",
                f"Sizes train/valid/test {'/'.join(map(str, s.sizes))} (kind {s.kind}, seed {s.seed}, checksum "
                f"`{s.checksum[:16]}`). Indices refer to the valid rows.", "",
                "| parts | shared molecules (canonical SMILES) | shared molecules (InChIKey) |", "|---|---|---|"]
        out += [f"| {pair} | {s.shared_canonical[pair]} | {s.shared_inchikey[pair]} |" for pair in s.shared_canonical]
        out += ["", f"- Test rows whose molecule is in train: {s.test_rows_in_train}; valid rows: {s.valid_rows_in_train}."]
        if s.shared_examples:
            out.append("- Shared, e.g.: " + ", ".join(f"`{_cell(x)}`" for x in s.shared_examples[:5]))
        out.append(f"- Test rows whose Murcko scaffold also occurs in train: {s.test_rows_scaffold_in_train} of "
                   f"{s.sizes[2]} ({_fmt(s.test_scaffold_seen_fraction)}); distinct test scaffolds seen in train: "
                   f"{s.test_scaffolds_in_train} of {s.test_scaffolds}.")
        out += ["", "Label balance (" + ("positive fraction" if r.task_type == "classification" else "mean ± std")
                + ", labelled rows in brackets)" + (f", first {_SHOW} of {len(s.balance)} tasks (all in the JSON)"
                                                     if len(s.balance) > _SHOW else "") + ":", "",
                "| task | all | train | valid | test |", "|---|---|---|---|---|"]
        for b in s.balance[:_SHOW]:
            cells = []
            for part in ("all", *_PARTS):
                st = b.parts[part]
                if r.task_type == "classification":
                    cells.append(f"{_fmt(st['positive_fraction'])} ({st['n']})")
                else:
                    cells.append(f"{_fmt(st['mean'], 2)} ± {_fmt(st['std'], 2)} ({st['n']})")
            out.append(f"| {_cell(b.task)} | " + " | ".join(cells) + " |")
        out.append("")

    leak = r.leak
    metric = "ROC-AUC" if leak.metric == "roc_auc" else "R^2"
    out += ["## Spelling-leak test", "",
            f"Features of how each SMILES is written ({', '.join(leak.features)}), {leak.model}, {leak.folds}-fold "
            f"cross-validation (seed {leak.seed}), out-of-fold {metric}; the same on the RDKit canonical SMILES. "
            f"A task is flagged when {leak.rule}.", ""]
    out += [f"- {note}" for note in leak.notes]
    out += [f"- {_leak_line(leak)}", ""]
    shown = sorted(leak.tasks, key=lambda t: (t.difference is None, -(t.difference or 0.0)))
    out += ["| task | rows | minority rows | as written | canonical | difference | flag |", "|---|---|---|---|---|---|---|"]
    for t in shown[:_SHOW]:
        flag = "LEAK" if t.flagged else (f"skipped: {t.skipped}" if t.skipped else "")
        out.append(f"| {_cell(t.task)} | {t.n} | {t.n_minority if t.n_minority is not None else ''} | "
                   f"{_fmt(t.as_written)} | {_fmt(t.canonical)} | {_fmt(t.difference)} | {flag} |")
    if len(shown) > _SHOW:
        out.append(f"| ... {len(shown) - _SHOW} more tasks in the JSON | | | | | | |")
    out.append("")
    return "\n".join(out)
