"""ECFP4 + random-forest peer (bartsmiles.evaluation.baselines)."""
from __future__ import annotations

import numpy as np
import pytest
from rdkit.Chem import rdFingerprintGenerator
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from bartsmiles.core.chem import parse_smiles
from bartsmiles.core.splits import Split
from bartsmiles.data.datasets import MolDataset
from bartsmiles.errors import InvalidSmilesError
from bartsmiles.evaluation.baselines import ForestPeer, ecfp4, run_ecfp4_rf

SMILES = ["CCO", "CCN", "c1ccccc1", "c1ccncc1", "CC(=O)O", "CC(=O)N", "OCCO", "NCCN", "c1ccc(O)cc1",
          "c1ccc(N)cc1", "CCCCO", "CCCCN", "COC", "CNC", "CC#N", "CCCl", "OC(=O)c1ccccc1", "NC(=O)c1ccccc1",
          "Cc1ccccc1", "Cc1ccncc1"]
HAS_N = np.array([float("N" in s or "n" in s) for s in SMILES])
TREES = 15


def test_ecfp4_is_morgan_radius2_2048_bits():
    X = ecfp4(SMILES)
    assert X.shape == (len(SMILES), 2048) and X.dtype == np.uint8
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    for i in (0, 2, 16):
        fp = generator.GetFingerprint(parse_smiles(SMILES[i]))
        assert set(np.flatnonzero(X[i])) == set(fp.GetOnBits())
        assert fp.GetNumOnBits() == X[i].sum()
    # the legacy call gives the same bits
    from rdkit import RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    try:
        legacy = AllChem.GetMorganFingerprintAsBitVect(parse_smiles(SMILES[16]), 2, nBits=2048)
    finally:
        RDLogger.EnableLog("rdApp.*")
    assert set(legacy.GetOnBits()) == set(np.flatnonzero(X[16]))


def test_ecfp4_rejects_bad_input():
    with pytest.raises(InvalidSmilesError):
        ecfp4(["CCO", "C1CC"])
    with pytest.raises(TypeError, match="sequence"):
        ecfp4("CCO")


def test_classification_equals_one_sklearn_forest_per_task_on_labelled_rows():
    X = ecfp4(SMILES)
    Y = np.stack([HAS_N, 1.0 - HAS_N], axis=1)
    Y[[1, 4, 7], 1] = np.nan
    peer = ForestPeer("classification", seed=3, n_estimators=TREES).fit(X[:14], Y[:14])
    pred = peer.predict(X[14:])
    assert pred.shape == (6, 2)
    for j in range(2):
        mask = ~np.isnan(Y[:14, j])
        ref = RandomForestClassifier(n_estimators=TREES, random_state=3).fit(X[:14][mask], Y[:14][mask, j])
        np.testing.assert_allclose(pred[:, j], ref.predict_proba(X[14:])[:, 1])
        # the forest saw exactly the labelled rows (bootstrap weights sum to their count)
        tree = peer.forests[j].estimators_[0].tree_
        assert tree.weighted_n_node_samples[0] == mask.sum()


def test_n_jobs_does_not_change_the_forest():
    X = ecfp4(SMILES)
    one = ForestPeer("classification", seed=0, n_estimators=TREES, n_jobs=1).fit(X[:14], HAS_N[:14]).predict(X)
    two = ForestPeer("classification", seed=0, n_estimators=TREES, n_jobs=2).fit(X[:14], HAS_N[:14]).predict(X)
    np.testing.assert_array_equal(one, two)
    other = ForestPeer("classification", seed=1, n_estimators=TREES).fit(X[:14], HAS_N[:14]).predict(X)
    assert not np.array_equal(one, other)


def test_single_class_task_predicts_that_class_constantly():
    X = ecfp4(SMILES)
    Y = np.stack([HAS_N, np.ones(len(SMILES)), np.zeros(len(SMILES)), np.full(len(SMILES), np.nan)], axis=1)
    peer = ForestPeer("classification", n_estimators=TREES).fit(X, Y)
    pred = peer.predict(X[:5])
    assert (pred[:, 1] == 1.0).all() and (pred[:, 2] == 0.0).all() and (pred[:, 3] == 0.5).all()
    assert peer.constants[0] is None and "single-class" in peer.constants[1][1]


def test_regression_in_original_units():
    X = ecfp4(SMILES)
    y = np.array([float(len(s)) * 10.0 for s in SMILES])
    y[3] = np.nan
    peer = ForestPeer("regression", seed=2, n_estimators=TREES).fit(X[:14], y[:14])
    mask = ~np.isnan(y[:14])
    ref = RandomForestRegressor(n_estimators=TREES, random_state=2).fit(X[:14][mask], y[:14][mask])
    np.testing.assert_allclose(peer.predict(X[14:])[:, 0], ref.predict(X[14:]))
    with pytest.raises(ValueError, match="no labelled training row"):
        ForestPeer("regression").fit(X, np.full(len(SMILES), np.nan))
    with pytest.raises(ValueError, match="task_type"):
        ForestPeer("ranking")
    with pytest.raises(RuntimeError, match="before fit"):
        ForestPeer("regression").predict(X)


def _dataset(labels, task_type):
    labels = np.asarray(labels, dtype=float).reshape(len(SMILES), -1)
    return MolDataset(name="toy", smiles=list(SMILES), labels=labels,
                      task_names=[f"t{j}" for j in range(labels.shape[1])], task_type=task_type,
                      rows=np.arange(len(SMILES)))


def test_run_scores_the_test_part_only():
    split = Split(train=list(range(12)), valid=[12, 13], test=list(range(14, 20)), kind="random", seed=0)
    Y = np.stack([HAS_N, 1.0 - HAS_N, np.ones(len(SMILES))], axis=1)
    Y[15, 0] = np.nan
    out = run_ecfp4_rf(_dataset(Y, "classification"), split, seed=0, metric="roc_auc", n_estimators=TREES)
    assert out["metric"] == "roc_auc" and out["sizes"] == {"train": 12, "valid": 2, "test": 6}
    assert out["per_task"][2] is None  # single-class test labels: skipped
    assert out["value"] == pytest.approx(np.mean(out["per_task"][:2]))
    assert out["constant_tasks"] == {"t2": "single-class training labels (1)"}
    reg = run_ecfp4_rf(_dataset([len(s) for s in SMILES], "regression"), split, seed=0, n_estimators=TREES)
    assert reg["metric"] == "rmse" and reg["per_task"] is None and reg["value"] > 0
