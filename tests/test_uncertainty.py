"""Split-conformal calibration (bartsmiles.model.uncertainty): the math on synthetic numbers, the
file beside a checkpoint, and ``bartsmiles predict --interval`` on tiny saved estimators."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bartsmiles.errors import CalibrationError
from bartsmiles.model.uncertainty import (
    CALIBRATION_FILE,
    Calibration,
    forget_calibration,
    load_calibration,
    save_calibration,
    set_labels,
)

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import make_fixtures  # noqa: E402

# ------------------------------------------------------------------------------- the math


@pytest.mark.parametrize("n, alpha", [(19, 0.1), (19, 0.2), (49, 0.1), (9, 0.1)])
def test_exact_finite_sample_coverage_on_exchangeable_draws(n, alpha):
    """With n exchangeable calibration scores the coverage is exactly ceil((n+1)(1-alpha))/(n+1):
    an off-by-one in the quantile index moves it by 1/(n+1) >= 0.02, which this test sees."""
    rng = np.random.default_rng(0)
    trials = 4000
    exact = math.ceil((n + 1) * (1 - alpha) - 1e-9) / (n + 1)
    hits = 0
    for _ in range(trials):
        y = rng.standard_t(3, size=n + 1)                 # heavy tails: nothing Gaussian assumed
        cal = Calibration.from_predictions(np.zeros(n), y[:n], "regression")
        lower, upper = cal.interval(np.zeros(1), alpha)
        hits += int(lower[0] <= y[n] <= upper[0])
    assert abs(hits / trials - exact) < 3 * math.sqrt(exact * (1 - exact) / trials) + 1e-3, (hits / trials, exact)


def test_regression_intervals_cover_2000_new_draws_within_0_03():
    rng = np.random.default_rng(1)
    x_cal, x_new = rng.uniform(0, 4, 2000), rng.uniform(0, 4, 2000)
    truth = lambda x: 2.0 * x - 1.0                        # noqa: E731
    y_cal = truth(x_cal) + rng.normal(0, 0.5 + 0.3 * x_cal)  # heteroscedastic noise
    y_new = truth(x_new) + rng.normal(0, 0.5 + 0.3 * x_new)
    cal = Calibration.from_predictions(truth(x_cal), y_cal, "regression", ["y"])
    lower, upper = cal.interval(truth(x_new).reshape(-1, 1), alpha=0.1)
    assert lower.shape == upper.shape == (2000, 1)
    coverage = float(np.mean((lower[:, 0] <= y_new) & (y_new <= upper[:, 0])))
    assert abs(coverage - 0.9) < 0.03, coverage
    # every alpha from the same stored scores; wider for smaller alpha
    widths = [float(np.mean(np.subtract(*cal.interval(truth(x_new), a)[::-1]))) for a in (0.3, 0.1, 0.02)]
    assert widths[0] < widths[1] < widths[2]


def test_prediction_sets_cover_2000_new_draws_within_0_03():
    rng = np.random.default_rng(2)
    p_cal, p_new = rng.uniform(size=(2000, 2)), rng.uniform(size=(2000, 2))
    y_cal, y_new = (rng.uniform(size=p_cal.shape) < p_cal).astype(float), (rng.uniform(size=p_new.shape) < p_new).astype(float)
    y_cal[:40, 1] = np.nan                                 # a missing label is left out of its task only
    cal = Calibration.from_predictions(p_cal, y_cal, "classification", ["a", "b"])
    assert cal.n == [2000, 1960]
    sets = cal.prediction_set(p_new, alpha=0.1)
    assert sets.shape == (2000, 2, 2) and sets.dtype == bool
    for j in range(2):
        covered = sets[np.arange(2000), j, y_new[:, j].astype(int)]
        assert abs(covered.mean() - 0.9) < 0.03, (j, covered.mean())
    assert 1.0 < sets.sum(axis=-1).mean() < 2.0           # informative: not always both labels


def test_threshold_is_the_finite_sample_quantile():
    cal = Calibration.from_predictions(np.zeros(10), np.arange(1.0, 11.0), "regression")
    assert cal.quantile(0.1)[0] == 10.0                    # ceil(11 * 0.9) = 10th smallest
    assert cal.quantile(0.2)[0] == 9.0                     # ceil(11 * 0.8) = 9th
    assert cal.quantile(0.5)[0] == 6.0                     # ceil(11 * 0.5) = 6th
    lower, upper = cal.interval(np.array([1.0, np.nan]), 0.5)
    assert lower[0] == -5.0 and upper[0] == 7.0 and np.isnan(lower[1]) and np.isnan(upper[1])


def test_prediction_set_rule_and_labels():
    # scores: 1 - p(true): 0.1, 0.2, ..., 0.9 -> at alpha=0.5 (n=9) the 5th smallest, 0.5
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    cal = Calibration.from_predictions(p, np.ones(9), "classification")
    assert cal.quantile(0.5)[0] == pytest.approx(0.5)
    sets = cal.prediction_set(np.array([0.95, 0.5, 0.05, np.nan]), alpha=0.5)
    assert sets.tolist() == [[False, True], [True, True], [True, False], [False, False]]
    assert set_labels(sets) == ["{1}", "{0,1}", "{0}", "{}"]


def test_too_few_points_and_bad_alpha_are_clear_errors():
    cal = Calibration.from_predictions(np.zeros(5), np.ones(5), "regression", ["logS"])
    with pytest.raises(CalibrationError, match=r"'logS': 5 calibration point\(s\) are too few for alpha=0.1 .*at least 9"):
        cal.interval(np.zeros(3), 0.1)
    cal.interval(np.zeros(3), 1 / 6)                       # 5 points are enough from alpha = 1/6
    for alpha in (0, 1, -0.1, 1.5, "x"):
        with pytest.raises(CalibrationError, match="alpha"):
            cal.quantile(alpha)
    with pytest.raises(CalibrationError, match="regression"):
        cal.prediction_set(np.zeros(3))
    with pytest.raises(CalibrationError, match="shape"):
        cal.interval(np.zeros((3, 2)))
    with pytest.raises(CalibrationError, match="0 or 1"):
        Calibration.from_predictions(np.zeros(3), np.array([0, 1, 2]), "classification")


# ------------------------------------------------------------------------------- the file


def test_save_load_round_trip_keyed_by_checkpoint(tmp_path):
    best, avg = tmp_path / "checkpoint_best.pt", tmp_path / "checkpoint_avg.pt"
    best.write_bytes(b"x")
    assert load_calibration(best) is None                  # no file: no calibration
    rng = np.random.default_rng(3)
    cal = Calibration.from_predictions(rng.normal(size=(30, 2)), rng.normal(size=(30, 2)), "regression", ["a", "b"],
                                       source="valid split")
    path = save_calibration(cal, best)
    assert path == tmp_path / CALIBRATION_FILE
    again = load_calibration(best)
    assert again.task_names == ["a", "b"] and again.source == "valid split" and again.n == [30, 30]
    np.testing.assert_array_equal(again.quantile(0.1), cal.quantile(0.1))
    np.testing.assert_array_equal(load_calibration(tmp_path).quantile(0.2), cal.quantile(0.2))  # a folder resolves
    avg.write_bytes(b"y")
    assert load_calibration(avg) is None                   # the averaged checkpoint is another model
    forget_calibration(best)
    assert not path.exists() and load_calibration(best) is None
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match=r"conformal.json: not a readable calibration file"):
        load_calibration(best)


# ------------------------------------------------------------------------------- finetune + bartsmiles predict

MOLS = make_fixtures.PROPERTY_MOLS


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny random-init fine-tunes (1 epoch): a 2-task classifier and a regressor, 10 validation molecules."""
    from bartsmiles.training.finetuning import FinetuneConfig, finetune

    root = tmp_path_factory.mktemp("conformal")
    # 14 train, 10 validation molecules; one validation label missing
    common = dict(**make_fixtures.property_inputs(root, n_train=14, missing=((15, "has_o"),)), epochs=1,
                  batch_size=8, lr=1e-3, keep_last_epochs=0, cpu=True, log_interval=100, score_test=False,
                  progress=False)
    finetune(FinetuneConfig(save_dir=str(root / "clf"), target_columns=("has_n", "has_o"),
                            task_type="classification", **common))
    finetune(FinetuneConfig(save_dir=str(root / "reg"), target_columns=("length",), task_type="regression", **common))
    pd.DataFrame({"id": ["a", "b", "c", "d"], "smiles": ["CCN", "not a smiles", "c1ccccc1", "CCO"]}).to_csv(
        root / "in.csv", index=False)
    return root


def test_finetune_stores_the_validation_calibration(runs):
    from bartsmiles.model.predictor import predict

    reg = load_calibration(runs / "reg")
    assert reg.task_type == "regression" and reg.task_names == ["length"] and reg.n == [10]
    labels = pd.read_csv(runs / "d.csv")["length"].to_numpy()[14:]
    preds = predict(runs / "reg" / "checkpoint_best.pt", MOLS[14:])[:, 0]
    np.testing.assert_allclose(reg.scores[0], np.sort(np.abs(labels - preds)), rtol=1e-5)  # original units
    clf = load_calibration(runs / "clf" / "checkpoint_best.pt")
    assert clf.task_type == "classification" and clf.n == [10, 9]


def test_predict_interval_adds_bounds_and_sets(runs, tmp_path):
    from bartsmiles.cli.main import main
    from bartsmiles.model.prediction import ERROR_COLUMN

    out = tmp_path / "reg.csv"
    assert main(["predict", "--model", str(runs / "reg"), "--input", str(runs / "in.csv"), "--output", str(out),
                 "--interval", "0.9", "--no-progress"]) == 0
    frame = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(frame.columns) == ["id", "smiles", "length", "length_lower", "length_upper", ERROR_COLUMN]
    q = load_calibration(runs / "reg").quantile(0.1)[0]
    ok = frame[ERROR_COLUMN].isna()
    assert ok.tolist() == [True, False, True, True]
    np.testing.assert_allclose(frame.loc[ok, "length_upper"] - frame.loc[ok, "length"], q, rtol=1e-5)
    np.testing.assert_allclose(frame.loc[ok, "length"] - frame.loc[ok, "length_lower"], q, rtol=1e-5)
    assert frame.loc[~ok, ["length", "length_lower", "length_upper"]].isna().all(axis=None)

    out = tmp_path / "clf.csv"
    assert main(["predict", "--model", str(runs / "clf"), "--input", str(runs / "in.csv"), "--output", str(out),
                 "--interval", "0.9", "--no-progress"]) == 0
    frame = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(frame.columns) == ["id", "smiles", "has_n", "has_o", "has_n_set", "has_o_set", ERROR_COLUMN]
    cal = load_calibration(runs / "clf")
    expected = cal.prediction_set(frame[["has_n", "has_o"]].to_numpy(), alpha=0.1)
    for j, task in enumerate(("has_n", "has_o")):
        assert frame[f"{task}_set"].fillna("").tolist()[0] == set_labels(expected[:, j])[0]
        assert pd.isna(frame.loc[1, f"{task}_set"])         # the invalid row has no set
        assert set(frame[f"{task}_set"].dropna()) <= {"{0}", "{1}", "{0,1}", "{}"}


def test_predict_interval_without_calibration_or_with_too_few_points_exits_2(runs, tmp_path, capsys):
    from bartsmiles.cli.main import main

    args = ["predict", "--input", str(runs / "in.csv"), "--output", str(tmp_path / "o.csv"), "--no-progress"]
    assert main([*args, "--model", str(runs / "reg"), "--interval", "0.95"]) == 2   # 10 points: alpha >= 1/11
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too few for alpha=0.05" in err[0], err
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.pt").write_bytes((runs / "reg" / "checkpoint_best.pt").read_bytes())
    assert main([*args, "--model", str(bare), "--interval", "0.9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no conformal calibration" in err[0] and "model.pt" in err[0], err
    assert not (tmp_path / "o.csv").exists()
    assert main([*args, "--model", str(bare)]) == 0          # without --interval it predicts as before
