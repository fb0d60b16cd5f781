"""The per-epoch progress bar fed by fairseq's JSON log records (bartsmiles.training.progress)."""
from __future__ import annotations

import io
import json
import logging

from bartsmiles.training.progress import FAIRSEQ_PROGRESS_LOGGER, EpochProgress, parse_record


def _log(name: str, stats: dict) -> None:
    logging.getLogger(FAIRSEQ_PROGRESS_LOGGER).info(json.dumps(stats))


def test_parse_record():
    assert parse_record('{"epoch": 1, "loss": "0.5"}') == {"epoch": 1, "loss": "0.5"}
    assert parse_record("begin validation on valid subset") is None
    assert parse_record("{not json") is None


def test_bar_advances_once_per_validated_epoch_and_keeps_history():
    progress = EpochProgress(3, "roc_auc", enabled=False)
    progress.update({"epoch": 1, "loss": "0.7", "num_updates": "10"})
    progress.update({"epoch": 1, "train_loss": "0.6", "train_num_updates": "20"})
    progress.update({"epoch": 1, "valid_loss": "0.5", "valid_roc_auc": "0.81"})
    progress.update({"epoch": 1, "valid_loss": "0.5", "valid_roc_auc": "0.81"})  # logged twice: one step
    progress.update({"epoch": 2, "train_loss": "0.4"})
    progress.update({"epoch": 2, "valid_loss": "0.45", "valid_roc_auc": "0.86"})
    assert progress.history == [{"epoch": 1, "train_loss": 0.6, "valid_roc_auc": 0.81},
                                {"epoch": 2, "train_loss": 0.4, "valid_roc_auc": 0.86}]
    assert progress.postfix == {"loss": "0.4", "valid roc_auc": "0.86"}


def test_bar_reads_fairseq_logger_and_hides_info_lines_from_the_console(tmp_path, capsys):
    root = logging.getLogger()
    console = logging.StreamHandler(io.StringIO())
    logfile = logging.FileHandler(tmp_path / "train.log")
    root.addHandler(console)
    root.addHandler(logfile)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        with EpochProgress(2, "rmse", desc="test") as progress:
            _log("valid", {"epoch": 1, "valid_rmse": "1.25"})
            logging.getLogger("fairseq.trainer").warning("a real warning")
        assert progress.history == [{"epoch": 1, "valid_rmse": 1.25}]
        assert "a real warning" in console.stream.getvalue()
        assert "valid_rmse" not in console.stream.getvalue()  # kept off the console
        logfile.flush()
        assert "valid_rmse" in (tmp_path / "train.log").read_text()  # but the log file has it
        # after the bar closes, fairseq's lines reach the console again
        _log("valid", {"epoch": 2, "valid_rmse": "1.0"})
        assert "valid_rmse" in console.stream.getvalue()
        assert "test" in capsys.readouterr().err  # the bar itself (stderr)
    finally:
        root.removeHandler(console)
        root.removeHandler(logfile)
        root.setLevel(old_level)
