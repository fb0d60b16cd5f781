"""Descriptor targets: the core rows (spelling-independent, NaN for bad input) and the plugin's cache."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bartsmiles.core.chem import randomize_smiles
from bartsmiles.core.descriptors import DESCRIPTOR_NAMES, descriptor_row, descriptor_table
from bartsmiles.tasks.descriptors import (
    CLIP,
    DescriptorTargets,
    build_descriptor_cache,
    cache_folder,
    has_descriptor_cache,
)
from bartsmiles.training.pretraining import preprocess, build_vocabulary

MOLECULES = ["CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O", "O=[N+]([O-])c1ccccc1", "c1ccc2c(c1)CCN2C(=O)CCl"]


def test_names_are_unique_and_match_the_row():
    assert len(set(DESCRIPTOR_NAMES)) == len(DESCRIPTOR_NAMES) == descriptor_row("CCO").shape[0]


@pytest.mark.parametrize("smiles", MOLECULES)
def test_a_molecule_has_one_row_whatever_its_spelling(smiles):
    rng = np.random.default_rng(0)
    canonical = descriptor_row(smiles)
    assert np.isfinite(canonical).all()
    for _ in range(3):
        np.testing.assert_allclose(descriptor_row(randomize_smiles(smiles, rng)), canonical, rtol=1e-5, atol=1e-4)


def test_known_values():
    row = dict(zip(DESCRIPTOR_NAMES, descriptor_row("c1ccccc1O")))
    assert row["NumAromaticRings"] == 1 and row["NumHBD"] == 1 and row["HeavyAtomCount"] == 7
    assert row["TPSA"] == pytest.approx(20.23, abs=0.01)
    assert row["MolLogP"] == pytest.approx(1.39, abs=0.01)


@pytest.mark.parametrize("bad", ["C1CC", "", "   ", "not a smiles"])
def test_unparsable_gives_nan_row(bad):
    assert np.isnan(descriptor_row(bad)).all()


def test_wrong_type_fails_loudly():
    with pytest.raises(TypeError, match="int"):
        descriptor_row(42)


def test_table_is_in_input_order_in_parallel():
    smiles = MOLECULES * 5 + ["C1CC"]
    serial = descriptor_table(smiles, n_jobs=1)
    parallel = descriptor_table(smiles, n_jobs=2, chunk_size=3)
    np.testing.assert_array_equal(np.isnan(serial), np.isnan(parallel))
    np.testing.assert_allclose(np.nan_to_num(serial), np.nan_to_num(parallel))
    assert np.isnan(serial[-1]).all() and np.isfinite(serial[:-1]).all()


@pytest.fixture(scope="module")
def data_with_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("desc")
    train = MOLECULES * 6 + ["C1CC"]  # one unparsable row: no descriptor loss, and reported
    valid = MOLECULES
    (root / "train.smi").write_text("\n".join(train) + "\n")
    (root / "valid.smi").write_text("\n".join(valid) + "\n")
    vocab, _ = build_vocabulary([root / "train.smi", root / "valid.smi"], n_jobs=1)
    preprocess([root / "train.smi"], [root / "valid.smi"], vocab, root / "bin", n_jobs=1)
    assert not has_descriptor_cache(root / "bin")
    report = build_descriptor_cache(root / "bin", n_jobs=1, progress=False)
    return root / "bin", train, report


def test_cache_rows_follow_the_binarized_rows(data_with_cache):
    data, train, report = data_with_cache
    assert has_descriptor_cache(data)
    stats = json.loads((cache_folder(data) / "stats.json").read_text())
    assert stats["names"] == list(DESCRIPTOR_NAMES)
    assert stats["splits"]["train"]["rows"] == len(train)
    assert stats["splits"]["train"]["unparsable"] == 1
    assert stats["splits"]["train"]["unparsable_examples"] == [{"row": len(train) - 1, "smiles": "C1CC"}]
    raw = np.load(cache_folder(data) / "train.npy")
    for i, smiles in enumerate(train[:-1]):
        np.testing.assert_allclose(raw[i], descriptor_row(smiles))


def test_targets_are_standardized_masked_and_clipped(data_with_cache):
    data, train, _ = data_with_cache
    targets = DescriptorTargets(data, "train")
    z = targets[np.arange(len(train))]
    assert z.shape == (len(train), len(DESCRIPTOR_NAMES))
    assert np.isnan(z[-1]).all()  # the unparsable row
    usable = targets.usable
    assert not usable.all()  # some counts are constant on this corpus: never trained
    assert np.isnan(z[:, ~usable]).all()
    good = z[:-1][:, usable]
    assert np.isfinite(good).all() and np.abs(good).max() <= CLIP
    np.testing.assert_allclose(good.mean(axis=0), 0.0, atol=0.2)  # train mean over the parsable rows


def test_missing_cache_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="preprocess-descriptors"):
        DescriptorTargets(tmp_path, "train")


def test_a_rebinarized_corpus_needs_a_new_cache(data_with_cache, tmp_path):
    data, _, _ = data_with_cache
    copy = tmp_path / "bin"
    copy.mkdir()
    for f in data.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    (copy / "descriptors").mkdir()
    for f in (data / "descriptors").iterdir():
        (copy / "descriptors" / f.name).write_bytes(f.read_bytes())
    assert has_descriptor_cache(copy)
    with open(copy / "train.bin", "ab") as fh:
        fh.write(b"\0\0")
    assert not has_descriptor_cache(copy)
