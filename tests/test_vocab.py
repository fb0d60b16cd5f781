"""Tests for bartsmiles.core.vocab: fairseq-compatible ids, encode/decode, overflow policy."""
from __future__ import annotations

import pytest

from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import SequenceTooLongError

SMILES = ["CCO", "c1ccccc1Cl", "CC(=O)[O-].[Na+]", "N#CC(Br)CO", "C1CC[C@@H](O)C1"]


@pytest.fixture()
def vocab() -> Vocabulary:
    tok = SmilesTokenizer()
    return Vocabulary.build(tok.tokenize(s) for s in SMILES)


def test_specials_and_order(vocab):
    assert (vocab.bos, vocab.pad, vocab.eos, vocab.unk) == (0, 1, 2, 3)
    assert vocab.symbols[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    counts = vocab.counts[4:]
    assert counts == sorted(counts, reverse=True)
    assert vocab.symbols[4] == "C"  # most frequent
    keyed = list(zip([-c for c in counts], vocab.symbols[4:]))
    assert keyed == sorted(keyed)  # ties broken by token


def test_min_count_and_specials_rejected():
    v = Vocabulary.build([["C", "C", "O"], ["C", "N"]], min_count=2)
    assert v.symbols[4:] == ["C"]
    with pytest.raises(ValueError, match="<unk>"):
        Vocabulary.build([["C", "<unk>"]])


def test_save_load_round_trip(vocab, tmp_path):
    path = tmp_path / "dict.txt"
    vocab.save(path)
    lines = path.read_text().splitlines()
    assert len(lines) == len(vocab) - 4 and lines[0] == f"C {vocab.counts[4]}"
    assert Vocabulary.load(path) == vocab


def test_matches_fairseq_dictionary(vocab, tmp_path):
    data = pytest.importorskip("fairseq.data")
    path = tmp_path / "dict.txt"
    vocab.save(path)
    fs = data.Dictionary.load(str(path))
    assert len(fs) == len(vocab)
    assert (fs.bos(), fs.pad(), fs.eos(), fs.unk()) == (vocab.bos, vocab.pad, vocab.eos, vocab.unk)
    for i, symbol in enumerate(vocab.symbols):
        assert fs.index(symbol) == vocab.index(symbol) == i
        assert fs[i] == symbol
    assert fs.index("[Xe]") == vocab.index("[Xe]") == vocab.unk


def test_unknown_maps_to_unk_and_never_grows(vocab):
    n = len(vocab)
    assert vocab.index("[U+6]") == vocab.unk
    ids = vocab.encode(["C", "[U+6]", "O"])
    assert ids == [0, vocab.index("C"), vocab.unk, vocab.index("O"), 2]
    assert len(vocab) == n and "[U+6]" not in vocab
    assert vocab.decode(ids) == ["C", "<unk>", "O"]


def test_encode_decode_flags(vocab):
    tokens = SmilesTokenizer().tokenize("CCO")
    assert vocab.encode(tokens, add_bos=False, add_eos=False) == [vocab.index(t) for t in tokens]
    ids = vocab.encode(tokens)
    assert ids[0] == vocab.bos and ids[-1] == vocab.eos
    assert vocab.decode(ids) == tokens
    assert vocab.decode(ids + [vocab.pad], strip_special=False) == ["<s>", *tokens, "</s>", "<pad>"]
    with pytest.raises(IndexError, match="token id 999 at position 1"):
        vocab.decode([4, 999])


def test_overflow_policy(vocab):
    tokens = list("CCCCCC")  # 8 ids with bos/eos
    assert len(vocab.encode(tokens, max_positions=8)) == 8
    with pytest.raises(SequenceTooLongError, match="8 .*max_positions=7") as info:
        vocab.encode(tokens, max_positions=7)
    assert (info.value.length, info.value.limit) == (8, 7)
    cut = vocab.encode(tokens, max_positions=5, on_overflow="truncate")
    c = vocab.index("C")
    assert cut == [vocab.bos, c, c, c, vocab.eos]
    with pytest.raises(ValueError, match="on_overflow"):
        vocab.encode(tokens, max_positions=5, on_overflow="drop")


def test_load_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("C 3\nC 2\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: duplicate symbol 'C'"):
        Vocabulary.load(bad)
    bad.write_text("C three\n")
    with pytest.raises(ValueError, match=r":1: count 'three'"):
        Vocabulary.load(bad)
    ok = tmp_path / "ok.txt"
    ok.write_text("C 3\nC 5 #fairseq:overwrite\n<mask> 1\n")
    v = Vocabulary.load(ok)
    assert v.symbols[4:] == ["C", "<mask>"] and v.counts[4] == 5


def test_add_symbol_is_explicit(vocab):
    n = len(vocab)
    assert vocab.add_symbol("<mask>") == n and len(vocab) == n + 1
    with pytest.raises(ValueError, match="whitespace"):
        vocab.add_symbol("a b")
