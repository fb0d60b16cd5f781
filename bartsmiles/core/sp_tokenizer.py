"""The published BARTSmiles tokenizer: a SentencePiece model (``chem.model``).

BARTSmiles encodes SMILES with SentencePiece pieces such as ``'▁C'``, ``'(='`` or
``'ccccc'``, then maps pieces to ids with a fairseq ``dict.txt`` (see
:class:`bartsmiles.core.vocab.Vocabulary`). This class exposes the same interface as
:class:`bartsmiles.core.tokenizer.SmilesTokenizer`.

Index spaces: **character index** in the SMILES; **piece index** (the token index
of this tokenizer); **atom index** and **molecule index** as defined in
:mod:`bartsmiles.core.tokenizer`. ``'▁'`` (U+2581) is SentencePiece's word-boundary
mark: SMILES contain no spaces, so it only appears as the dummy prefix of the
first piece and covers no character.

This module is *core*: no torch, no fairseq (sentencepiece is imported lazily).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import sentencepiece as spm

from bartsmiles.core.tokenizer import SmilesTokenizer, TokenAlignment
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import TokenizationError

__all__ = ["SentencePieceTokenizer", "WORD_BOUNDARY"]

#: SentencePiece's whitespace mark.
WORD_BOUNDARY = "\u2581"


def _load_processor(model_proto: bytes) -> Any:
    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(model_proto)
    return processor


class SentencePieceTokenizer:
    """SentencePiece tokenizer with exact round trip and RDKit alignment.

    ``model_path`` is the SentencePiece model; ``dict_path`` (optional) a fairseq
    ``dict.txt`` loaded into :attr:`vocab`. Picklable (the model travels as bytes),
    so it can be used by :mod:`bartsmiles.core.encoding` workers.
    """

    kind = "sentencepiece"

    def __init__(self, model_path: str | os.PathLike,
                 dict_path: str | os.PathLike | None = None) -> None:
        self.model_path = os.fspath(model_path)
        with open(self.model_path, "rb") as handle:
            self._model_proto = handle.read()
        self._sp = _load_processor(self._model_proto)
        self.vocab: Vocabulary | None = Vocabulary.load(dict_path) if dict_path else None
        self._regex = SmilesTokenizer()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_sp"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sp = _load_processor(self._model_proto)

    @property
    def pieces(self) -> list[str]:
        """All pieces of the model, by SentencePiece id (control symbols included)."""
        return [self._sp.IdToPiece(i) for i in range(self._sp.GetPieceSize())]

    def tokenize(self, smiles: str) -> list[str]:
        """Pieces of ``smiles``; :class:`TokenizationError` if they do not spell it exactly.

        Characters the model does not know come back as their own piece (which a
        :class:`Vocabulary` built from the model maps to unk).
        """
        for position, char in enumerate(smiles):
            if char.isspace() or char == WORD_BOUNDARY:
                raise TokenizationError(
                    f"cannot tokenize SMILES {smiles!r}: character {char!r} at index "
                    f"{position}: whitespace is not part of SMILES (strip it first)",
                    smiles, position, char)
        pieces = self._sp.EncodeAsPieces(smiles)
        spelled = "".join(pieces).replace(WORD_BOUNDARY, "")
        if spelled != smiles:
            position = next((i for i, (a, b) in enumerate(zip(spelled, smiles)) if a != b),
                            min(len(spelled), len(smiles)))
            char = smiles[position] if position < len(smiles) else ""
            raise TokenizationError(
                f"SentencePiece does not round-trip SMILES {smiles!r}: pieces differ from "
                f"the input at character index {position} ({char!r}); the model "
                f"normalizes this character", smiles, position, char)
        return pieces

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Inverse of :meth:`tokenize`: concatenate, dropping the ``'▁'`` marks."""
        return "".join(tokens).replace(WORD_BOUNDARY, "")

    @staticmethod
    def is_atom_token(token: str) -> bool:
        """True if the piece contains the start of an atom (a piece like ``'(='`` does not)."""
        return any(SmilesTokenizer.is_atom_token(ch) for ch in token)

    def char_spans(self, tokens: Sequence[str]) -> list[tuple[int, int]]:
        """Per piece, the half-open character span ``[start, end)`` it covers."""
        spans, position = [], 0
        for piece in tokens:
            length = len(piece.replace(WORD_BOUNDARY, ""))
            spans.append((position, position + length))
            position += length
        return spans

    def align(self, smiles: str) -> TokenAlignment:
        """Per-piece alignment built from character spans and the regex alignment.

        A piece gets every atom (and every join) of each regex token whose
        characters it overlaps, in order, without repeats; a regex token split
        across pieces (e.g. ``'C' + 'l'``) lends its atom to each of them.
        ``molecule`` is the molecule of the first overlapped token belonging to a
        molecule, else -1 (a piece made only of separators). ``joins`` leaves out
        the piece's own atoms.
        """
        pieces = self.tokenize(smiles)
        regex = self._regex.align(smiles)
        owner: list[int] = []  # character index -> regex token index
        for t, token in enumerate(regex.tokens):
            owner.extend([t] * len(token))
        atoms, molecule, joins = [], [], []
        for start, end in self.char_spans(pieces):
            covered = sorted(set(owner[start:end]))
            own = _unique(a for t in covered for a in regex.atoms[t])
            atoms.append(own)
            molecule.append(next((regex.molecule[t] for t in covered
                                  if regex.molecule[t] >= 0), -1))
            joins.append(tuple(a for a in _unique(a for t in covered for a in regex.joins[t])
                               if a not in own))
        return TokenAlignment(pieces, atoms, molecule, list(regex.molecules), joins)


def _unique(values) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    for value in values:
        seen.setdefault(value, None)
    return tuple(seen)
