"""The neuron probe (bartsmiles.evaluation.probe) and `bartsmiles probe`, with synthetic features and a tiny model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from bartsmiles.core.splits import Split
from bartsmiles.evaluation.probe import ProbeConfig, choose, probe_features, run_probe

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import make_fixtures  # noqa: E402

CS = [2.0 ** e for e in range(-8, 1)]


def _synthetic(n=300, d=40, seed=0):
    """Task 0 depends on feature 3 only, task 1 on features 5 and 7; some labels missing."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 5.0, size=d)
    y0 = (X[:, 3] / X[:, 3].std() + 0.3 * rng.normal(size=n) > 0).astype(float)
    y1 = (X[:, 5] / X[:, 5].std() - X[:, 7] / X[:, 7].std() + 0.3 * rng.normal(size=n) > 0).astype(float)
    Y = np.stack([y0, y1], axis=1)
    Y[rng.random(n) < 0.1, 1] = np.nan
    split = Split(train=list(range(200)), valid=list(range(200, 250)), test=list(range(250, n)), kind="random",
                  seed=0)
    return X, Y, split


def test_sweep_counts_nonzero_coefficients_and_scores_both_parts():
    X, Y, split = _synthetic()
    out = probe_features(X, Y, split, ["a", "b"], CS)
    a = out["tasks"]["a"]["points"]
    assert [p["C"] for p in a] == CS
    # the neuron count is that of an independent fit on standardized train features
    train = np.array(split.train)
    Z = (X - X[train].mean(0)) / X[train].std(0)
    ref = LogisticRegression(penalty="l1", solver="liblinear", C=CS[4], random_state=0, max_iter=1000)
    ref.fit(Z[train], Y[train, 0])
    assert a[4]["neuron_ids"] == np.flatnonzero(ref.coef_[0]).tolist()
    assert a[0]["neurons"] <= a[-1]["neurons"] and a[-1]["neurons"] > 3
    informative = next(p for p in a if p["neurons"] >= 1)
    assert 3 in informative["neuron_ids"] and informative["valid_roc_auc"] > 0.85
    assert all(p["test_roc_auc"] is None or 0 <= p["test_roc_auc"] <= 1 for p in a)
    mean = out["mean"]
    b = out["tasks"]["b"]["points"]
    for k in range(len(CS)):
        assert mean[k]["neurons"] == len(set(a[k]["neuron_ids"]) | set(b[k]["neuron_ids"]))
        assert mean[k]["neurons_sum"] == a[k]["neurons"] + b[k]["neurons"]
        if a[k]["valid_roc_auc"] is not None and b[k]["valid_roc_auc"] is not None:
            assert mean[k]["valid_roc_auc"] == pytest.approx((a[k]["valid_roc_auc"] + b[k]["valid_roc_auc"]) / 2)


def test_single_class_task_is_skipped():
    X, Y, split = _synthetic()
    Y[:, 1] = 1.0
    out = probe_features(X, Y, split, ["a", "b"], CS[:3])
    assert out["tasks"]["b"] == {"points": [], "skipped": "single-class (or no) training labels"}
    assert len(out["mean"]) == 3


def test_choose_fewest_neurons_reaching_the_target():
    points = [{"C": 1, "neurons": 0, "valid_roc_auc": 0.5}, {"C": 2, "neurons": 2, "valid_roc_auc": 0.80},
              {"C": 3, "neurons": 2, "valid_roc_auc": 0.85}, {"C": 4, "neurons": 7, "valid_roc_auc": 0.90},
              {"C": 5, "neurons": 30, "valid_roc_auc": 0.91}]
    pick = choose(points, None, 0.02)
    assert pick["C"] == 4 and pick["target_valid_roc_auc"] == pytest.approx(0.89) and pick["reached"]
    assert choose(points, 0.8, 0.02)["C"] == 3  # tie on neurons: the higher validation score
    assert choose(points, 0.99, 0.02) == {"target_valid_roc_auc": 0.99, "reached": False}
    assert choose([{"neurons": 0, "valid_roc_auc": 0.5}], None, 0.02) is None


@pytest.fixture(scope="module")
def tiny_clintox(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    smiles = make_fixtures.corpus(80)
    rng = np.random.default_rng(1)
    fda = (rng.random(len(smiles)) < 0.7).astype(float)
    tox = np.array([float("N" in s or "n" in s) for s in smiles])
    (root / "data" / "moleculenet").mkdir(parents=True)
    pd.DataFrame({"smiles": smiles, "FDA_APPROVED": fda, "CT_TOX": tox}).to_csv(
        root / "data" / "moleculenet" / "clintox.csv.gz", index=False)
    model = make_fixtures.build_untrained_model(root / "tiny")
    return root, model


def test_run_probe_writes_json_and_png(tiny_clintox):
    root, model = tiny_clintox
    cfg = ProbeConfig(model=str(model), dataset="clintox", data_dir=str(root / "data"), split="random",
                      c_exponents=(-6.0, -3.0, 0.0), out=str(root / "out" / "probe"))
    report = run_probe(cfg)
    saved = json.loads((root / "out" / "probe.json").read_text())
    assert saved["chosen"] == json.loads(json.dumps(report["chosen"]))
    assert saved["feature_dim"] == 64 and saved["n_molecules"] == 80
    assert set(saved["tasks"]) == {"FDA_APPROVED", "CT_TOX"} and len(saved["mean"]) == 3
    assert set(saved["chosen"]) == {"FDA_APPROVED", "CT_TOX", "mean"}
    assert saved["settings"]["standardize"] is True and saved["model_path"].endswith("model.pt")
    assert (root / "out" / "probe.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_probe_and_regression_refused(tiny_clintox, capsys):
    from bartsmiles.cli.main import main

    root, model = tiny_clintox
    assert main(["probe", "--model", str(model), "--dataset", "clintox", "--data-dir", str(root / "data"),
                 "--c-exponents", "-2", "0", "--out", str(root / "cli" / "p"), "--no-standardize"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["out"]["json"].endswith("p.json")
    assert json.loads((root / "cli" / "p.json").read_text())["settings"]["standardize"] is False
    # the random-init control: same shape, other weights, so other features and other coefficients
    assert main(["probe", "--model", str(model), "--dataset", "clintox", "--data-dir", str(root / "data"),
                 "--c-exponents", "-2", "0", "--out", str(root / "cli" / "r"), "--no-standardize",
                 "--random-init", "--seed", "3"]) == 0
    capsys.readouterr()
    trained, control = (json.loads((root / "cli" / f"{n}.json").read_text()) for n in ("p", "r"))
    assert control["settings"]["random_init"] is True and control["model_path"] is None
    assert control["feature_dim"] == trained["feature_dim"]
    assert control["mean"] != trained["mean"]
    (root / "data" / "moleculenet" / "SAMPL.csv").write_text("smiles,expt\nCCO,1.0\nCCN,2.0\n")
    with pytest.raises(ValueError, match="classification"):
        run_probe(ProbeConfig(model=str(model), dataset="freesolv", data_dir=str(root / "data"),
                              out=str(root / "x")))
