"""The encoder-mean property head (bartsmiles.tasks.property_head): trains, predicts without the
decoder, is recorded in the checkpoint, and every loader (prediction, attribution, export) follows it."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import make_fixtures  # noqa: E402

from bartsmiles.errors import ExportError, FinetuneError  # noqa: E402
from bartsmiles.model.checkpoint import safe_load  # noqa: E402
from bartsmiles.model.predictor import PropertyPredictor  # noqa: E402
from bartsmiles.tasks.property_head import mean_pool, use_head_input  # noqa: E402
from bartsmiles.training.finetuning import FinetuneConfig, finetune, finetune_args  # noqa: E402

MOLS = make_fixtures.PROPERTY_MOLS


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny classifier per head input, same data, seed and schedule (has_n, train = valid)."""
    import pandas as pd

    root = tmp_path_factory.mktemp("head")
    inputs = make_fixtures.property_inputs(root)
    folder = root / "data"  # train = valid: the overfit check
    folder.mkdir()
    frame = pd.read_csv(inputs["data"])
    frame.to_csv(folder / "train.csv", index=False)
    frame.to_csv(folder / "valid.csv", index=False)
    common = dict(data=str(folder), pretrained=inputs["pretrained"], target_columns=("has_n",), task_type="classification", epochs=12, batch_size=8,
                  lr=3e-3, dropout=0.0, attention_dropout=0.0, warmup_ratio=0.1, keep_last_epochs=0, cpu=True,
                  log_interval=100, score_test=False, progress=False)
    return {head: finetune(FinetuneConfig(save_dir=str(root / head), head_input=head, **common))
            for head in ("encoder_mean", "decoder_eos")}


def test_the_choice_reaches_fairseq_and_bad_values_are_refused():
    cfg = FinetuneConfig(data="x.csv", task_type="regression", arch="bartsmiles_tiny", save_dir="out",
                         head_input="encoder_mean")
    argv = finetune_args(cfg, n_train=10, user_dir="/p")
    assert argv[argv.index("--head-input") + 1] == "encoder_mean"
    with pytest.raises(FinetuneError, match="head_input"):
        finetune_args(FinetuneConfig(data="x.csv", task_type="regression", arch="bartsmiles_tiny",
                                     head_input="pooler"), n_train=10, user_dir="/p")


def test_encoder_mean_overfits_and_is_recorded(runs):
    """Overfit: the training molecules' label (has a nitrogen) is learned from the pooled encoder."""
    run = runs["encoder_mean"]
    assert run.best_valid_metric >= 0.95
    meta = safe_load(run.best_checkpoint)["task_state"]["bartsmiles"]
    assert meta["head_input"] == "encoder_mean"
    assert PropertyPredictor(run.best_checkpoint).task.head_input == "encoder_mean"
    assert safe_load(runs["decoder_eos"].best_checkpoint)["task_state"]["bartsmiles"]["head_input"] == "decoder_eos"


def test_prediction_is_the_head_on_the_pooled_encoder_and_never_runs_the_decoder(runs, monkeypatch):
    predictor = PropertyPredictor(runs["encoder_mean"].best_checkpoint)
    model = predictor.model
    ids, _, _ = predictor.task.encode(MOLS[:6])
    ds = predictor.task.build_dataset_for_inference(ids)
    net_input = ds.collater([ds[i] for i in range(len(ds))])["net_input"]
    with torch.no_grad():
        out = model.encoder(net_input["src_tokens"], src_lengths=net_input["src_lengths"])
        pooled = mean_pool(out["encoder_out"][0].transpose(0, 1), net_input["src_tokens"], model.encoder.padding_idx)
        expected = torch.sigmoid(model.classification_heads["smiles_property"](pooled)).numpy()

    def no_decoder(*args, **kwargs):
        raise AssertionError("the decoder ran")

    monkeypatch.setattr(model.decoder, "forward", no_decoder)
    np.testing.assert_allclose(predictor.predict(MOLS[:6]), expected, atol=1e-6)
    # each molecule alone gives the batch's answer: padding is left out of the mean
    np.testing.assert_allclose(predictor.predict(MOLS[5:6]), expected[5:6], atol=1e-6)


def test_a_checkpoint_without_the_record_reads_the_decoder(runs, tmp_path):
    state = safe_load(runs["decoder_eos"].best_checkpoint)
    del state["task_state"]["bartsmiles"]["head_input"]
    torch.save(state, tmp_path / "old.pt")
    old = PropertyPredictor(tmp_path / "old.pt")
    assert old.task.head_input == "decoder_eos"
    np.testing.assert_allclose(old.predict(MOLS[:4]),
                               PropertyPredictor(runs["decoder_eos"].best_checkpoint).predict(MOLS[:4]), atol=1e-6)
    with pytest.raises(ValueError, match="head_input"):
        use_head_input(old.model, "pooler")


def test_attribution_follows_the_head(runs):
    from bartsmiles.attribution import Attributor

    attributor = Attributor(runs["encoder_mean"].best_checkpoint)
    [a] = attributor.attribute("c1ccncc1")
    logit = attributor.predict_outputs(["c1ccncc1"])[0, 0]
    assert a.output == pytest.approx(logit, abs=1e-5)
    assert np.isfinite(a.atom_scores).all() and np.any(a.atom_scores != 0)
    [ig] = Attributor(runs["encoder_mean"].best_checkpoint, method="ig").attribute("c1ccncc1", n_steps=32)
    assert ig.converged


def test_export_refuses_transformers_and_onnx_reads_the_encoder(runs, tmp_path):
    from bartsmiles.model.export import export_hf

    pytest.importorskip("transformers")
    with pytest.raises(ExportError, match="encoder_mean"):
        export_hf(runs["encoder_mean"].best_checkpoint, tmp_path / "hf", verify=False)
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from bartsmiles.model.export import export_onnx

    result = export_onnx(runs["encoder_mean"].best_checkpoint, tmp_path / "onnx")  # verify: parity with fairseq
    assert result["self_check"]["max_abs_diff"]["logits"] <= 1e-4
    assert result["task"]["head_input"] == "encoder_mean"
