"""Tests for bartsmiles.core.sp_tokenizer with a tiny SentencePiece model trained here."""
from __future__ import annotations

import gzip
import itertools
import pickle
from pathlib import Path

import pytest

from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import TokenizationError

spm = pytest.importorskip("sentencepiece")
import os

from bartsmiles.core.sp_tokenizer import WORD_BOUNDARY, SentencePieceTokenizer  # noqa: E402

DATA = Path(os.environ.get("BARTSMILES_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
FALLBACK = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "CN1CCC[C@H]1c1cccnc1", "O=C(O)c1ccccc1Cl",
            "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "Brc1ccc(F)cc1", "CCN(CC)CC", "N#Cc1ccccc1", "CS(=O)(=O)N"]


def _training_smiles() -> list[str]:
    path = DATA / "pretrain" / "moses" / "train.csv.gz"
    if not path.exists():
        return FALLBACK * 30
    with gzip.open(path, "rt") as handle:
        next(handle)
        return [line.strip() for line in itertools.islice(handle, 400)]


@pytest.fixture(scope="module")
def sp(tmp_path_factory) -> SentencePieceTokenizer:
    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(_training_smiles()) + "\n")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "chem"),
                                   vocab_size=80, character_coverage=1.0, minloglevel=2)
    return SentencePieceTokenizer(folder / "chem.model")


SAMPLES = ["CCO", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "C[C@@H](N)C(=O)[O-].[Na+]", "FC(F)(F)c1ccc(Cl)cc1",
           "C%10CCCCC%10", "[H]OC=O", "CC>>C.C"]


@pytest.mark.parametrize("smiles", SAMPLES)
def test_round_trip(sp, smiles):
    pieces = sp.tokenize(smiles)
    assert pieces[0].startswith(WORD_BOUNDARY)
    assert sp.detokenize(pieces) == smiles
    assert sum(len(p.replace(WORD_BOUNDARY, "")) for p in pieces) == len(smiles)


def test_pieces_are_multi_character(sp):
    pieces = sp.tokenize("CC(C)Cc1ccc(C(C)C(=O)O)cc1")
    assert any(len(p.replace(WORD_BOUNDARY, "")) > 1 for p in pieces)
    assert sp.kind == "sentencepiece"


def test_whitespace_rejected(sp):
    with pytest.raises(TokenizationError, match="index 2"):
        sp.tokenize("CC O")


@pytest.mark.parametrize("smiles", SAMPLES)
def test_alignment_consistent_with_regex(sp, smiles):
    pytest.importorskip("rdkit")
    regex = SmilesTokenizer().align(smiles)
    a = sp.align(smiles)
    assert a.tokens == sp.tokenize(smiles)
    assert len(a.atoms) == len(a.molecule) == len(a.joins) == len(a.tokens)
    assert a.molecules == regex.molecules
    covered = sorted({(m, i) for atoms, m in zip(a.atoms, a.molecule) for i in atoms})
    expected = sorted({(m, i) for atoms, m in zip(regex.atoms, regex.molecule) for i in atoms})
    assert covered == expected  # every atom of every molecule is covered by some piece
    for (start, end), atoms in zip(sp.char_spans(a.tokens), a.atoms):
        text = smiles[start:end]
        if text and set(text) <= set("cnos"):  # a run of aromatic atoms: one atom per letter
            assert len(atoms) == len(text)


def test_piece_covering_several_atoms(sp):
    pytest.importorskip("rdkit")
    a = sp.align("c1ccccc1")
    assert max(len(t) for t in a.atoms) >= 2
    assert sorted(i for t in a.atoms for i in t) == list(range(6))


def test_unknown_piece_maps_to_unk(sp):
    vocab = Vocabulary.build([sp.pieces[3:]])  # the model's own pieces (no <unk>/<s>/</s>)
    n = len(vocab)
    pieces = sp.tokenize("C[Zn]C")  # 'Z' never occurs in the training SMILES
    assert sp.detokenize(pieces) == "C[Zn]C"
    ids = vocab.encode(pieces)
    assert vocab.unk in ids and len(vocab) == n
    known = vocab.encode(sp.tokenize("CCO"))
    assert vocab.unk not in known


def test_pickle_and_dict(sp, tmp_path):
    vocab = Vocabulary.build([sp.pieces[3:]])
    vocab.save(tmp_path / "dict.txt")
    again = pickle.loads(pickle.dumps(SentencePieceTokenizer(Path(sp.model_path), tmp_path / "dict.txt")))
    assert again.tokenize("CCOc1ccccc1") == sp.tokenize("CCOc1ccccc1")
    assert again.vocab == vocab
