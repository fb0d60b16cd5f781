"""scikit-learn estimators, grid search and resume-after-kill, on a tiny random-init model (CPU)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone, is_classifier, is_regressor

from bartsmiles.errors import CalibrationError
from bartsmiles.estimators import BartSmilesClassifier, BartSmilesRegressor

WITH_N = ["CCN", "CCCN", "c1ccncc1", "CC(=O)N", "CN(C)C", "NCCO", "c1ccc(N)cc1", "CC#N", "N#Cc1ccccc1",
          "CCNC(C)=O", "Cc1ccncc1", "CNC", "NC(=O)c1ccccc1", "CCCCN", "OCCN", "c1cnc[nH]1"]
NO_N = ["CCO", "CCCO", "c1ccccc1", "CC(=O)O", "COC", "OCCO", "c1ccc(O)cc1", "CC=O", "Clc1ccccc1",
        "CCOC(C)=O", "Cc1ccccc1", "CSC", "OC(=O)c1ccccc1", "CCCCO", "CCCl", "c1ccoc1"]
MOLS = [m for pair in zip(WITH_N, NO_N) for m in pair]  # 32, alternating N / no N


def has_n(s: str) -> bool:
    return "N" in s or "n" in s


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A randomly initialized bartsmiles_tiny checkpoint with its dict.txt (stands in for the shipped model)."""
    from bartsmiles.model.checkpoint import write_untrained_checkpoint
    from bartsmiles.training.pretraining import build_vocabulary

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pre")
    (root / "mols.smi").write_text("\n".join(MOLS) + "\n")
    vocab, _ = build_vocabulary([root / "mols.smi"], n_jobs=1)
    vocab.save(root / "dict.txt")
    return write_untrained_checkpoint("bartsmiles_tiny", root / "dict.txt", root / "model" / "model.pt")


def tiny(cls, pretrained, **kw):
    params = dict(pretrained=str(pretrained), epochs=3, batch_size=8, lr=1e-3, cpu=True, progress=False)
    params.update(kw)
    return cls(**params)


@pytest.fixture(scope="module")
def fitted(pretrained, tmp_path_factory):
    """A single-task classifier with string labels, fitted on data with an invalid SMILES at row 5."""
    X = MOLS[:5] + ["C1CC"] + MOLS[5:]
    y = ["N" if has_n(s) else "none" for s in MOLS]
    y = y[:5] + ["N"] + y[5:]
    clf = tiny(BartSmilesClassifier, pretrained, average_last=2, work_dir=str(tmp_path_factory.mktemp("work")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(pd.Series(X), pd.Series(y, name="nitrogen"))
    return clf, [str(w.message) for w in caught]


# ------------------------------------------------------------------------------- sklearn API


def test_params_clone_and_set_params():
    clf = BartSmilesClassifier(lr=1e-5, dropout=0.2, grid={"lr": [1e-5, 3e-5]}, average_last=4)
    params = clf.get_params()
    assert params["lr"] == 1e-5 and params["grid"] == {"lr": [1e-5, 3e-5]} and params["pretrained"] is None
    twin = clone(clf)
    assert twin.get_params() == params and twin is not clf
    assert twin.set_params(epochs=3, pos_weight="auto").epochs == 3
    assert set(BartSmilesRegressor().get_params()) == set(params) - {"pos_weight"}
    assert is_classifier(BartSmilesClassifier()) and not is_regressor(BartSmilesClassifier())
    assert is_regressor(BartSmilesRegressor()) and not is_classifier(BartSmilesRegressor())


def test_bad_labels_are_refused_before_training(pretrained):
    clf = tiny(BartSmilesClassifier, pretrained)
    with pytest.raises(ValueError, match="exactly 2 classes"):
        clf.fit(MOLS[:6], [0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="different lengths"):
        clf.fit(MOLS[:6], [0, 1, 0])
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        clf.fit(MOLS[:4], np.array([[0, 1], [1, 2], [0, 0], [1, 1]]))
    with pytest.raises(TypeError, match="single string"):
        clf.fit("CCO", [1])


def test_fit_drops_invalid_smiles_with_a_warning_naming_the_row(fitted):
    clf, messages = fitted
    assert any("invalid SMILES dropped: rows [5]" in m for m in messages), messages
    assert [r for r, _, _ in clf.invalid_rows_] == [5]
    assert clf.classes_.tolist() == ["N", "none"]
    assert clf.task_names_ == ["nitrogen"] and clf.n_tasks_ == 1
    assert Path(clf.checkpoint_).name == "checkpoint_avg.pt"   # average_last=2
    assert clf.metric_ == "roc_auc" and 0.0 <= clf.valid_score_ <= 1.0
    split = json.loads((Path(clf.run_dir_) / "split.json").read_text())
    assert len(split["valid"]) >= 2 and len(split["train"]) + len(split["valid"]) == 32


def test_predict_proba_keeps_rows_and_follows_sklearn_shape(fitted):
    clf, _ = fitted
    X = pd.Series(["CCN", "not smiles", "CCO", ""])
    with pytest.warns(UserWarning, match=r"rows \[1, 3\]"):
        proba = clf.predict_proba(X)
    assert proba.shape == (4, 2)
    assert np.isnan(proba[[1, 3]]).all()
    np.testing.assert_allclose(proba[[0, 2]].sum(axis=1), 1.0)
    with pytest.warns(UserWarning):
        labels = clf.predict(X)
    assert labels[1] is None and labels[3] is None and set(labels[[0, 2]]) <= {"N", "none"}
    assert list(clf.predict(MOLS[:3])) == [clf.classes_[int(p >= 0.5)] for p in clf.predict_proba(MOLS[:3])[:, 1]]
    y = ["N" if has_n(s) else "none" for s in MOLS]
    assert 0.0 <= clf.score(MOLS, y) <= 1.0
    frame = pd.DataFrame({"smiles": ["CCN", "C1CC", "CCO"], "other": [1, 2, 3]}, index=["a", "b", "c"])
    with pytest.warns(UserWarning):
        out = clf.predict_frame(frame, smiles_column="smiles")
    assert list(out.columns) == ["nitrogen", "error"] and out.index.tolist() == ["a", "b", "c"]
    assert np.isnan(out.loc["b", "nitrogen"]) and out.loc["b", "error"].startswith("invalid SMILES")
    np.testing.assert_allclose(out["nitrogen"].to_numpy()[[0, 2]], proba[[0, 2], 1])


def test_save_and_load_round_trip(fitted, tmp_path):
    from bartsmiles.model.checkpoint import read_metadata

    clf, _ = fitted
    clf.save(tmp_path / "model")
    assert (tmp_path / "model" / "model.pt").is_file() and (tmp_path / "model" / "dict.txt").is_file()
    assert read_metadata(tmp_path / "model")["label_names"] == ["nitrogen"]
    again = BartSmilesClassifier.load(tmp_path / "model")
    assert again.get_params() == clf.get_params()
    assert again.classes_.tolist() == clf.classes_.tolist()
    np.testing.assert_allclose(again.predict_proba(MOLS), clf.predict_proba(MOLS), rtol=1e-6)
    assert list(again.predict(MOLS)) == list(clf.predict(MOLS))
    with pytest.raises(ValueError, match="not a BartSmilesRegressor"):
        BartSmilesRegressor.load(tmp_path / "model")


def test_randomized_smiles_augmentation_reaches_the_training_run(pretrained, tmp_path):
    from bartsmiles.model.checkpoint import load_fairseq_state

    y = [int(has_n(s)) for s in MOLS]
    with pytest.raises(Exception, match="randomize_smiles"):
        tiny(BartSmilesClassifier, pretrained, randomize_smiles=1.5, work_dir=str(tmp_path / "bad")).fit(MOLS, y)
    clf = tiny(BartSmilesClassifier, pretrained, randomize_smiles=0.5, work_dir=str(tmp_path / "work"))
    assert clone(clf).get_params()["randomize_smiles"] == 0.5
    assert "randomize_smiles" in BartSmilesRegressor().get_params()
    clf.fit(MOLS, y)
    task = load_fairseq_state(clf.checkpoint_)["cfg"]["task"]
    assert float(task["randomize_smiles"]) == 0.5
    assert clf.predict_proba(MOLS).shape == (len(MOLS), 2)


def test_multitask_classifier_with_missing_labels_and_explicit_validation(pretrained, tmp_path):
    Y = pd.DataFrame({"n": [float(has_n(s)) for s in MOLS], "o": [float("O" in s or "o" in s) for s in MOLS]})
    Y.loc[[2, 7, 11], "o"] = np.nan
    clf = tiny(BartSmilesClassifier, pretrained, epochs=2, pos_weight="auto", work_dir=str(tmp_path))
    clf.fit(MOLS[:24], Y.iloc[:24], valid=(MOLS[24:], Y.iloc[24:]))
    split = json.loads((Path(clf.run_dir_) / "split.json").read_text())
    assert split["train"] == list(range(24)) and split["valid"] == list(range(24, 32))
    proba = clf.predict_proba(MOLS)
    assert proba.shape == (32, 2) and np.isfinite(proba).all() and clf.task_names_ == ["n", "o"]
    pred = clf.predict(MOLS)
    assert pred.shape == (32, 2) and set(np.unique(pred)) <= {0.0, 1.0}


def test_regressor_with_a_grid_predicts_in_original_units(pretrained):
    y = np.array([100.0 + 10 * len(s) for s in MOLS])
    reg = tiny(BartSmilesRegressor, pretrained, epochs=2, grid={"lr": [1e-3, 1e-4]})
    reg.fit(np.array(MOLS), y)
    assert [(r["lr"], r["dropout"]) for r in reg.grid_results_] == [(1e-3, 0.1), (1e-4, 0.1)]
    best = min(reg.grid_results_, key=lambda r: r["valid"])
    assert best["best"] and reg.best_params_ == {"lr": best["lr"], "dropout": 0.1}
    assert reg.metric_ == "rmse" and reg.valid_score_ == best["valid"]
    pred = reg.predict(pd.Series(MOLS))
    assert pred.shape == (32,) and np.isfinite(pred).all()
    assert abs(pred.mean() - y.mean()) < 3 * y.std()   # original units, not standardized
    assert np.isfinite(reg.score(MOLS, y))
    with pytest.raises(ValueError, match="grid keys"):
        tiny(BartSmilesRegressor, pretrained, grid={"momentum": [0.9]}).fit(MOLS, y)


# ------------------------------------------------------------------------------- ensembles, conformal


def test_regressor_ensemble_of_two_with_conformal_intervals(pretrained, tmp_path):
    from bartsmiles.model.prediction import predict_rows
    from bartsmiles.model.uncertainty import load_calibration

    y = np.array([1.0 + 0.5 * len(s) for s in MOLS])
    reg = tiny(BartSmilesRegressor, pretrained, epochs=2, n_models=2, valid_fraction=0.35, seed=4,
               work_dir=str(tmp_path / "work"))
    assert clone(reg).get_params()["n_models"] == 2
    with pytest.raises(ValueError, match="n_models must be an integer >= 1"):
        clone(reg).set_params(n_models=0).fit(MOLS, y)      # refused before any training
    reg.fit(MOLS, y)
    run = Path(reg.run_dir_)
    assert [Path(c).parent.name for c in reg.checkpoints_] == ["run", "run1"]
    seeds = [json.loads((run / d / "finetune_config.json").read_text())["seed"] for d in ("run", "run1")]
    assert seeds == [4, 5]
    for d in ("run", "run1"):  # finetune() calibrated each member on the same validation split
        assert load_calibration(run / d / "checkpoint_best.pt").n == [11]
    members = np.stack([predict_rows(c, MOLS, on_overflow="truncate")[0][:, 0] for c in reg.checkpoints_])
    mean, std = reg.predict(MOLS, return_std=True)
    np.testing.assert_allclose(mean, members.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, members.std(axis=0), rtol=1e-5, atol=1e-7)
    assert (std > 0).any()                                  # two seeds, two models
    lower, upper = reg.predict_interval(MOLS, alpha=0.1)
    q = reg.calibration_.quantile(0.1)[0]
    assert reg.calibration_.n == [11] and q > 0
    np.testing.assert_allclose(upper - lower, 2 * q) and np.testing.assert_allclose((upper + lower) / 2, mean)
    with pytest.raises(CalibrationError, match="too few for alpha=0.05"):
        reg.predict_interval(MOLS, alpha=0.05)              # 11 points support alpha >= 1/12

    reg.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "member1" / "model.pt").is_file()
    assert load_calibration(tmp_path / "saved").n == [11]   # member 0's own, for bartsmiles predict
    again = BartSmilesRegressor.load(tmp_path / "saved")
    assert len(again.checkpoints_) == 2 and again.get_params() == reg.get_params()
    np.testing.assert_allclose(again.predict(MOLS, return_std=True), (mean, std), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(again.predict_interval(MOLS, alpha=0.1), (lower, upper), rtol=1e-6)

    # an attribution explains what the ensemble predicts: the members' mean, from the estimator or
    # from the saved folders given as members on the command line
    from bartsmiles.attribution import Attributor
    from bartsmiles.attribution.cli import main as attribute_main

    attributor = Attributor(again, output="prediction", method="gradient_x_input")
    assert attributor.n_members == 2
    [a] = attributor.attribute(MOLS[0])
    assert a.output == pytest.approx(float(mean[0]), rel=1e-4)
    out = tmp_path / "attributed"
    assert attribute_main([str(tmp_path / "saved"), MOLS[0], "--member", str(tmp_path / "saved" / "member1"),
                           "--output", "prediction", "--method", "gradient_x_input", "--no-images",
                           "--out", str(out)]) == 0
    assert pd.read_csv(out / "summary.csv")["output"].iloc[0] == pytest.approx(float(mean[0]), rel=1e-4)


def test_classifier_prediction_sets(fitted):
    clf, _ = fitted
    n_valid = clf.calibration_.n[0]
    with pytest.raises(CalibrationError, match=f"{n_valid} calibration point"):
        clf.predict_set(MOLS, alpha=0.1)                    # a 32-molecule fit has too few for 90 %
    sets = clf.predict_set(MOLS + ["C1CC"], alpha=0.5)
    assert sets.shape == (33, 2) and sets.dtype == bool and not sets[-1].any()
    proba, std = clf.predict_proba(MOLS, return_std=True)
    assert (std == 0).all()                                 # one model: no spread
    q = clf.calibration_.quantile(0.5)[0]
    np.testing.assert_array_equal(sets[:-1, 1], 1 - proba[:, 1] <= q)


# ------------------------------------------------------------------------------- grid search


def _data(tmp_path) -> tuple[str, str]:
    from bartsmiles.core.splits import Split

    csv = tmp_path / "d.csv"
    pd.DataFrame({"smiles": MOLS, "y": [float(has_n(s)) for s in MOLS]}).to_csv(csv, index=False)
    split = tmp_path / "split.json"
    Split(train=list(range(24)), valid=list(range(24, 32)), test=[], kind="random", seed=0).save(split)
    return str(csv), str(split)


def _cfg(pretrained, tmp_path, **kw):
    from bartsmiles.training.finetuning import FinetuneConfig

    csv, split = _data(tmp_path)
    base = dict(data=csv, pretrained=str(pretrained), split=split, save_dir=str(tmp_path / "run"), epochs=2,
                batch_size=8, lr=1e-3, keep_last_epochs=-1, cpu=True, log_interval=100, score_test=False)
    base.update(kw)
    return FinetuneConfig(**base)


def test_grid_search_two_by_one_selects_on_validation(pretrained, tmp_path):
    from bartsmiles.training.grid import grid_search

    cfg = _cfg(pretrained, tmp_path)
    best_cfg, table = grid_search(cfg, lrs=[3e-3, 1e-5], dropouts=[0.1])
    assert [(r["lr"], r["dropout"]) for r in table] == [(3e-3, 0.1), (1e-5, 0.1)]
    assert all(Path(r["best_checkpoint"]).is_file() and r["metric"] == "roc_auc" for r in table)
    assert len({r["save_dir"] for r in table}) == 2
    winner = max(range(2), key=lambda i: (table[i]["valid"], -i))
    assert [r["best"] for r in table] == [i == winner for i in range(2)]
    assert (best_cfg.lr, best_cfg.dropout, best_cfg.save_dir) == (table[winner]["lr"], 0.1, table[winner]["save_dir"])
    assert json.loads((tmp_path / "run" / "grid_search.json").read_text()) == table


# ------------------------------------------------------------------------------- resume


KILLER = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    from fairseq import checkpoint_utils
    from bartsmiles.training.finetuning import FinetuneConfig, finetune

    save = checkpoint_utils.save_checkpoint

    def save_then_die(cfg, trainer, epoch_itr, val_loss):
        out = save(cfg, trainer, epoch_itr, val_loss)
        if epoch_itr.epoch == 1 and epoch_itr.end_of_epoch():
            os.kill(os.getpid(), signal.SIGKILL)   # killed right after the first epoch checkpoint
        return out

    checkpoint_utils.save_checkpoint = save_then_die
    finetune(FinetuneConfig(**json.loads(sys.argv[1])))
""")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train_state(path: Path) -> tuple[int, int]:
    from bartsmiles.model.checkpoint import safe_load

    state = safe_load(path)
    return int(state["extra_state"]["train_iterator"]["epoch"]), int(state["optimizer_history"][-1]["num_updates"])


@pytest.mark.slow
def test_killed_finetune_resumes_where_it_stopped(pretrained, tmp_path):
    from bartsmiles.training.config import updates_per_epoch
    from bartsmiles.training.finetuning import finetune

    cfg = _cfg(pretrained, tmp_path, epochs=3)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    proc = subprocess.run([sys.executable, str(script), json.dumps(fields)], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    run = Path(cfg.save_dir)
    assert (run / "checkpoint1.pt").is_file() and not (run / "checkpoint2.pt").exists()
    per_epoch = updates_per_epoch(24, 8)
    assert _train_state(run / "checkpoint_last.pt") == (2, per_epoch)
    first = _digest(run / "checkpoint1.pt")

    result = finetune(cfg)  # same config, same save_dir: continues with epoch 2
    assert _digest(run / "checkpoint1.pt") == first     # epoch 1 was not trained again
    assert (run / "checkpoint2.pt").is_file() and (run / "checkpoint3.pt").is_file()
    assert _train_state(run / "checkpoint_last.pt") == (4, 3 * per_epoch)
    assert _train_state(run / "checkpoint2.pt") == (3, 2 * per_epoch)
    assert result.best_valid_metric is not None

    # the killed-and-resumed run ends with exactly the weights of an uninterrupted run
    from bartsmiles.model.checkpoint import safe_load

    reference = finetune(dataclasses.replace(cfg, save_dir=str(tmp_path / "uninterrupted")))
    resumed_w = safe_load(run / "checkpoint3.pt")["model"]
    reference_w = safe_load(Path(reference.save_dir) / "checkpoint3.pt")["model"]
    assert all(torch.equal(resumed_w[k], reference_w[k]) for k in reference_w)

    # a finished run "resumes" with nothing to do
    last = _digest(run / "checkpoint_last.pt")
    finetune(cfg)
    assert _digest(run / "checkpoint_last.pt") == last

    # a different configuration in the same folder starts afresh from the pretrained weights
    finetune(dataclasses.replace(cfg, lr=5e-4))
    assert _digest(run / "checkpoint1.pt") != first
    assert _train_state(run / "checkpoint_last.pt") == (4, 3 * per_epoch)

    # resume_args on the run's own (resolved) config: resumes; after the data file changes: does not
    from bartsmiles.training.finetuning import FinetuneConfig, resume_args

    saved = json.loads((run / "finetune_config.json").read_text())
    resolved = FinetuneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    flags = ["x", "--restore-file", str(pretrained), "--reset-optimizer", "--reset-meters", "--cpu"]
    assert resume_args(resolved, flags) == ["x", "--cpu", "--restore-file", "checkpoint_last.pt"]
    assert resume_args(resolved, flags, resume=False) == flags
    with open(resolved.data, "a") as fh:
        fh.write("CCCCCCN,1\n")
    assert resume_args(resolved, flags) == flags
