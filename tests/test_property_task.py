"""The smiles_property task, criterion and finetune(): from a tiny pretrained checkpoint, on CPU."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bartsmiles.core.metrics import rmse, roc_auc
from bartsmiles.core.splits import Split
from bartsmiles.errors import FinetuneError
from bartsmiles.model.predictor import PropertyPredictor, predict
from bartsmiles.training.finetuning import FinetuneConfig, finetune

pytestmark = pytest.mark.slow

WITH_N = ["CCN", "CCCN", "c1ccncc1", "CC(=O)N", "CN(C)C", "NCCO", "c1ccc(N)cc1", "CC#N", "N#Cc1ccccc1",
          "CCNC(C)=O", "Cc1ccncc1", "CNC", "NC(=O)c1ccccc1", "CCCCN", "OCCN", "c1cnc[nH]1"]
NO_N = ["CCO", "CCCO", "c1ccccc1", "CC(=O)O", "COC", "OCCO", "c1ccc(O)cc1", "CC=O", "Clc1ccccc1",
        "CCOC(C)=O", "Cc1ccccc1", "CSC", "OC(=O)c1ccccc1", "CCCCO", "CCCl", "c1ccoc1"]
MOLS = [m for pair in zip(WITH_N, NO_N) for m in pair]  # 32, alternating N / no N


def has_n(smi: str) -> float:
    return float("N" in smi or "n" in smi)


def tiny_cfg(**kw) -> FinetuneConfig:
    base = dict(batch_size=8, epochs=2, lr=1e-3, keep_last_epochs=-1, log_interval=100, cpu=True, num_workers=0)
    base.update(kw)
    return FinetuneConfig(**base)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A bartsmiles_tiny denoising checkpoint (3 updates) with dict.txt beside it."""
    from bartsmiles.training.pretraining import PretrainConfig, build_vocabulary, preprocess, pretrain

    root = tmp_path_factory.mktemp("pre")
    (root / "train.smi").write_text("\n".join(MOLS * 2) + "\n")
    (root / "valid.smi").write_text("\n".join(MOLS[:8]) + "\n")
    vocab, _ = build_vocabulary([root / "train.smi", root / "valid.smi"], n_jobs=1)
    preprocess([root / "train.smi"], [root / "valid.smi"], vocab, root / "bin", n_jobs=1)
    pretrain(PretrainConfig(data=str(root / "bin"), save_dir=str(root / "save"), arch="bartsmiles_tiny", cpu=True,
                            max_update=3, max_tokens=2048, warmup_updates=1, save_interval_updates=0,
                            num_workers=0, log_interval=100))
    ckpt = root / "save" / "checkpoint_last.pt"
    shutil.copy(root / "bin" / "dict.txt", ckpt.with_name("dict.txt"))
    return ckpt


@pytest.fixture(scope="module")
def smoke(pretrained, tmp_path_factory):
    """Two classification tasks with missing labels and one invalid SMILES; explicit split file."""
    root = tmp_path_factory.mktemp("smoke")
    rng = np.random.default_rng(0)
    smiles = MOLS + MOLS[:8]
    a = np.array([has_n(s) for s in smiles])
    b = np.array([float("O" in s or "o" in s) for s in smiles])
    b[rng.random(len(b)) < 0.25] = np.nan
    a[5] = np.nan
    frame = pd.DataFrame({"smiles": smiles, "task_a": a, "task_b": b})
    frame = pd.concat([frame.iloc[:3], pd.DataFrame({"smiles": ["C1CC"], "task_a": [1.0], "task_b": [0.0]}),
                       frame.iloc[3:]], ignore_index=True)  # CSV row 3 does not parse
    csv = root / "tiny.csv"
    frame.to_csv(csv, index=False)
    split = root / "split.json"
    Split(train=list(range(0, 28)), valid=list(range(28, 36)), test=list(range(36, 40)), kind="random", seed=0).save(split)
    cfg = tiny_cfg(data=str(csv), pretrained=str(pretrained), save_dir=str(root / "run"), split=str(split),
                   target_columns=("task_a", "task_b"), task_type="classification", pos_weight="auto")
    result = finetune(cfg)
    return result, cfg, root


def _valid_loss(checkpoint, smiles, labels) -> float:
    """Mean masked loss of ``checkpoint`` over a split, computed by the criterion in eval mode."""
    from bartsmiles.tasks.property_criterion import SmilesPropertyCriterion

    predictor = PropertyPredictor(checkpoint)
    ids, _, _ = predictor.task.encode(smiles)
    ds = predictor.task.build_dataset_for_inference(ids)
    sample = ds.collater([ds[i] for i in range(len(ds))])
    sample["target"] = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    with torch.no_grad():
        loss, n, _ = SmilesPropertyCriterion(predictor.task)(predictor.model, sample)
    return float(loss) / n


def test_smoke_trains_and_writes_checkpoints(smoke):
    result, cfg, root = smoke
    run = Path(result.save_dir)
    for name in ("checkpoint1.pt", "checkpoint2.pt", "checkpoint_best.pt", "checkpoint_last.pt"):
        assert (run / name).is_file(), name
    assert 0.0 <= result.best_valid_metric <= 1.0
    assert result.test_metric is not None
    assert result.sizes == {"train": 28, "valid": 8, "test": 4}
    # the invalid row is reported with its row number, and left out
    invalid = pd.read_csv(run / "invalid_rows.csv")
    assert invalid["row"].tolist() == [3]
    report = json.loads((run / "property_data.json").read_text())
    assert report["n_invalid"] == 1 and report["invalid_rows"] == [3]
    assert report["task_names"] == ["task_a", "task_b"]
    assert len(report["pos_weight"]) == 2
    assert json.loads((run / "finetune_result.json").read_text())["metric"] == "roc_auc"


def test_checkpoint_restores_pretrained_weights_and_keeps_new_head(smoke, pretrained):
    result, _, _ = smoke
    pre = torch.load(pretrained, map_location="cpu")["model"]
    fine = torch.load(result.best_checkpoint, map_location="cpu")
    assert "classification_heads.smiles_property.out_proj.weight" not in pre
    assert fine["model"]["classification_heads.smiles_property.out_proj.weight"].shape[0] == 2
    # <mask> was added by both tasks: the embedding shapes match, and the weights are the pretrained ones
    e_pre, e_fine = pre["encoder.embed_tokens.weight"], fine["model"]["encoder.embed_tokens.weight"]
    assert e_pre.shape == e_fine.shape
    corr = np.corrcoef(e_pre.flatten().numpy(), e_fine.flatten().numpy())[0, 1]
    assert corr > 0.9, f"fine-tuned embeddings do not come from the pretrained checkpoint (corr {corr:.3f})"
    meta = fine["task_state"]["bartsmiles"]
    assert meta["task_names"] == ["task_a", "task_b"] and meta["task_type"] == "classification"
    assert meta["dictionary"][-1] == "<mask>"


def test_best_valid_metric_matches_prediction_of_best_checkpoint(smoke):
    result, cfg, root = smoke
    frame = pd.read_csv(cfg.data).drop(index=3).reset_index(drop=True)
    split = Split.load(cfg.split)
    valid = frame.iloc[split.valid]
    preds = predict(result.best_checkpoint, valid["smiles"].tolist())
    assert preds.shape == (8, 2) and np.all((preds >= 0) & (preds <= 1))
    auc, _ = roc_auc(valid[["task_a", "task_b"]].to_numpy(), preds)
    assert auc == pytest.approx(result.best_valid_metric, abs=1e-5)


def test_missing_labels_are_masked(smoke):
    from bartsmiles.tasks.property_criterion import SmilesPropertyCriterion

    result, _, _ = smoke
    predictor = PropertyPredictor(result.best_checkpoint)
    model, task = predictor.model, predictor.task
    model.train()
    crit = SmilesPropertyCriterion(task)
    ids, _, _ = task.encode(["CCN", "CCO", "c1ccccc1"])
    dataset = task.build_dataset_for_inference(ids)
    sample = dataset.collater([dataset[i] for i in range(3)])

    sample["target"] = torch.full((3, 2), float("nan"))
    loss, sample_size, log = crit(model, sample)
    loss.backward()
    assert float(loss) == 0.0 and sample_size == 0
    assert all(p.grad is None or float(p.grad.abs().max()) == 0.0 for p in model.parameters())

    model.eval()
    target = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [float("nan"), float("nan")]])
    sample["target"] = target
    loss, sample_size, log = crit(model, sample)
    logits, _ = model(**sample["net_input"], features_only=True, classification_head_name="smiles_property")
    pw = torch.tensor(task.meta["pos_weight"])
    mask = ~torch.isnan(target)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[mask], target[mask], pos_weight=pw.expand_as(target)[mask], reduction="sum")
    assert sample_size == 3
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert "_pred" in log and log["_pred"].shape == (3, 2)


def test_documented_fairseq_train_command_gives_the_same_validation_loss(smoke, tmp_path):
    """`fairseq-train DATA --user-dir $(bartsmiles user-dir) --task smiles_property ...` in a fresh process."""
    result, cfg, root = smoke
    user_dir = subprocess.run([sys.executable, "-m", "bartsmiles.cli", "user-dir"], capture_output=True, text=True,
                              check=True).stdout.strip()
    argv = list(result.argv)
    argv[argv.index("--user-dir") + 1] = user_dir
    argv[argv.index("--save-dir") + 1] = str(tmp_path / "cli")
    fairseq_train = Path(sys.executable).with_name("fairseq-train")
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run([str(fairseq_train), *argv], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r'"valid_roc_auc"', proc.stderr + proc.stdout)

    frame = pd.read_csv(cfg.data).drop(index=3).reset_index(drop=True)
    valid = frame.iloc[Split.load(cfg.split).valid]
    api_ckpt, cli_ckpt = Path(result.save_dir) / "checkpoint_last.pt", tmp_path / "cli" / "checkpoint_last.pt"
    api_state, cli_state = torch.load(api_ckpt, map_location="cpu"), torch.load(cli_ckpt, map_location="cpu")
    # Same code path, same seed: the same model.  Equal up to float summation order only (thread
    # scheduling of CPU kernels can reorder reductions between processes).
    assert api_state["extra_state"]["val_loss"] == pytest.approx(cli_state["extra_state"]["val_loss"], abs=1e-4)
    for key, value in api_state["model"].items():
        assert torch.allclose(value, cli_state["model"][key], rtol=1e-4, atol=1e-5), key
    labels = valid[["task_a", "task_b"]].to_numpy()
    api_loss = _valid_loss(api_ckpt, valid["smiles"].tolist(), labels)
    assert api_loss == pytest.approx(_valid_loss(cli_ckpt, valid["smiles"].tolist(), labels), rel=1e-4)
    assert np.isfinite(api_loss) and api_loss > 0


def test_overfits_a_tiny_training_set(pretrained, tmp_path):
    """32 molecules, label = contains nitrogen; train = valid. Must reach AUC ~1 (or the pipeline is broken)."""
    folder = tmp_path / "data"
    folder.mkdir()
    frame = pd.DataFrame({"smiles": MOLS, "has_n": [has_n(s) for s in MOLS]})
    frame.to_csv(folder / "train.csv", index=False)
    frame.to_csv(folder / "valid.csv", index=False)
    result = finetune(tiny_cfg(data=str(folder), pretrained=str(pretrained), save_dir=str(tmp_path / "run"),
                               epochs=8, lr=3e-3, dropout=0.0, attention_dropout=0.0, warmup_ratio=0.1,
                               clip_norm=1.0, keep_last_epochs=1, smiles_column="smiles"))
    assert result.best_valid_metric >= 0.95
    preds = predict(result.best_checkpoint, MOLS)
    assert roc_auc(frame["has_n"].to_numpy(), preds[:, 0])[0] >= 0.95


def test_regression_scaling_round_trip(pretrained, tmp_path):
    smiles = MOLS + MOLS[:8]
    y = 100.0 + 10.0 * np.array([len(s) for s in smiles]) + np.arange(len(smiles)) % 3
    csv = tmp_path / "reg.csv"
    pd.DataFrame({"smiles": smiles, "y": y}).to_csv(csv, index=False)
    split = tmp_path / "split.json"
    Split(train=list(range(30)), valid=list(range(30, 40)), test=[], kind="random", seed=0).save(split)
    result = finetune(tiny_cfg(data=str(csv), pretrained=str(pretrained), save_dir=str(tmp_path / "run"),
                               split=str(split), task_type="regression", target_columns=("y",), keep_last_epochs=1))
    assert result.metric == "rmse" and result.test_metric is None
    meta = torch.load(result.best_checkpoint, map_location="cpu")["task_state"]["bartsmiles"]
    assert meta["target_mean"][0] == pytest.approx(y[:30].mean())
    assert meta["target_std"][0] == pytest.approx(y[:30].std())
    predictor = PropertyPredictor(result.best_checkpoint)
    preds = predictor.predict(smiles[30:])
    # the raw head output, un-standardized by hand, is what predict() returns
    ids, _, _ = predictor.task.encode(smiles[30:])
    ds = predictor.task.build_dataset_for_inference(ids)
    with torch.no_grad():
        raw, _ = predictor.model(**ds.collater([ds[i] for i in range(len(ds))])["net_input"], features_only=True,
                                 classification_head_name="smiles_property")
    np.testing.assert_allclose(preds[:, 0], raw[:, 0].numpy() * meta["target_std"][0] + meta["target_mean"][0],
                               rtol=1e-5)
    assert abs(preds.mean() - y[:30].mean()) < 3 * y[:30].std()  # original units, not standardized ones
    assert rmse(y[30:], preds[:, 0]) == pytest.approx(result.best_valid_metric, rel=1e-4)


# ------------------------------------------------------------------------------ bad input


def _write(tmp_path, frame, name="d.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def test_single_class_training_set_is_refused(tmp_path):
    csv = _write(tmp_path, pd.DataFrame({"smiles": MOLS, "y": [1.0] * 28 + [0.0] * 4}))
    split = tmp_path / "s.json"
    Split(train=list(range(24)), valid=list(range(24, 32)), test=[], kind="random", seed=0).save(split)
    with pytest.raises(FinetuneError, match="single class"):
        finetune(tiny_cfg(data=csv, save_dir=str(tmp_path / "r"), split=str(split), task_type="classification",
                          arch="bartsmiles_tiny"))


def test_wrong_label_type_is_refused(tmp_path):
    csv = _write(tmp_path, pd.DataFrame({"smiles": MOLS, "y": ["yes", "no"] * 16}))
    with pytest.raises(ValueError, match="non-numeric label 'yes' in column 'y'"):
        finetune(tiny_cfg(data=csv, save_dir=str(tmp_path / "r"), split="random", task_type="classification",
                          target_columns=("y",), arch="bartsmiles_tiny"))
    csv = _write(tmp_path, pd.DataFrame({"smiles": MOLS, "y": [0.0, 2.0] * 16}), "e.csv")
    with pytest.raises(ValueError, match="must be 0 or 1"):
        finetune(tiny_cfg(data=csv, save_dir=str(tmp_path / "r2"), split="random", task_type="classification",
                          target_columns=("y",), arch="bartsmiles_tiny"))


def test_missing_restore_file_is_refused(tmp_path):
    csv = _write(tmp_path, pd.DataFrame({"smiles": MOLS, "y": [has_n(s) for s in MOLS]}))
    with pytest.raises(FileNotFoundError, match="silently"):
        finetune(tiny_cfg(data=csv, pretrained=str(tmp_path / "nope.pt"), save_dir=str(tmp_path / "r")))


def test_empty_validation_split_is_refused(tmp_path):
    csv = _write(tmp_path, pd.DataFrame({"smiles": MOLS, "y": [has_n(s) for s in MOLS]}))
    split = tmp_path / "s.json"
    Split(train=list(range(32)), valid=[], test=[], kind="random", seed=0).save(split)
    with pytest.raises(FinetuneError, match="valid split .* is empty"):
        finetune(tiny_cfg(data=csv, save_dir=str(tmp_path / "r"), split=str(split), arch="bartsmiles_tiny"))


def test_randomized_smiles_augmentation_is_seeded_and_keeps_the_molecule():
    """--randomize-smiles: per epoch, a training molecule may be respelled; the draw depends only on
    (seed, epoch, index), the molecule stays the same, and nothing changes at probability 0."""
    from rdkit import Chem

    from bartsmiles.core.tokenizer import SmilesTokenizer
    from bartsmiles.core.vocab import Vocabulary
    from bartsmiles.tasks.property import RandomSpelling
    from bartsmiles.tasks.property_data import PropertyDataset
    from bartsmiles.training.finetuning import finetune_args

    smiles = ["CC(=O)Nc1ccc(O)cc1", "c1ccc2ccccc2c1", "OCC(N)C(=O)O"]
    tokenizer = SmilesTokenizer()
    vocab = Vocabulary.build(tokenizer.tokenize(Chem.MolToSmiles(Chem.MolFromSmiles(s), doRandom=True))
                             for s in smiles * 50)
    stored = [vocab.encode(tokenizer.tokenize(s)) for s in smiles]
    always = RandomSpelling(smiles, vocab, 1.0, seed=3, max_positions=128)
    data = PropertyDataset(stored, np.zeros((3, 1)), pad=vocab.pad, eos=vocab.eos, respell=always)
    texts = {}
    for epoch in (1, 2, 3):
        data.set_epoch(epoch)
        for i in range(3):
            ids = data[i]["source"].tolist()
            assert ids == always(i, epoch)  # the same draw every time it is asked for
            text = "".join(vocab.symbols[t] for t in ids[1:-1])
            assert Chem.CanonSmiles(text) == Chem.CanonSmiles(smiles[i])
            texts.setdefault(i, set()).add(text)
    assert any(len(t) > 1 for t in texts.values())  # epochs differ
    half = RandomSpelling(smiles, vocab, 0.5, seed=3, max_positions=128)
    draws = [half(i, e) is None for i in range(3) for e in range(40)]
    assert 0.3 < sum(draws) / len(draws) < 0.7
    assert PropertyDataset(stored, np.zeros((3, 1)), pad=vocab.pad, eos=vocab.eos)[1]["source"].tolist() == stored[1]
    with pytest.raises(ValueError):
        RandomSpelling(smiles, vocab, 0.0, seed=3, max_positions=128)
    cfg = FinetuneConfig(data="d.csv", task_type="regression", arch="bartsmiles_tiny", randomize_smiles=0.5)
    argv = finetune_args(cfg, n_train=10)
    assert argv[argv.index("--randomize-smiles") + 1] == "0.5"
    assert "--randomize-smiles" not in finetune_args(FinetuneConfig(data="d.csv", task_type="regression",
                                                                    arch="bartsmiles_tiny"), n_train=10)
    with pytest.raises(FinetuneError):
        finetune_args(FinetuneConfig(data="d.csv", task_type="regression", arch="bartsmiles_tiny",
                                     randomize_smiles=1.5), n_train=10)
