"""load_pretrained and PretrainedModel.encode (bartsmiles.model.pretrained)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import make_fixtures  # noqa: E402

import bartsmiles  # noqa: E402
from bartsmiles.core.sp_tokenizer import SentencePieceTokenizer  # noqa: E402
from bartsmiles.core.tokenizer import SmilesTokenizer  # noqa: E402
from bartsmiles.core.vocab import Vocabulary  # noqa: E402
from bartsmiles.errors import InvalidSmilesError, SmilesTooLongError
from bartsmiles.model import resolve  # noqa: E402
from bartsmiles.model.checkpoint import safe_load  # noqa: E402
from bartsmiles.model.pretrained import load_pretrained  # noqa: E402

SMILES = make_fixtures.corpus(12)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return make_fixtures.build_untrained_model(tmp_path_factory.mktemp("api") / "tiny")


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    return load_pretrained(tiny_dir)


@pytest.fixture(scope="session", params=["cfg", "legacy_args"])
def published_dir(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("published") / request.param
    return make_fixtures.build_published_standin(folder, legacy_args=request.param == "legacy_args")


def _direct_encoder(model, smiles: str) -> np.ndarray:
    """The encoder run on one unpadded sequence, independently of encode()."""
    ids = model.vocab.encode(model.tokenizer.tokenize(smiles))
    tokens = torch.tensor([ids])
    with torch.no_grad():
        out = model.model.encoder(tokens, src_lengths=torch.tensor([len(ids)]))
    return out["encoder_out"][0][:, 0].numpy()


# ------------------------------------------------------------------------------------ loading
def test_shipped_model_missing_is_a_clear_error(tmp_path, monkeypatch):
    assert (resolve.shipped_model_dir() / "dict.txt").is_file()
    monkeypatch.setattr(resolve, "shipped_model_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="shipped pretrained model is missing"):
        bartsmiles.load_pretrained()


def test_load_folder(tiny, tiny_dir):
    assert not tiny.model.training
    assert next(tiny.model.parameters()).dtype == torch.float32
    assert isinstance(tiny.tokenizer, SmilesTokenizer)
    assert tiny.vocab == Vocabulary.load(tiny_dir / "dict.txt")
    assert tiny.max_positions == 128 and tiny.embedding_dim == 64
    assert tiny.metadata["arch"] == "bartsmiles_tiny"
    assert tiny.model.encoder.embed_tokens.num_embeddings == len(tiny.vocab) + 1  # + <mask>


def test_load_pt_file_with_dict_beside(tiny, tiny_dir):
    again = load_pretrained(tiny_dir / "model.pt")
    np.testing.assert_array_equal(again.encode(SMILES[:3], progress=False),
                                  tiny.encode(SMILES[:3], progress=False))


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        load_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_pretrained(tmp_path / "nope.pt")


def test_dictionary_from_metadata_or_mismatch(tiny_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_dir / "model.pt", bare / "model.pt")
    assert load_pretrained(bare).vocab == Vocabulary.load(tiny_dir / "dict.txt")
    (bare / "dict.txt").write_text("C 10\nc 5\n")
    with pytest.raises(ValueError, match="does not match"):
        load_pretrained(bare)


# ----------------------------------------------------------------------------------- encoding
def test_encode_matches_the_encoder_in_input_order(tiny):
    features = tiny.encode(SMILES, batch_size=5, progress=False)
    assert features.shape == (len(SMILES), 64) and features.dtype == np.float32
    for i in (0, 5, 11):
        expected = _direct_encoder(tiny, SMILES[i]).mean(0)
        np.testing.assert_allclose(features[i], expected, atol=1e-5, rtol=1e-4)


def test_batching_does_not_change_features(tiny):
    batched = tiny.encode(SMILES, batch_size=4, progress=False)
    single = np.stack([tiny.encode([s], progress=False)[0] for s in SMILES])
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=1e-4)


def test_poolings_and_per_token(tiny):
    result = tiny.encode(SMILES[:4], per_token=True, progress=False)
    assert len(result.per_token) == len(result.tokens) == 4
    for i, s in enumerate(SMILES[:4]):
        tokens = tiny.tokenizer.tokenize(s)
        assert result.tokens[i] == ["<s>", *tokens, "</s>"]
        assert result.per_token[i].shape == (len(tokens) + 2, 64)
        np.testing.assert_allclose(result.pooled[i], result.per_token[i].mean(0), atol=1e-5)
    bos = tiny.encode(SMILES[:4], pooling="bos", progress=False)
    eos = tiny.encode(SMILES[:4], pooling="eos", progress=False)
    np.testing.assert_allclose(bos, np.stack([r[0] for r in result.per_token]), atol=1e-5)
    np.testing.assert_allclose(eos, np.stack([r[-1] for r in result.per_token]), atol=1e-5)
    assert not np.allclose(bos, eos)
    with pytest.raises(ValueError, match="pooling"):
        tiny.encode(SMILES[:1], pooling="max", progress=False)


def test_invalid_smiles_names_the_index(tiny):
    with pytest.raises(InvalidSmilesError, match="index 1") as info:
        tiny.encode(["CCO", "CC O", "c1ccccc1"], progress=False, errors="raise")
    assert info.value.index == 1
    with pytest.raises(InvalidSmilesError, match="index 2"):
        tiny.encode(["CCO", "C", ""], progress=False, errors="raise")
    with pytest.raises(InvalidSmilesError, match="index 1.*not a valid molecule"):
        tiny.encode(["CCO", "C1CC"], progress=False, errors="raise")  # tokenizes, but no molecule
    with pytest.raises(TypeError, match="sequence"):
        tiny.encode("CCO", progress=False)


def test_bad_smiles_give_nan_rows_by_default_and_are_reported(tiny, caplog):
    smiles = ["CCO", "CC O", "C1CC", "", "c1ccccc1"]
    features = tiny.encode(smiles, progress=False)
    assert features.shape == (5, 64)
    report = tiny.last_report
    assert report.n == 5 and [i for i, _ in report.invalid] == [1, 2, 3] and report.truncated == []
    assert "3 SMILES could not be encoded" in caplog.text
    assert np.isnan(features[[1, 2, 3]]).all() and np.isfinite(features[[0, 4]]).all()
    np.testing.assert_allclose(features[[0, 4]], tiny.encode(["CCO", "c1ccccc1"], progress=False), atol=1e-6)
    per_token = tiny.encode(smiles, per_token=True, progress=False)
    assert per_token.per_token[1].shape == (0, 64) and per_token.tokens[1] == []


def test_too_long_is_truncated_by_default_or_refused(tiny, caplog):
    long = "C" * 200
    with pytest.raises(SmilesTooLongError) as info:
        tiny.encode(["CCO", "CCN", long], progress=False, on_overflow="error", errors="raise")
    error = info.value
    assert (error.index, error.length, error.limit) == (2, 202, 128)
    assert "index 2" in str(error) and "202" in str(error) and "128" in str(error)
    result = tiny.encode(["CCO", long], per_token=True, progress=False)
    assert result.per_token[1].shape == (128, 64)
    assert result.tokens[1][-1] == "</s>"
    assert tiny.last_report.truncated == [1] and "1 SMILES longer than 128 positions were truncated" in caplog.text
    refused = tiny.encode(["CCO", long], progress=False, on_overflow="error")
    assert np.isnan(refused[1]).all() and "too long" in tiny.last_report.invalid[0][1]


def test_progress_bar_only_when_asked(tiny, capsys):
    tiny.encode(SMILES[:3], progress=False)
    assert capsys.readouterr().err == ""
    tiny.encode(SMILES[:3], progress=True)
    assert "3/3" in capsys.readouterr().err


# ------------------------------------------------------------------------------ published format
def test_published_bartsmiles_format(published_dir):
    stored = safe_load(published_dir / "checkpoint_last.pt")
    config = stored["cfg"]["model"] if stored["cfg"] else stored["args"]
    assert config.arch == "bart_large" and config.data == make_fixtures.FOREIGN_DATA
    model = load_pretrained(published_dir)
    assert isinstance(model.tokenizer, SentencePieceTokenizer)
    assert model.max_positions == 64  # read from the checkpoint, not assumed
    assert model.embedding_dim == 32
    assert model.metadata == {}
    torch.testing.assert_close(model.model.encoder.embed_tokens.weight,
                               stored["model"]["encoder.embed_tokens.weight"])
    result = model.encode(SMILES[:5], per_token=True, batch_size=2, progress=False)
    assert result.pooled.shape == (5, 32) and np.isfinite(result.pooled).all()
    assert result.tokens[0][1].startswith("\u2581")  # SentencePiece's word-boundary mark
    pieces = model.tokenizer.tokenize(SMILES[0])
    assert result.tokens[0] == ["<s>", *pieces, "</s>"]
    assert model.vocab.unk not in model.vocab.encode(pieces)
    np.testing.assert_allclose(result.pooled[3], _direct_encoder(model, SMILES[3]).mean(0), atol=1e-5)


def test_cli_encode(tiny, tiny_dir, tmp_path):
    from bartsmiles.cli.main import main

    smi = tmp_path / "in.smi"
    smi.write_text("\n".join(SMILES[:4]) + "\n")
    assert main(["encode", str(smi), "-o", str(tmp_path / "f.npy"), "--model", str(tiny_dir),
                 "--no-progress"]) == 0
    expected = tiny.encode(SMILES[:4], progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, atol=1e-6)
    assert main(["encode", str(smi), "-o", str(tmp_path / "f.csv"), "--model", str(tiny_dir),
                 "--pooling", "bos", "--no-progress"]) == 0
    lines = (tmp_path / "f.csv").read_text().splitlines()
    assert lines[0].split(",")[:2] == ["smiles", "f0"] and len(lines) == 5
