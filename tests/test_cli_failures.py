"""Every failure a user can cause on the command line ends in one line naming the file, and exit 2.

The cases are the ones a new user hit (issue 10): a malicious checkpoint, a file that is not a
checkpoint, a non-UTF-8 CSV, an output folder that does not exist, a missing model for
``bartsmiles-attribute``; plus a run folder given where a model is expected, which must work.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import make_fixtures  # noqa: E402

from bartsmiles.attribution.cli import main as attribute_main  # noqa: E402
from bartsmiles.cli.main import main  # noqa: E402
from bartsmiles.errors import BartSmilesError, CheckpointError, UnsafeCheckpointError, run_handler  # noqa: E402
from bartsmiles.model.checkpoint import safe_load, write_untrained_checkpoint  # noqa: E402
from bartsmiles.model.resolve import resolve_checkpoint  # noqa: E402


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "PWNED"
    return make_fixtures.write_malicious_checkpoint(tmp_path / "evil.pt", marker), marker


@pytest.fixture
def not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_bytes(b"e" * 50 + bytes(range(256)))
    return path


@pytest.fixture
def csv_in(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("smiles\nCCO\nc1ccccc1\n")
    return path


def test_malicious_checkpoint_is_refused_in_one_line(evil, csv_in, tmp_path, capsys):
    path, marker = evil
    assert main(["predict", "--model", str(path), "--input", str(csv_in), "--output", str(tmp_path / "o.csv")]) == 2
    _one_line(capsys, "refusing to load checkpoint", str(path), "system")
    assert main(["finetune", "--data", str(csv_in), "--pretrained", str(path), "--target-columns", "y",
                 "--save-dir", str(tmp_path / "ft")]) == 2
    _one_line(capsys, "refusing to load checkpoint", str(path))
    assert attribute_main([str(path), "CCO", "--out", str(tmp_path / "attr")]) == 2
    _one_line(capsys, "bartsmiles-attribute: error:", str(path))
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "o.csv").exists()


def test_a_file_that_is_not_a_checkpoint_is_named(not_a_checkpoint, csv_in, tmp_path, capsys):
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        safe_load(not_a_checkpoint)
    assert main(["predict", "--model", str(not_a_checkpoint), "--input", str(csv_in),
                 "--output", str(tmp_path / "o.csv")]) == 2
    _one_line(capsys, str(not_a_checkpoint), "not a checkpoint")
    assert main(["encode", str(csv_in), "--smiles-column", "smiles", "--model", str(not_a_checkpoint),
                 "-o", str(tmp_path / "f.npy")]) == 2
    _one_line(capsys, str(not_a_checkpoint))


def test_a_non_utf8_csv_is_named_with_its_line(tmp_path, capsys):
    model = write_untrained_checkpoint("bartsmiles_tiny", Path(make_fixtures.HERE).parents[1] / "pretrained" /
                                       "dict.txt", tmp_path / "m" / "model.pt")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("smiles,name\nCCO,ethanol\nCCN,\xe9thylamine\n".encode("latin-1"))
    assert main(["predict", "--model", str(model), "--input", str(bad), "--output", str(tmp_path / "o.csv")]) == 2
    _one_line(capsys, str(bad), "line 3", "UTF-8")
    assert main(["encode", str(bad), "--smiles-column", "smiles", "--model", str(model),
                 "-o", str(tmp_path / "f.npy")]) == 2
    _one_line(capsys, str(bad), "UTF-8")


def test_an_output_folder_that_does_not_exist_fails_before_any_work(csv_in, tmp_path, capsys, monkeypatch):
    import bartsmiles.cli.commands as commands

    def no_work(*args, **kwargs):
        raise AssertionError("the prediction ran before the output was checked")

    monkeypatch.setattr(commands, "predict_file", no_work)
    out = tmp_path / "nonexistent" / "dir" / "out.csv"
    assert main(["predict", "--model", str(tmp_path), "--input", str(csv_in), "--output", str(out)]) == 2
    _one_line(capsys, str(out), "does not exist")
    assert not out.parent.exists()


def test_attribute_with_a_missing_model_is_one_line(tmp_path, capsys):
    missing = tmp_path / "no_such_model.pt"
    assert attribute_main([str(missing), "CCO", "--out", str(tmp_path / "a")]) == 2
    _one_line(capsys, "bartsmiles-attribute: error:", str(missing))


def test_predict_with_a_missing_column_names_file_and_column(csv_in, tmp_path, capsys):
    model = write_untrained_checkpoint("bartsmiles_tiny", Path(make_fixtures.HERE).parents[1] / "pretrained" /
                                       "dict.txt", tmp_path / "m" / "model.pt")
    assert main(["predict", "--model", str(model), "--input", str(csv_in), "--smiles-column", "SMILES",
                 "--output", str(tmp_path / "o.csv")]) == 2
    _one_line(capsys, "'SMILES'", str(csv_in))


def test_the_command_line_prints_one_line_as_a_real_process(not_a_checkpoint, csv_in, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bartsmiles.cli", "predict", "--model", str(not_a_checkpoint),
                           "--input", str(csv_in), "--output", str(tmp_path / "o.csv")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bartsmiles predict: error:"), proc.stderr[-2000:]


def test_run_folder_resolves_to_the_one_model_below(tmp_path):
    run = tmp_path / "runs" / "bbbp_scaffold"
    (run / "finetune").mkdir(parents=True)
    (run / "split.json").write_text("{}")
    (run / "finetune" / "checkpoint_last.pt").write_bytes(b"x")
    (run / "finetune" / "checkpoint_best.pt").write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "finetune" / "checkpoint_best.pt"
    (run / "finetune" / "checkpoint_avg.pt").write_bytes(b"x")
    assert resolve_checkpoint(run).name == "checkpoint_avg.pt"
    (run / "other").mkdir()
    (run / "other" / "model.pt").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="several models"):
        resolve_checkpoint(run)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint(tmp_path / "runs")
    assert resolve_checkpoint(run / "other") == run / "other" / "model.pt"


def test_run_handler_separates_user_errors_from_bugs(capsys):
    def user_error():
        raise UnsafeCheckpointError("x.pt", ["posix.system"], ["argparse.Namespace"])

    def bug():
        raise ZeroDivisionError("division by zero")

    assert run_handler("prog", user_error) == 2
    _one_line(capsys, "prog: error: refusing to load checkpoint x.pt")
    assert run_handler("prog", bug) == 1
    _one_line(capsys, "prog: internal error: ZeroDivisionError", "BARTSMILES_DEBUG")

    def missing_dependency():
        raise ModuleNotFoundError("RDKit is needed here (rdkit.MolFromSmiles) but cannot be imported: pip install rdkit")

    assert run_handler("prog", missing_dependency) == 2
    _one_line(capsys, "prog: error: RDKit is needed here")
    assert issubclass(UnsafeCheckpointError, BartSmilesError)


def test_descriptor_cache_of_a_folder_that_is_not_data(tmp_path, capsys):
    assert main(["preprocess-descriptors", str(tmp_path / "nowhere")]) == 2
    _one_line(capsys, "nowhere", "bartsmiles preprocess")
    assert main(["pretrain", "--data", str(tmp_path), "--descriptor-loss", "--cpu",
                 "--save-dir", str(tmp_path / "ck")]) == 2
    _one_line(capsys, str(tmp_path), "dict.txt")
