"""Checkpoint averaging: exact elementwise means, window choice, and a real fine-tuning run averaged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bartsmiles.model.averaging import AVERAGE_NAME, average_checkpoints, average_last_epochs, choose_window
from bartsmiles.model.checkpoint import safe_load

MOLS = ["CCN", "CCO", "CCCN", "CCCO", "c1ccncc1", "c1ccccc1", "CC(=O)N", "CC(=O)O", "CN(C)C", "COC",
        "NCCO", "OCCO", "c1ccc(N)cc1", "c1ccc(O)cc1", "CC#N", "CC=O", "N#Cc1ccccc1", "Clc1ccccc1",
        "CCNC(C)=O", "CCOC(C)=O", "Cc1ccncc1", "Cc1ccccc1", "CNC", "CSC"]


def _fake_checkpoint(path: Path, weights: dict, val: float, epoch: int, maximize: bool = True) -> Path:
    torch.save({"model": weights, "cfg": {"checkpoint": {"maximize_best_checkpoint_metric": maximize}},
                "task_state": {"bartsmiles": {"epoch_tag": epoch}},
                "extra_state": {"val_loss": val, "train_iterator": {"epoch": epoch + 1}},
                "optimizer_history": [{"num_updates": epoch}], "last_optimizer_state": {"x": torch.ones(2)}},
               path)
    return path


def test_two_checkpoints_average_to_the_exact_elementwise_mean(tmp_path):
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g), "steps": torch.tensor([7])}
    b = {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g), "steps": torch.tensor([7])}
    pa = _fake_checkpoint(tmp_path / "checkpoint1.pt", a, 0.5, 1)
    pb = _fake_checkpoint(tmp_path / "checkpoint2.pt", b, 0.7, 2)
    out = average_checkpoints([pa, pb], tmp_path / "avg.pt")
    state = safe_load(out)
    for key in ("w", "b"):
        expected = ((a[key].double() + b[key].double()) / 2).float()
        assert torch.equal(state["model"][key], expected), key
        assert state["model"][key].dtype == torch.float32
    assert torch.equal(state["model"]["steps"], torch.tensor([7]))
    # cfg, task_state and extra_state come from the last checkpoint; no optimizer state
    assert state["task_state"]["bartsmiles"]["epoch_tag"] == 2
    assert state["extra_state"]["val_loss"] == 0.7
    assert state["extra_state"]["averaged_from"] == ["checkpoint1.pt", "checkpoint2.pt"]
    assert state["last_optimizer_state"] is None


def test_mismatched_checkpoints_are_refused(tmp_path):
    pa = _fake_checkpoint(tmp_path / "a.pt", {"w": torch.zeros(2, 2)}, 0.1, 1)
    pb = _fake_checkpoint(tmp_path / "b.pt", {"w": torch.zeros(3, 2)}, 0.1, 2)
    pc = _fake_checkpoint(tmp_path / "c.pt", {"v": torch.zeros(2, 2)}, 0.1, 3)
    with pytest.raises(ValueError, match="shape"):
        average_checkpoints([pa, pb], tmp_path / "o.pt")
    with pytest.raises(ValueError, match="different parameters"):
        average_checkpoints([pa, pc], tmp_path / "o.pt")
    with pytest.raises(ValueError, match="no checkpoints"):
        average_checkpoints([], tmp_path / "o.pt")


def test_window_ends_at_the_best_epoch():
    epochs = range(1, 11)
    assert choose_window(epochs, 4, best=7) == [4, 5, 6, 7]
    assert choose_window(epochs, 4, best=2) == [1, 2, 3, 4]      # not enough before: extend past best
    assert choose_window(epochs, 4, best=10) == [7, 8, 9, 10]
    assert choose_window(epochs, 4, best=7, around="last") == [7, 8, 9, 10]
    assert choose_window([8, 9, 10], 4, best=9) == [8, 9, 10]   # fewer available than k
    assert choose_window([1, 2, 5, 6, 7], 3, best=6) == [2, 5, 6]  # gaps: the k closest at or before
    with pytest.raises(ValueError):
        choose_window(epochs, 0, best=3)


@pytest.mark.parametrize("maximize, best_window", [(True, [2, 3]), (False, [4, 5])])
def test_best_epoch_read_from_the_stored_metric(tmp_path, maximize, best_window):
    values = {1: 0.2, 2: 0.6, 3: 0.9, 4: 0.1, 5: 0.05}  # max at 3, min at 5
    for epoch, val in values.items():
        _fake_checkpoint(tmp_path / f"checkpoint{epoch}.pt", {"w": torch.full((2,), float(epoch))}, val, epoch,
                         maximize=maximize)
    out = average_last_epochs(tmp_path, k=2, around="best")
    assert out == tmp_path / AVERAGE_NAME
    state = safe_load(out)
    assert state["extra_state"]["averaged_from"] == [f"checkpoint{e}.pt" for e in best_window]
    assert torch.equal(state["model"]["w"], torch.full((2,), float(np.mean(best_window))))


def test_no_epoch_checkpoints_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        average_last_epochs(tmp_path, 4)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    from bartsmiles.model.checkpoint import write_untrained_checkpoint
    from bartsmiles.training.pretraining import build_vocabulary

    root = tmp_path_factory.mktemp("pre")
    (root / "mols.smi").write_text("\n".join(MOLS) + "\n")
    vocab, _ = build_vocabulary([root / "mols.smi"], n_jobs=1)
    vocab.save(root / "dict.txt")
    return write_untrained_checkpoint("bartsmiles_tiny", root / "dict.txt", root / "model" / "model.pt")


@pytest.mark.slow
def test_finetune_then_average_last_4_epochs_is_loadable_and_finite(pretrained, tmp_path):
    from bartsmiles.core.splits import Split
    from bartsmiles.model.predictor import PropertyPredictor
    from bartsmiles.training.finetuning import FinetuneConfig, finetune

    torch.set_num_threads(1)
    csv = tmp_path / "d.csv"
    pd.DataFrame({"smiles": MOLS, "y": [float("N" in s or "n" in s) for s in MOLS]}).to_csv(csv, index=False)
    split = tmp_path / "split.json"
    Split(train=list(range(16)), valid=list(range(16, 24)), test=[], kind="random", seed=0).save(split)
    result = finetune(FinetuneConfig(data=str(csv), pretrained=str(pretrained), save_dir=str(tmp_path / "run"),
                                     split=str(split), epochs=5, batch_size=8, lr=1e-3, keep_last_epochs=4,
                                     cpu=True, log_interval=100, score_test=False))
    run = Path(result.save_dir)
    assert sorted(p.name for p in run.glob("checkpoint[0-9]*.pt")) == [f"checkpoint{e}.pt" for e in (2, 3, 4, 5)]
    out = average_last_epochs(run, k=4, around="best")
    state = safe_load(out)
    assert state["extra_state"]["averaged_from"] == [f"checkpoint{e}.pt" for e in (2, 3, 4, 5)]
    parts = [safe_load(run / f"checkpoint{e}.pt")["model"] for e in (2, 3, 4, 5)]
    key = "classification_heads.smiles_property.out_proj.weight"
    expected = (sum(p[key].double() for p in parts) / 4).float()
    assert torch.equal(state["model"][key], expected)
    preds = PropertyPredictor(out).predict(MOLS)
    assert preds.shape == (len(MOLS), 1) and np.isfinite(preds).all()
    assert ((preds >= 0) & (preds <= 1)).all()
