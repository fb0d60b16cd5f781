"""Train/valid/test splits: the deterministic scaffold split of PROTOCOL.md and a seeded random split.

Indices always refer to the **filtered** dataset, i.e. positions in
:class:`bartsmiles.data.datasets.MolDataset` order (invalid SMILES already dropped).

Scaffold split (PROTOCOL.md, matching DeepChem's ScaffoldSplitter):

1. scaffold = ``MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)``;
2. indices grouped by scaffold, ascending within each group;
3. groups ordered by ``sorted(groups, key=lambda g: (len(g), g[0]), reverse=True)``;
4. ``train_cutoff = frac_train * n`` and ``valid_cutoff = (frac_train + frac_valid) * n``;
   the sum of the fractions is rounded to 12 decimals first so that the defaults give
   exactly ``0.9 * n`` as the protocol writes it (``0.8 + 0.1`` is 0.9000000000000001
   in floating point);
5. groups are walked in that order: a group that would push train past
   ``train_cutoff`` goes to test if it would push train+valid past ``valid_cutoff``
   and to valid otherwise; every other group goes to train.

Within each part the indices stay in walk order (as DeepChem returns them), which is
also the order the checksum covers.

Random split: ``numpy.random.default_rng(seed).permutation(n)``; the first
``floor(frac_train * n)`` positions are train, up to ``floor((frac_train +
frac_valid) * n)`` valid, and the rest test (the floors use a 1e-9 tolerance so that
e.g. ``0.7 * 10`` is not cut at 6 by floating-point error).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bartsmiles.core.chem import murcko_scaffold, parse_smiles
from bartsmiles.errors import InvalidSmilesError, SplitFileError

__all__ = ["Split", "scaffold_split", "random_split", "make_split", "SPLIT_KINDS"]

SPLIT_KINDS = ("scaffold", "random")


@dataclass
class Split:
    """Index lists into the filtered dataset, plus how they were made."""

    train: list[int]
    valid: list[int]
    test: list[int]
    kind: str
    seed: int | None

    def sizes(self) -> tuple[int, int, int]:
        """``(len(train), len(valid), len(test))``."""
        return len(self.train), len(self.valid), len(self.test)

    def checksum(self) -> str:
        """sha256 of the canonical JSON ``{"test":[...],"train":[...],"valid":[...]}`` (no spaces)."""
        payload = {"train": [int(i) for i in self.train], "valid": [int(i) for i in self.valid],
                   "test": [int(i) for i in self.test]}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form written by :meth:`save`."""
        return {
            "kind": self.kind,
            "seed": self.seed,
            "sizes": list(self.sizes()),
            "checksum": self.checksum(),
            "train": [int(i) for i in self.train],
            "valid": [int(i) for i in self.valid],
            "test": [int(i) for i in self.test],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the split as JSON (with its sizes and checksum for inspection)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict()) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Split":
        """Read a split written by :meth:`save`, validating it.

        Raises:
            FileNotFoundError: no such file.
            SplitFileError: bad JSON, missing fields, non-integer or negative indices,
                an index used twice, an unknown kind, or a checksum that disagrees.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"split file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SplitFileError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise SplitFileError(f"{path}: expected a JSON object, got {type(data).__name__}")
        missing = [k for k in ("train", "valid", "test", "kind") if k not in data]
        if missing:
            raise SplitFileError(f"{path}: missing field(s) {missing}")
        if data["kind"] not in SPLIT_KINDS:
            raise SplitFileError(f"{path}: unknown split kind {data['kind']!r}; expected one of {SPLIT_KINDS}")
        seed = data.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise SplitFileError(f"{path}: seed must be an integer or null, got {seed!r}")
        parts: dict[str, list[int]] = {}
        for key in ("train", "valid", "test"):
            values = data[key]
            if not isinstance(values, list):
                raise SplitFileError(f"{path}: {key!r} must be a list of indices")
            for pos, value in enumerate(values):
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise SplitFileError(
                        f"{path}: {key}[{pos}] = {value!r} is not a non-negative integer index"
                    )
            parts[key] = values
        seen: dict[int, str] = {}
        for key, values in parts.items():
            for value in values:
                if value in seen:
                    raise SplitFileError(f"{path}: index {value} appears in both {seen[value]!r} and {key!r}"
                                         if seen[value] != key else f"{path}: index {value} appears twice in {key!r}")
                seen[value] = key
        split = cls(train=parts["train"], valid=parts["valid"], test=parts["test"], kind=data["kind"], seed=seed)
        if "checksum" in data and data["checksum"] != split.checksum():
            raise SplitFileError(
                f"{path}: stored checksum {data['checksum']} does not match the indices ({split.checksum()})"
            )
        return split


def _check_fractions(frac_train: float, frac_valid: float) -> None:
    if not (0.0 <= frac_train <= 1.0 and 0.0 <= frac_valid <= 1.0 and frac_train + frac_valid <= 1.0 + 1e-12):
        raise ValueError(
            f"fractions must be in [0, 1] with frac_train + frac_valid <= 1, got {frac_train}, {frac_valid}"
        )


def scaffold_split(smiles: Sequence[str], frac_train: float = 0.8, frac_valid: float = 0.1) -> Split:
    """The deterministic Bemis-Murcko scaffold split of PROTOCOL.md (steps 1-5 above).

    Raises:
        InvalidSmilesError: a SMILES does not parse (its index is named); filter first.
    """
    _check_fractions(frac_train, frac_valid)
    groups_by_scaffold: dict[str, list[int]] = defaultdict(list)
    for i, smi in enumerate(smiles):
        try:
            mol = parse_smiles(smi)
        except InvalidSmilesError as exc:
            raise InvalidSmilesError(smi, row=i, reason=exc.reason,
                                     message=f"scaffold_split: SMILES at index {i} does not parse: {exc}") from None
        groups_by_scaffold[murcko_scaffold(mol)].append(i)
    groups = sorted(groups_by_scaffold.values(), key=lambda g: (len(g), g[0]), reverse=True)
    n = len(smiles)
    train_cutoff = frac_train * n
    valid_cutoff = round(frac_train + frac_valid, 12) * n
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for group in groups:
        if len(train) + len(group) > train_cutoff:
            if len(train) + len(valid) + len(group) > valid_cutoff:
                test.extend(group)
            else:
                valid.extend(group)
        else:
            train.extend(group)
    return Split(train=train, valid=valid, test=test, kind="scaffold", seed=None)


def random_split(n: int, seed: int, frac_train: float = 0.8, frac_valid: float = 0.1) -> Split:
    """Seeded random split of ``range(n)`` (cut points documented in the module docstring)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    _check_fractions(frac_train, frac_valid)
    order = [int(i) for i in np.random.default_rng(int(seed)).permutation(int(n))]
    cut_train = math.floor(frac_train * n + 1e-9)
    cut_valid = max(cut_train, min(int(n), math.floor((frac_train + frac_valid) * n + 1e-9)))
    return Split(train=order[:cut_train], valid=order[cut_train:cut_valid], test=order[cut_valid:],
                 kind="random", seed=int(seed))


def make_split(kind: str, smiles: Sequence[str], seed: int = 0) -> Split:
    """``scaffold`` (seed ignored: the split is deterministic) or ``random`` (seeded)."""
    if kind == "scaffold":
        return scaffold_split(smiles)
    if kind == "random":
        return random_split(len(smiles), seed)
    raise ValueError(f"unknown split kind {kind!r}; expected one of {SPLIT_KINDS}")
