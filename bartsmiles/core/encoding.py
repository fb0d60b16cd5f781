"""Parallel, streaming tokenize + encode of large SMILES corpora.

Index spaces: **row index** – position of a SMILES in the input iterable (0-based,
header not counted); **token id** – see :mod:`bartsmiles.core.vocab`.

The input is cut into chunks of ``chunk_size`` SMILES; each chunk is tokenized
and encoded in a worker process (``multiprocessing``) and comes back as one flat
``int32`` array plus per-row lengths, which is cheap to send between processes.
:func:`iter_encoded` yields these chunks in input order, so a corpus never has
to sit in memory at once; :func:`encode_many` collects them.

This module is *core*: no torch, no fairseq, no RDKit, no pandas.
"""
from __future__ import annotations

import csv
import gzip
import itertools
import multiprocessing
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import DataError, MissingColumnError, SequenceTooLongError, TokenizationError

__all__ = ["EncodeStats", "EncodedChunk", "iter_smiles_file", "iter_encoded",
           "encode_many", "count_tokens", "resolve_n_jobs"]


@dataclass
class EncodeStats:
    """Totals of an encoding run.

    ``n`` SMILES, ``n_tokens`` tokens (before bos/eos and before truncation),
    ``n_unk`` ids equal to unk, ``n_truncated`` SMILES cut to ``max_positions``,
    ``seconds`` wall time.
    """

    n: int = 0
    n_tokens: int = 0
    n_unk: int = 0
    n_truncated: int = 0
    seconds: float = 0.0

    def add(self, other: "EncodeStats") -> None:
        self.n += other.n
        self.n_tokens += other.n_tokens
        self.n_unk += other.n_unk
        self.n_truncated += other.n_truncated


@dataclass
class EncodedChunk:
    """``chunk_size`` consecutive encoded SMILES, starting at row index ``start``.

    ``ids`` is flat (int32); row ``start + i`` is ``ids[offsets[i]:offsets[i+1]]``.
    """

    start: int
    ids: np.ndarray
    offsets: np.ndarray
    stats: EncodeStats

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self) -> list[np.ndarray]:
        """Per-row arrays (views into :attr:`ids`)."""
        return np.split(self.ids, self.offsets[1:-1])

    def lists(self) -> list[list[int]]:
        """Per-row lists of ints."""
        flat = self.ids.tolist()
        o = self.offsets.tolist()
        return [flat[o[i]:o[i + 1]] for i in range(len(o) - 1)]


def resolve_n_jobs(n_jobs: int) -> int:
    """0 (or negative) means all cores; otherwise the number given."""
    return n_jobs if n_jobs > 0 else (os.cpu_count() or 1)


def iter_smiles_file(path: str | os.PathLike, column: str = "SMILES") -> Iterator[str]:
    """Stream SMILES from ``path`` (no pandas).

    ``.csv``/``.csv.gz``: header row, values from ``column`` (:class:`MissingColumnError` naming
    the available columns if absent). Anything else (``.smi``, ``.txt``, optionally ``.gz``): one
    SMILES per line, first whitespace-separated field; blank lines skipped. A file that is not
    UTF-8 text is a :class:`DataError` naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SMILES file not found: {path}")
    name = path.name.lower()
    opener = gzip.open if name.endswith(".gz") else open
    base = name[:-3] if name.endswith(".gz") else name
    line = 1
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            if base.endswith(".csv"):
                reader = csv.reader(handle)
                header = next(reader, None)
                if header is None:
                    return
                if column not in header:
                    raise MissingColumnError(f"{path}: no column {column!r}; columns are {header}")
                col = header.index(column)
                for row in reader:
                    line = reader.line_num
                    if row:
                        yield row[col]
            else:
                for text in handle:
                    fields = text.split()
                    if fields:
                        yield fields[0]
                    line += 1
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: line {line + 1 if base.endswith('.csv') else line} (or near it) is not UTF-8 "
                        f"text ({exc.reason}); save the file as UTF-8") from None


# ----------------------------------------------------------------- worker side
_WORKER: dict[str, Any] = {}


def _init_worker(vocab: Vocabulary, tokenizer: Any, max_positions: int | None,
                 on_overflow: str, add_bos: bool, add_eos: bool) -> None:
    _WORKER.update(vocab=vocab, tokenizer=tokenizer, max_positions=max_positions,
                   on_overflow=on_overflow, add_bos=add_bos, add_eos=add_eos)


def _encode_chunk(job: tuple[int, list[str]]) -> EncodedChunk:
    """Tokenize + encode one chunk using the worker's settings (row-aware errors)."""
    start, smiles = job
    w = _WORKER
    vocab: Vocabulary = w["vocab"]
    tokenize = w["tokenizer"].tokenize
    get, unk, bos, eos = vocab._indices.get, vocab.unk, vocab.bos, vocab.eos
    limit, add_bos, add_eos = w["max_positions"], w["add_bos"], w["add_eos"]
    head = [bos] if add_bos else []
    tail = [eos] if add_eos else []
    flat: list[int] = []
    extend = flat.extend
    lengths = [0] * len(smiles)
    n_tokens = n_truncated = 0
    for i, s in enumerate(smiles):
        try:
            tokens = tokenize(s)
        except TokenizationError as err:
            raise TokenizationError(f"row {start + i}: {err}", err.smiles, err.position,
                                    err.char) from None
        ids = head + [get(t, unk) for t in tokens] + tail
        n_tokens += len(tokens)
        if limit is not None and len(ids) > limit:
            try:
                ids = vocab._overflow(ids, limit, w["on_overflow"], add_eos)
            except SequenceTooLongError as err:
                raise ValueError(f"row {start + i} ({s!r}): {err}") from err
            n_truncated += 1
        extend(ids)
        lengths[i] = len(ids)
    arr = np.array(flat, dtype=np.int32)
    offsets = np.zeros(len(smiles) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    stats = EncodeStats(len(smiles), n_tokens, int(np.count_nonzero(arr == unk)), n_truncated)
    return EncodedChunk(start, arr, offsets, stats)


def _count_chunk(job: tuple[int, list[str]]) -> Counter:
    start, smiles = job
    tokenize = _WORKER["tokenizer"].tokenize
    counter: Counter = Counter()
    for i, s in enumerate(smiles):
        try:
            counter.update(tokenize(s))
        except TokenizationError as err:
            raise TokenizationError(f"row {start + i}: {err}", err.smiles, err.position,
                                    err.char) from None
    return counter


def _chunks(smiles: Iterable[str], chunk_size: int) -> Iterator[tuple[int, list[str]]]:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    it = iter(smiles)
    start = 0
    while True:
        chunk = list(itertools.islice(it, chunk_size))
        if not chunk:
            return
        yield start, chunk
        start += len(chunk)


def _run(func, jobs: Iterator, n_jobs: int, initargs: tuple) -> Iterator:
    """Apply ``func`` to ``jobs`` in order, in-process for one job or in a pool."""
    n_jobs = resolve_n_jobs(n_jobs)
    if n_jobs == 1:
        _init_worker(*initargs)
        yield from map(func, jobs)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ctx.Pool(n_jobs, initializer=_init_worker, initargs=initargs) as pool:
        # imap pulls jobs lazily (bounded by the pool's task queue), keeping input order.
        yield from pool.imap(func, jobs)


# ------------------------------------------------------------------ public API
def iter_encoded(smiles: Iterable[str], vocab: Vocabulary, tokenizer: Any = None, *,
                 n_jobs: int = 0, chunk_size: int = 10000, max_positions: int | None = None,
                 on_overflow: str = "error", add_bos: bool = True,
                 add_eos: bool = True) -> Iterator[EncodedChunk]:
    """Yield :class:`EncodedChunk` s in input order (streaming; see module doc).

    ``tokenizer`` defaults to :class:`~bartsmiles.core.tokenizer.SmilesTokenizer`; it is
    sent to the workers, so it must be picklable. Errors name the row index.
    """
    if on_overflow not in ("error", "truncate"):
        raise ValueError(f"on_overflow must be 'error' or 'truncate', got {on_overflow!r}")
    tokenizer = tokenizer if tokenizer is not None else SmilesTokenizer()
    initargs = (vocab, tokenizer, max_positions, on_overflow, add_bos, add_eos)
    yield from _run(_encode_chunk, _chunks(smiles, chunk_size), n_jobs, initargs)


def encode_many(smiles: Iterable[str], vocab: Vocabulary, tokenizer: Any = None, *,
                n_jobs: int = 0, chunk_size: int = 10000, max_positions: int | None = None,
                on_overflow: str = "error", as_numpy: bool = False,
                ) -> tuple[list[list[int]] | list[np.ndarray], EncodeStats]:
    """Encode all of ``smiles``; returns (per-row ids, :class:`EncodeStats`).

    Rows are lists of ints, or int32 arrays with ``as_numpy=True`` (less memory).
    ``n_jobs=0`` uses all cores. With ``on_overflow="truncate"`` the number of cut
    rows is ``stats.n_truncated``.
    """
    t0 = time.perf_counter()
    stats = EncodeStats()
    out: list = []
    for chunk in iter_encoded(smiles, vocab, tokenizer, n_jobs=n_jobs, chunk_size=chunk_size,
                              max_positions=max_positions, on_overflow=on_overflow):
        out.extend(chunk.rows() if as_numpy else chunk.lists())
        stats.add(chunk.stats)
    stats.seconds = time.perf_counter() - t0
    return out, stats


def count_tokens(smiles: Iterable[str], n_jobs: int = 0, tokenizer: Any = None, *,
                 chunk_size: int = 10000) -> Counter:
    """Token counts over ``smiles`` (parallel), e.g. for :meth:`Vocabulary.from_counter`."""
    tokenizer = tokenizer if tokenizer is not None else SmilesTokenizer()
    total: Counter = Counter()
    initargs = (Vocabulary(), tokenizer, None, "error", True, True)
    for counter in _run(_count_chunk, _chunks(smiles, chunk_size), n_jobs, initargs):
        total.update(counter)
    return total
