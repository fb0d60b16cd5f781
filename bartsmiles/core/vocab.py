"""Token vocabulary in fairseq ``dict.txt`` format, with encode/decode.

Index space: **token id** – the integer fairseq uses for a symbol. The ids
mirror ``fairseq.data.Dictionary`` exactly: ``<s>=0, <pad>=1, </s>=2, <unk>=3``,
then the symbols of ``dict.txt`` in file order (4, 5, ...).

This module is *core*: no torch, no fairseq, no RDKit, no pandas.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from bartsmiles.errors import SequenceTooLongError

__all__ = ["Vocabulary", "SPECIAL_SYMBOLS"]

#: fairseq's special symbols, in the order ``Dictionary.__init__`` adds them.
SPECIAL_SYMBOLS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>")
_OVERWRITE_FLAG = "#fairseq:overwrite"


@dataclass
class Vocabulary:
    """Mirrors fairseq.data.Dictionary indices exactly: <s>=0, <pad>=1, </s>=2, <unk>=3, then dict.txt symbols in file order.

    ``symbols[i]`` is the symbol of token id ``i`` and ``counts[i]`` its count
    (specials have count 0 here; fairseq gives them 1, which is not saved).
    Looking up an unknown token returns :attr:`unk` and never grows the vocabulary;
    the only way to add a symbol is the explicit :meth:`add_symbol` (as fairseq
    tasks do for ``<mask>``).
    """

    symbols: list[str] = field(default_factory=lambda: list(SPECIAL_SYMBOLS))
    counts: list[int] = field(default_factory=lambda: [0] * len(SPECIAL_SYMBOLS))
    bos: int = 0
    pad: int = 1
    eos: int = 2
    unk: int = 3

    def __post_init__(self) -> None:
        if list(self.symbols[:4]) != list(SPECIAL_SYMBOLS):
            raise ValueError(f"first symbols must be {SPECIAL_SYMBOLS}, got {self.symbols[:4]}")
        if len(self.counts) != len(self.symbols):
            raise ValueError("symbols and counts differ in length")
        self._indices: dict[str, int] = {}
        for i, symbol in enumerate(self.symbols):
            if symbol in self._indices:
                raise ValueError(f"duplicate symbol {symbol!r} at ids {self._indices[symbol]} and {i}")
            self._indices[symbol] = i

    # ------------------------------------------------------------------ building
    @classmethod
    def from_counter(cls, counter: Counter | dict, min_count: int = 1) -> "Vocabulary":
        """Vocabulary of the symbols with count >= ``min_count``, by count desc then symbol."""
        clash = sorted(set(counter) & set(SPECIAL_SYMBOLS))
        if clash:
            raise ValueError(f"token lists contain special symbols {clash}")
        kept = sorted(((c, s) for s, c in counter.items() if c >= min_count),
                      key=lambda cs: (-cs[0], cs[1]))
        vocab = cls()
        for count, symbol in kept:
            vocab.add_symbol(symbol, count)
        return vocab

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_count: int = 1) -> "Vocabulary":
        """Count tokens over ``token_lists``; symbols sorted by count desc, then token."""
        counter: Counter = Counter()
        for tokens in token_lists:
            counter.update(tokens)
        return cls.from_counter(counter, min_count)

    def add_symbol(self, symbol: str, count: int = 1) -> int:
        """Explicitly add ``symbol`` (or add to its count); return its id."""
        if not symbol or any(ch.isspace() for ch in symbol):
            raise ValueError(f"symbol {symbol!r} is empty or contains whitespace")
        if symbol in self._indices:
            i = self._indices[symbol]
            self.counts[i] += count
            return i
        self._indices[symbol] = len(self.symbols)
        self.symbols.append(symbol)
        self.counts.append(count)
        return len(self.symbols) - 1

    # --------------------------------------------------------------------- files
    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a fairseq ``dict.txt`` (``<token> <count> [#fairseq:overwrite]`` per line)."""
        vocab = cls()
        with open(path, encoding="utf-8") as handle:
            for lineno, raw in enumerate(handle, start=1):
                line = raw.rstrip()
                if not line:
                    continue
                overwrite = False
                if line.endswith(" " + _OVERWRITE_FLAG):
                    overwrite = True
                    line = line[: -len(_OVERWRITE_FLAG) - 1]
                symbol, sep, count = line.rpartition(" ")
                if not sep or not symbol:
                    raise ValueError(f"{path}:{lineno}: expected '<token> <count>', got {raw!r}")
                try:
                    n = int(count)
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: count {count!r} is not an integer") from None
                if symbol in vocab._indices and not overwrite:
                    raise ValueError(f"{path}:{lineno}: duplicate symbol {symbol!r} "
                                     f"(add '{_OVERWRITE_FLAG}' to allow it)")
                if overwrite and symbol in vocab._indices:
                    vocab.counts[vocab._indices[symbol]] = n
                else:
                    vocab._indices[symbol] = len(vocab.symbols)
                    vocab.symbols.append(symbol)
                    vocab.counts.append(n)
        return vocab

    def save(self, path: str | os.PathLike) -> None:
        """Write fairseq ``dict.txt``: ``"<token> <count>"`` per line, specials not written."""
        with open(path, "w", encoding="utf-8") as handle:
            for symbol, count in zip(self.symbols[4:], self.counts[4:]):
                handle.write(f"{symbol} {count}\n")

    # ------------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, token: str) -> bool:
        return token in self._indices

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.symbols == other.symbols

    def index(self, token: str) -> int:
        """Token id of ``token``; :attr:`unk` if unknown (the vocabulary is not changed)."""
        return self._indices.get(token, self.unk)

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset((self.bos, self.pad, self.eos))

    def encode(self, tokens: Sequence[str], *, add_bos: bool = True, add_eos: bool = True,
               max_positions: int | None = None, on_overflow: str = "error") -> list[int]:
        """Token ids for ``tokens``, with ``<s>``/``</s>`` added as asked.

        ``max_positions`` counts bos/eos too. Over the limit, ``on_overflow="error"``
        raises :class:`SequenceTooLongError`; ``"truncate"`` keeps the first
        ``max_positions - 1`` ids and ends with eos (or simply the first
        ``max_positions`` ids when ``add_eos`` is false).
        """
        get, unk = self._indices.get, self.unk
        ids = [get(t, unk) for t in tokens]
        if add_bos:
            ids.insert(0, self.bos)
        if add_eos:
            ids.append(self.eos)
        if max_positions is not None and len(ids) > max_positions:
            ids = self._overflow(ids, max_positions, on_overflow, add_eos)
        return ids

    def _overflow(self, ids: list[int], limit: int, on_overflow: str, add_eos: bool) -> list[int]:
        if on_overflow == "error":
            raise SequenceTooLongError(len(ids), limit)
        if on_overflow != "truncate":
            raise ValueError(f"on_overflow must be 'error' or 'truncate', got {on_overflow!r}")
        if limit < 2:
            raise ValueError(f"max_positions={limit} leaves no room for a token")
        return ids[: limit - 1] + [self.eos] if add_eos else ids[:limit]

    def decode(self, ids: Sequence[int], *, strip_special: bool = True) -> list[str]:
        """Symbols for ``ids``; ``strip_special`` drops ``<s>``, ``<pad>`` and ``</s>``
        (``<unk>`` stays: it stands for content). Raises ``IndexError`` naming an id out of range."""
        symbols, n = self.symbols, len(self.symbols)
        skip = self.special_ids if strip_special else frozenset()
        out = []
        for position, i in enumerate(ids):
            i = int(i)
            if not 0 <= i < n:
                raise IndexError(f"token id {i} at position {position} is outside the "
                                 f"vocabulary of {n} symbols")
            if i not in skip:
                out.append(symbols[i])
        return out
