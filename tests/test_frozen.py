"""Frozen-feature heads (bartsmiles.evaluation.frozen) and their benchmark rows."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bartsmiles.evaluation.frozen import C_GRID, FrozenHead

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import make_fixtures  # noqa: E402
from test_benchmark import _cfg, tiny_data  # noqa: E402,F401  (fixture reused)


def _separable(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(float)
    return X, y


def test_classifier_learns_a_separable_task_and_masks_missing_labels():
    X, y = _separable()
    Y = np.stack([y, 1 - y], axis=1)
    Y[::7, 1] = np.nan  # missing labels are left out, never filled
    head = FrozenHead("classification").fit(X[:80], Y[:80], X[80:100], Y[80:100])
    p = head.predict(X[100:])
    assert p.shape == (20, 2) and np.all((p >= 0) & (p <= 1))
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y[100:], p[:, 0]) > 0.9
    assert roc_auc_score(1 - y[100:], p[:, 1]) > 0.9
    assert all(c in C_GRID for c in head.chosen_c_)


def test_shuffled_labels_do_not_score():
    """The test can fail: labels unrelated to the features give a chance-level AUC."""
    X, y = _separable(n=400)
    rng = np.random.default_rng(1)
    y_shuffled = rng.permutation(y)[:, None]
    head = FrozenHead("classification").fit(X[:300], y_shuffled[:300], X[300:350], y_shuffled[300:350])
    from sklearn.metrics import roc_auc_score

    assert abs(roc_auc_score(y_shuffled[350:, 0], head.predict(X[350:])[:, 0]) - 0.5) < 0.2


def test_regression_returns_original_units_and_single_class_is_constant():
    X, _ = _separable()
    t = 100.0 + 5.0 * X[:, 1]
    head = FrozenHead("regression").fit(X[:80], t[:80, None], X[80:100], t[80:100, None])
    pred = head.predict(X[100:])[:, 0]
    assert np.sqrt(np.mean((pred - t[100:]) ** 2)) < 0.5
    one = FrozenHead("classification").fit(X[:80], np.ones((80, 1)), X[80:100], np.ones((20, 1)))
    assert np.all(one.predict(X[:5]) == 1.0) and one.chosen_c_ == [None]
    with pytest.raises(ValueError, match="task_type"):
        FrozenHead("ranking").fit(X, t[:, None], X, t[:, None])


def test_benchmark_frozen_rows_with_a_tiny_model(tiny_data, tmp_path):  # noqa: F811
    from bartsmiles.evaluation.benchmark import run_benchmark

    model = make_fixtures.build_untrained_model(tmp_path / "tiny")
    cfg = _cfg(tiny_data, tmp_path, models=("bartsmiles_frozen", "bartsmiles_frozen_random_init"),
               datasets=("bbbp", "esol"), seeds=(0,), finetune={"pretrained": str(model)})
    runs = run_benchmark(cfg, command=["frozen"])["runs"]
    assert [r["status"] for r in runs] == ["ok"] * 4, [r.get("error") for r in runs]
    by = {(r["model"], r["dataset"]): r for r in runs}
    assert by[("bartsmiles_frozen", "bbbp")]["metric"] == "roc_auc"
    assert by[("bartsmiles_frozen", "esol")]["metric"] == "rmse"
    assert by[("bartsmiles_frozen_random_init", "bbbp")]["settings"]["random_init"] is True
    assert by[("bartsmiles_frozen", "bbbp")]["settings"]["feature_dim"] > 0
    assert all(np.isfinite(r["value"]) for r in runs)


def test_clintox_smiles_style_script_smoke(tmp_path):
    """benchmarks/clintox_smiles_style.py runs end to end on a stand-in ClinTox file."""
    import importlib.util
    import json

    import pandas as pd
    from test_benchmark import MOLS

    kekule = ["C1=CC=CC=C1", "CC1=CC=CC=C1", "OC1=CC=CC=C1", "NC1=CC=CC=C1", "C1=CC=NC=C1", "ClC1=CC=CC=C1"]
    smiles = MOLS + kekule * 2
    (tmp_path / "data" / "moleculenet").mkdir(parents=True)
    pd.DataFrame({"smiles": smiles, "FDA_APPROVED": [float(i % 3 != 0) for i in range(len(smiles))],
                  "CT_TOX": [0.0] * len(MOLS) + [1.0] * len(kekule) * 2}).to_csv(
        tmp_path / "data" / "moleculenet" / "clintox.csv.gz", index=False)
    model = make_fixtures.build_untrained_model(tmp_path / "tiny")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "clintox_smiles_style.py"
    spec = importlib.util.spec_from_file_location("clintox_smiles_style", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.no_aromatic_lowercase("C1=CC=CC=C1Cl") and not bench.no_aromatic_lowercase("c1ccccc1")
    assert bench.no_aromatic_lowercase("[nH]1C=CC=C1")  # bracket atoms are not counted
    out = tmp_path / "res" / "style"
    assert bench.main(["--data-dir", str(tmp_path / "data"), "--model", str(model / "model.pt"), "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["rule"]["fraction_ct_tox_1"] == 1.0
    assert set(report["frozen"]) == {"shipped/as_given", "shipped/canonical", "random_init/as_given",
                                     "random_init/canonical"}
