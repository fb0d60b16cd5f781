"""Safe loading and self-describing export (bartsmiles.model.checkpoint)."""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import make_fixtures  # noqa: E402

import bartsmiles.tasks  # noqa: E402,F401  (fairseq registries + the Namespace allowlist)
from bartsmiles.core.vocab import Vocabulary  # noqa: E402
from bartsmiles.errors import UnsafeCheckpointError  # noqa: E402
from bartsmiles.model.checkpoint import FORMAT_VERSION, METADATA_KEY, export_model, read_metadata, safe_load  # noqa: E402

MAX_UPDATE = 4


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A real fairseq training checkpoint (optimizer state and all)."""
    return make_fixtures.train_tiny_checkpoint(tmp_path_factory.mktemp("trained"), max_update=MAX_UPDATE,
                                               n_smiles=150)


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory) -> Path:
    return export_model(trained, tmp_path_factory.mktemp("exported") / "model")


@pytest.fixture()
def malicious(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned_marker"
    return make_fixtures.write_malicious_checkpoint(tmp_path / "evil.pt", marker), marker


def _strings(obj):
    """Every string inside a checkpoint (dict keys, values, Namespace attributes)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, argparse.Namespace):
        yield from _strings(vars(obj))


# ------------------------------------------------------------------------------------- safety
def test_safe_load_refuses_malicious_pickle(malicious):
    path, marker = malicious
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_load(path)
    assert not marker.exists(), "the payload ran"
    error = info.value
    assert str(path) in str(error)
    assert any(name.endswith(".system") for name in error.refused), error.refused
    assert "system" in str(error)
    assert isinstance(error, pickle.UnpicklingError)


def test_fairseq_loader_refuses_malicious_pickle(malicious):
    from fairseq import checkpoint_utils

    path, marker = malicious
    with pytest.raises(pickle.UnpicklingError):
        checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert not marker.exists(), "the payload ran through fairseq's loader"


def test_fairseq_loader_reads_real_checkpoint(trained):
    from fairseq import checkpoint_utils

    state = checkpoint_utils.load_checkpoint_to_cpu(str(trained))
    assert state["cfg"].model.arch == "bartsmiles_tiny"
    assert isinstance(state["cfg"].model, argparse.Namespace)
    assert state["last_optimizer_state"] is not None
    assert state["optimizer_history"][-1]["num_updates"] == MAX_UPDATE


def test_safe_load_real_checkpoint_and_missing_file(trained, tmp_path):
    state = safe_load(trained)
    assert {"cfg", "model", "optimizer_history", "extra_state", "last_optimizer_state"} <= set(state)
    assert isinstance(state["model"]["encoder.embed_tokens.weight"], torch.Tensor)
    with pytest.raises(FileNotFoundError, match="nothing_here.pt"):
        safe_load(tmp_path / "nothing_here.pt")


# ------------------------------------------------------------------------------------- export
def test_export_drops_training_state_and_paths(trained, exported):
    out = safe_load(exported)
    assert "last_optimizer_state" not in out
    assert out["cfg"]["common"]["user_dir"] is None
    assert set(out["optimizer_history"][-1]) <= {"criterion_name", "optimizer_name",
                                                 "lr_scheduler_state", "num_updates"}
    assert "metrics" not in out["extra_state"]
    machine_paths = [str(trained.parent.parent), str(Path(bartsmiles.tasks.__file__).parent)]
    leaked = [s for s in _strings(out) if any(p in s for p in machine_paths)]
    assert not leaked, leaked
    assert exported.stat().st_size < trained.stat().st_size / 2


def test_export_weights_fp16_and_dictionary(trained, exported):
    source, out = safe_load(trained), safe_load(exported)
    assert set(out["model"]) == set(source["model"])
    for name, tensor in source["model"].items():
        if tensor.is_floating_point():
            assert out["model"][name].dtype == torch.float16, name
            torch.testing.assert_close(out["model"][name].float(), tensor, atol=2e-3, rtol=1e-3)
    data_dict = trained.parent.parent / "data" / "dict.txt"
    assert (exported.parent / "dict.txt").read_text() == data_dict.read_text()


def test_export_fp32_keeps_weights_exactly(trained, tmp_path):
    out = safe_load(export_model(trained, tmp_path / "fp32", fp16=False))
    for name, tensor in safe_load(trained)["model"].items():
        assert torch.equal(out["model"][name], tensor), name


def test_metadata_describes_the_model(trained, exported):
    meta = read_metadata(exported.parent)
    assert meta == read_metadata(exported) == safe_load(exported)[METADATA_KEY]
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["arch"] == "bartsmiles_tiny"
    shape = bartsmiles.tasks.architectures.SHAPES["bartsmiles_tiny"]
    assert meta["architecture"] == {"encoder_layers": shape.layers, "decoder_layers": shape.layers,
                                    "dim": shape.dim, "heads": shape.heads, "ffn": shape.ffn,
                                    "positions": shape.positions}
    assert meta["tokenizer"] == "regex"
    assert meta["vocabulary"] == Vocabulary.load(exported.parent / "dict.txt").symbols
    assert meta["label_names"] is None and meta["task_type"] is None and meta["target_scaling"] is None
    assert set(meta["versions"]) >= {"bartsmiles", "fairseq", "torch"}
    assert meta["versions"]["fairseq"].startswith("0.12")
    assert meta["num_updates"] == MAX_UPDATE
    assert meta["created"][:2] == "20"


def test_extra_metadata_fills_fields(trained, tmp_path):
    path = export_model(trained, tmp_path / "ft", extra_metadata={
        "label_names": ["p_np"], "task_type": "classification",
        "target_scaling": {"min": 0.0, "max": 1.0}, "dataset": "bbbp"})
    meta = read_metadata(path)
    assert meta["label_names"] == ["p_np"] and meta["task_type"] == "classification"
    assert meta["target_scaling"] == {"min": 0.0, "max": 1.0}
    assert meta["extra"] == {"dataset": "bbbp"}


def test_read_metadata_errors(trained, exported, tmp_path):
    with pytest.raises(KeyError, match="export_model"):
        read_metadata(trained)
    state = safe_load(exported)
    state[METADATA_KEY]["format_version"] = 99
    torch.save(state, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="format_version 99"):
        read_metadata(tmp_path / "future.pt")


def test_export_needs_a_dictionary(trained, tmp_path):
    state = safe_load(trained)
    state["cfg"]["task"]["data"] = str(tmp_path / "gone")
    torch.save(state, tmp_path / "orphan.pt")
    with pytest.raises(FileNotFoundError, match="dict_path"):
        export_model(tmp_path / "orphan.pt", tmp_path / "out")


def test_fairseq_loads_the_export_and_api_round_trip(trained, exported):
    """fairseq's own loader builds the exported model; load_pretrained encodes with it."""
    from fairseq import checkpoint_utils

    from bartsmiles.model.pretrained import load_pretrained

    models, cfg, _task = checkpoint_utils.load_model_ensemble_and_task(
        [str(exported)], arg_overrides={"data": str(exported.parent)})
    assert cfg.model.max_source_positions == 128
    model = load_pretrained(exported.parent)
    assert model.metadata["num_updates"] == MAX_UPDATE
    fairseq_weight = models[0].encoder.embed_tokens.weight.float()
    torch.testing.assert_close(model.model.encoder.embed_tokens.weight, fairseq_weight)
    features = model.encode(make_fixtures.corpus(5), progress=False)
    assert features.shape == (5, 64) and np.isfinite(features).all()


def test_safe_load_keeps_the_global_allowlist(exported):
    """torch's safe_globals context drops on exit what it was given; safe_load must not
    remove the Namespace allowlist that ``import bartsmiles.tasks`` installed."""
    assert argparse.Namespace in torch.serialization.get_safe_globals()
    safe_load(exported)
    assert argparse.Namespace in torch.serialization.get_safe_globals()
