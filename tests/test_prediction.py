"""Row-preserving prediction (predict_table, `bartsmiles predict`): bad rows in the middle never shift rows."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bartsmiles.model.prediction import ERROR_COLUMN, predict_rows, predict_table
from bartsmiles.model.resolve import resolve_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import make_fixtures  # noqa: E402

MOLS = make_fixtures.PROPERTY_MOLS
LONG = "C" * 200  # 202 positions > 128


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-task classification run and a regression run (tiny, random init, 2 epochs each)."""
    from bartsmiles.training.finetuning import FinetuneConfig, finetune

    root = tmp_path_factory.mktemp("pred")
    common = dict(**make_fixtures.property_inputs(root), epochs=2, batch_size=8, lr=1e-3,
                  keep_last_epochs=1, cpu=True, log_interval=100, score_test=False)
    clf = finetune(FinetuneConfig(save_dir=str(root / "clf"), target_columns=("has_n", "has_o"),
                                  task_type="classification", **common))
    reg = finetune(FinetuneConfig(save_dir=str(root / "reg"), target_columns=("length",), task_type="regression",
                                  **common))
    return {"clf": clf, "reg": reg, "root": root}


def _input_frame() -> pd.DataFrame:
    smiles = ["CCN", "not a smiles", "c1ccccc1", "", LONG, "C1CC", None, "CCO"]
    return pd.DataFrame({"id": [f"m{i}" for i in range(len(smiles))], "smiles": smiles,
                         "note": list("abcdefgh")}, index=[100 + i for i in range(len(smiles))])


def test_bad_rows_get_nan_and_a_reason_without_shifting_rows(runs):
    frame = _input_frame()
    out = predict_table(runs["clf"].save_dir, frame, smiles_column="smiles")
    assert list(out.columns) == ["id", "smiles", "note", "has_n", "has_o", ERROR_COLUMN]
    assert out.index.tolist() == frame.index.tolist()
    pd.testing.assert_frame_equal(out[["id", "smiles", "note"]], frame)
    errors = out[ERROR_COLUMN].tolist()
    assert errors[0] == errors[2] == errors[7] == ""
    assert errors[1].startswith("invalid SMILES")
    assert errors[3] == "empty SMILES" and errors[6] == "empty SMILES"
    assert errors[4] == "too long: 202 tokens > 128 positions"
    assert errors[5].startswith("invalid SMILES")  # unclosed ring
    bad = out[ERROR_COLUMN] != ""
    assert out.loc[bad, ["has_n", "has_o"]].isna().all().all()
    good = out.loc[~bad, ["has_n", "has_o"]].to_numpy()
    assert np.isfinite(good).all() and ((good >= 0) & (good <= 1)).all()
    # each good row's prediction is that of the molecule alone: nothing shifted
    from bartsmiles.model.predictor import predict

    alone = predict(runs["clf"].best_checkpoint, ["CCN", "c1ccccc1", "CCO"])
    np.testing.assert_allclose(good, alone, rtol=1e-5, atol=1e-6)


def test_truncate_predicts_long_smiles(runs):
    preds, errors, names = predict_rows(runs["clf"].best_checkpoint, [LONG, "CCN"], on_overflow="truncate")
    assert errors == ["", ""] and np.isfinite(preds).all() and names == ["has_n", "has_o"]
    with pytest.raises(ValueError, match="on_overflow"):
        predict_rows(runs["clf"].best_checkpoint, ["CCN"], on_overflow="drop")


def test_regression_is_in_original_units_and_csv_round_trip(runs, tmp_path):
    src = tmp_path / "in.csv"
    _input_frame().to_csv(src, index=False)
    out = predict_table(runs["reg"].best_checkpoint, src, smiles_column="smiles")
    assert len(out) == 8 and list(out["id"]) == [f"m{i}" for i in range(8)]
    values = out["length"].to_numpy()
    ok = (out[ERROR_COLUMN] == "").to_numpy()
    assert np.isnan(values[~ok]).all() and np.isfinite(values[ok]).all()
    # the standardization is undone: values are near the training mean (~ 110), not near 0
    mean = np.mean([10.0 * len(s) + 50 for s in MOLS[:16]])
    assert np.all(np.abs(values[ok] - mean) < 200)


def test_column_name_collision_gets_a_prefix(runs):
    frame = pd.DataFrame({"smiles": ["CCN", "CCO"], "has_n": [1, 0]})
    out = predict_table(runs["clf"].save_dir, frame)
    assert list(out.columns) == ["smiles", "has_n", "pred_has_n", "has_o", ERROR_COLUMN]
    assert out["has_n"].tolist() == [1, 0]


def test_missing_inputs_are_clear_errors(runs, tmp_path):
    with pytest.raises(KeyError, match="SMILES"):
        predict_table(runs["clf"].save_dir, pd.DataFrame({"smiles": ["C"]}), smiles_column="SMILES")
    with pytest.raises(FileNotFoundError):
        predict_table(runs["clf"].save_dir, tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        resolve_checkpoint(tmp_path)
    assert resolve_checkpoint(runs["clf"].save_dir).name == "checkpoint_best.pt"


def test_cli_predict_in_process_and_as_a_command(runs, tmp_path):
    from bartsmiles.cli.main import main

    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    frame = _input_frame()
    frame.to_csv(src, index=False)
    assert main(["predict", "--model", runs["clf"].save_dir, "--input", str(src), "--smiles-column", "smiles",
                 "--output", str(dst)]) == 0
    out = pd.read_csv(dst, keep_default_na=False)
    assert out["id"].tolist() == frame["id"].tolist()
    assert [e != "" for e in out[ERROR_COLUMN]] == [False, True, False, True, True, True, True, False]
    expected = predict_table(runs["clf"].save_dir, frame)
    np.testing.assert_allclose(pd.to_numeric(out["has_n"].replace("", np.nan)).to_numpy(),
                               expected["has_n"].to_numpy(), rtol=1e-6)

    dst2 = tmp_path / "out2.csv"
    proc = subprocess.run([sys.executable, "-m", "bartsmiles.cli", "predict", "--model", runs["reg"].best_checkpoint,
                           "--input", str(src), "--output", str(dst2)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == {"output": str(dst2), "n": 8, "n_errors": 5}
    assert pd.read_csv(dst2).shape == (8, 5)

    bad = main(["predict", "--model", str(tmp_path), "--input", str(src), "--output", str(tmp_path / "x.csv")])
    assert bad == 2
