"""benchmarks/pretraining_value.py: the value curve reads tokens from checkpoints, scores, resumes."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import make_fixtures  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("pretraining_value", REPO / "benchmarks" / "pretraining_value.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_read_peers_parses_the_peer_table(tmp_path):
    peers = tmp_path / "PEERS.md"
    peers.write_text("| dataset | metric | ECFP4+RF | chemprop |\n|---|---|---|---|\n"
                     "| bbbp | ROC-AUC ↑ | 0.687 ± 0.001 (n=3) | 0.667 ± 0.037 (n=3) |\n"
                     "| esol | RMSE ↓ | 1.647 ± 0.003 (n=3) | 0.828 |\n| hiv | ROC-AUC ↑ | not run | x |\n")
    assert _script().read_peers(peers) == {"bbbp": 0.687, "esol": 1.647}


def test_better_respects_the_metric_direction():
    better = _script().better
    assert better(0.8, 0.7, "roc_auc") and not better(0.7, 0.8, "roc_auc")
    assert better(1.0, 1.5, "rmse") and not better(1.5, 1.0, "rmse")


@pytest.mark.slow
def test_curve_from_a_raw_training_checkpoint(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("BARTSMILES_DATA", str(data_dir))
    ckpt = make_fixtures.train_tiny_checkpoint(tmp_path / "run", max_update=4)
    peers = tmp_path / "PEERS.md"
    peers.write_text("| dataset | metric | ECFP4+RF |\n|---|---|---|\n| freesolv | RMSE ↓ | 4.347 ± 0.036 (n=3) |\n")
    out = tmp_path / "value.json"
    script = _script()
    argv = [str(ckpt), "--datasets", "freesolv", "--random-init-seeds", "0", "--peers", str(peers),
            "--out", str(out), "--plot", str(tmp_path / "value.png")]
    assert script.main(argv) == 0
    result = json.loads(out.read_text())
    (point,) = result["points"].values()
    assert point["tokens_seen"] > 0 and point["objective"] == "denoising"
    assert point["scores"]["freesolv"]["metric"] == "rmse" and point["scores"]["freesolv"]["value"] > 0
    assert "freesolv" in result["random_init"]["0"]
    (summary,) = result["summary"].values()
    assert summary["n"] == 1 and summary["beats_ecfp"] == int(point["scores"]["freesolv"]["value"] < 4.347)
    assert (tmp_path / "value.png").stat().st_size > 0

    def fail(*args, **kwargs):
        raise AssertionError("a resumed run scored again")

    monkeypatch.setattr(script, "score_model", fail)
    assert script.main(argv) == 0  # everything is already in the JSON
