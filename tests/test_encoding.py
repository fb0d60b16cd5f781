"""Tests for bartsmiles.core.encoding: streaming file reading and parallel encoding."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from bartsmiles.core.encoding import EncodeStats, count_tokens, encode_many, iter_encoded, iter_smiles_file
from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import TokenizationError

DATA = Path(os.environ.get("BARTSMILES_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
SMILES = ["CCO", "c1ccccc1Cl", "CC(=O)[O-].[Na+]", "N#CC(Br)CO", "C1CC[C@@H](O)C1", "CCCCCCCCCCCC"] * 50
tok = SmilesTokenizer()


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.build(tok.tokenize(s) for s in SMILES)


def test_iter_smiles_file_formats(tmp_path):
    csv_path = tmp_path / "x.csv"
    csv_path.write_text('id,SMILES\r\n1,CCO\r\n2,"C(=O)O"\r\n\r\n')
    assert list(iter_smiles_file(csv_path)) == ["CCO", "C(=O)O"]
    gz = tmp_path / "x.csv.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write("smiles,y\nCCN,1\n")
    assert list(iter_smiles_file(gz, column="smiles")) == ["CCN"]
    with pytest.raises(KeyError, match="no column 'SMILES'.*'smiles'"):
        list(iter_smiles_file(gz))
    smi = tmp_path / "x.smi"
    smi.write_text("CCO name\n\nc1ccccc1\n")
    assert list(iter_smiles_file(smi)) == ["CCO", "c1ccccc1"]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_encode_many_matches_vocab_encode(vocab, n_jobs):
    out, stats = encode_many(SMILES, vocab, n_jobs=n_jobs, chunk_size=7)
    assert out == [vocab.encode(tok.tokenize(s)) for s in SMILES]
    assert isinstance(stats, EncodeStats)
    assert stats.n == len(SMILES) and stats.n_unk == 0 and stats.n_truncated == 0
    assert stats.n_tokens == sum(len(tok.tokenize(s)) for s in SMILES)


def test_as_numpy_and_chunks(vocab):
    arrays, _ = encode_many(SMILES, vocab, n_jobs=1, chunk_size=100, as_numpy=True)
    assert all(a.dtype == np.int32 for a in arrays)
    assert [a.tolist() for a in arrays] == [vocab.encode(tok.tokenize(s)) for s in SMILES]
    chunks = list(iter_encoded(iter(SMILES), vocab, n_jobs=2, chunk_size=128))
    assert [c.start for c in chunks] == [0, 128, 256] and sum(len(c) for c in chunks) == len(SMILES)


def test_truncation_and_unk_counted(vocab):
    smiles = ["CCCCCCCCCCCC", "CO", "[Xe]C"]
    out, stats = encode_many(smiles, vocab, n_jobs=1, max_positions=6, on_overflow="truncate")
    assert out[0] == vocab.encode(tok.tokenize(smiles[0]), max_positions=6, on_overflow="truncate")
    assert len(out[0]) == 6 and out[0][-1] == vocab.eos
    assert stats.n_truncated == 1 and stats.n_unk == 1
    with pytest.raises(ValueError, match=r"row 0 .*max_positions=6"):
        encode_many(smiles, vocab, n_jobs=2, max_positions=6)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_errors_name_row(vocab, n_jobs):
    with pytest.raises(TokenizationError, match=r"row 12: .*character 'X' at index 2") as info:
        encode_many(["CCO"] * 12 + ["CCX"], vocab, n_jobs=n_jobs, chunk_size=5)
    assert info.value.position == 2


def test_count_tokens(vocab):
    counter = count_tokens(SMILES, n_jobs=2, chunk_size=50)
    assert Vocabulary.from_counter(counter) == vocab
    assert counter["C"] == sum(tok.tokenize(s).count("C") for s in SMILES)


def test_moses_head_streams(vocab):
    path = DATA / "pretrain" / "moses" / "test.csv.gz"
    if not path.exists():
        pytest.skip(f"MOSES not found at {path} (set BARTSMILES_DATA)")
    smiles = list(iter_smiles_file(path))
    assert len(smiles) > 100_000
    moses_vocab = Vocabulary.from_counter(count_tokens(smiles[:20_000], n_jobs=1))
    total = EncodeStats()
    for chunk in iter_encoded(smiles[:30_000], moses_vocab, n_jobs=2, chunk_size=10_000):
        total.add(chunk.stats)
    assert total.n == 30_000
