"""Tests for bartsmiles.core.splits, including regression pins of the protocol scaffold split."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem, RDLogger
from rdkit.Chem.Scaffolds import MurckoScaffold

from bartsmiles.core.splits import Split, make_split, random_split, scaffold_split
from bartsmiles.data.datasets import load_dataset
from bartsmiles.data.registry import get_spec, locate
from bartsmiles.errors import SplitFileError

# (sizes, checksum) computed once with bartsmiles.core.splits and confirmed by _reference_split below.
PINS = {
    "bbbp": ((1631, 204, 204), "26c1f8f796b88cd94fc1375d290170974f8037b1ab79833e2d0171ad494d0ad9"),
    "bace": ((1210, 151, 152), "add506d49402ac1448861ff2807ef31bd72c232f1e1d13d3cf90c6f31e9d5e02"),
    "esol": ((902, 113, 113), "3798f040cc8edd302d83439a04ec71adead0234c0900a290c4a858e465303801"),
}


def _reference_split(path, smiles_column):
    """Straight from PROTOCOL.md, sharing no code with bartsmiles: filter, then steps 1-5."""
    RDLogger.DisableLog("rdApp.*")
    table = pd.read_csv(path)
    mols = [Chem.MolFromSmiles(s) if isinstance(s, str) else None for s in table[smiles_column]]
    RDLogger.EnableLog("rdApp.*")
    mols = [m for m in mols if m is not None]
    groups = defaultdict(list)
    for i, mol in enumerate(mols):
        groups[MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)].append(i)
    n = len(mols)
    train_cutoff, valid_cutoff = 0.8 * n, 0.9 * n
    train, valid, test = [], [], []
    for g in sorted(groups.values(), key=lambda g: (len(g), g[0]), reverse=True):
        if len(train) + len(g) > train_cutoff:
            if len(train) + len(valid) + len(g) > valid_cutoff:
                test += g
            else:
                valid += g
        else:
            train += g
    return train, valid, test


@pytest.mark.parametrize("name", sorted(PINS))
def test_scaffold_split_pinned(name, data_dir):
    data = load_dataset(name, data_dir, download=False)
    split = scaffold_split(data.smiles)
    ref = _reference_split(locate(name, data_dir, download=False), get_spec(name).smiles_column)
    assert (split.train, split.valid, split.test) == ref
    assert (split.sizes(), split.checksum()) == PINS[name]
    assert split.kind == "scaffold" and split.seed is None
    assert sorted(split.train + split.valid + split.test) == list(range(len(data)))
    if name == "bbbp":
        assert len(data.invalid) == 11


def test_scaffold_split_small_and_fractions():
    smiles = ["c1ccccc1C", "c1ccccc1CC", "c1ccccc1N", "C1CCCCC1O", "C1CCCCC1N", "CCO", "CCN", "c1ccncc1", "C1CC1", "O"]
    split = scaffold_split(smiles)
    # groups by (len, first index) descending: acyclic "" [5, 6, 9], benzene [0, 1, 2],
    # cyclohexane [3, 4], cyclopropane [8], pyridine [7]; cutoffs 8 and 9
    assert (split.train, split.valid, split.test) == ([5, 6, 9, 0, 1, 2, 3, 4], [8], [7])
    assert sorted(split.train + split.valid + split.test) == list(range(10))
    assert make_split("scaffold", smiles, seed=5).checksum() == split.checksum()
    with pytest.raises(ValueError):
        scaffold_split(smiles, frac_train=0.95, frac_valid=0.2)


def test_scaffold_split_rejects_invalid():
    with pytest.raises(ValueError, match="index 1"):
        scaffold_split(["CCO", "C1CC"])


def test_random_split_sizes_and_seed():
    s = random_split(10, seed=0)
    assert s.sizes() == (8, 1, 1) and s.kind == "random" and s.seed == 0
    assert s.train + s.valid + s.test == [int(i) for i in np.random.default_rng(0).permutation(10)]
    assert random_split(10, seed=0).checksum() == s.checksum() != random_split(10, seed=1).checksum()
    assert random_split(1128, seed=2).sizes() == (902, 113, 113)
    assert random_split(10, 0, frac_train=0.7, frac_valid=0.2).sizes() == (7, 2, 1)
    assert make_split("random", ["C"] * 10, seed=3).checksum() == random_split(10, 3).checksum()
    with pytest.raises(ValueError, match="unknown split kind"):
        make_split("stratified", ["C"])


def test_save_load_roundtrip(tmp_path):
    s = random_split(50, seed=4)
    path = tmp_path / "sub" / "split.json"
    s.save(path)
    loaded = Split.load(path)
    assert loaded == s and loaded.checksum() == s.checksum()
    assert json.loads(path.read_text())["sizes"] == [40, 5, 5]


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"kind": "random", "seed": 0, "train": [0, 1], "valid": [1], "test": []}, "index 1 appears in both"),
        ({"kind": "random", "seed": 0, "train": [0, 0], "valid": [], "test": []}, "twice"),
        ({"kind": "random", "seed": 0, "train": [0, 1.5], "valid": [], "test": []}, r"train\[1\] = 1.5"),
        ({"kind": "random", "seed": 0, "train": ["3"], "valid": [], "test": []}, "not a non-negative integer"),
        ({"kind": "random", "seed": 0, "train": [-1], "valid": [], "test": []}, "not a non-negative integer"),
        ({"kind": "random", "seed": 0, "train": [0], "valid": []}, "missing field"),
        ({"kind": "odd", "seed": 0, "train": [0], "valid": [], "test": []}, "unknown split kind"),
        ({"kind": "random", "seed": 0, "train": [0], "valid": [], "test": [], "checksum": "abc"}, "checksum"),
    ],
)
def test_load_rejects_bad_files(tmp_path, payload, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(SplitFileError, match=message):
        Split.load(path)


def test_load_errors_for_missing_and_garbage(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        Split.load(tmp_path / "nope.json")
    (tmp_path / "g.json").write_text("{not json")
    with pytest.raises(SplitFileError, match="not valid JSON"):
        Split.load(tmp_path / "g.json")
