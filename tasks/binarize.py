"""SMILES corpora -> fairseq's binarized (mmap) datasets, streamed, parallel and sharded.

Input files (each may be gzipped):

* ``.csv``: a header row; SMILES are read from ``column``;
* anything else (``.smi``, ``.txt``): one entry per line.  A line holding a reaction
  (``A.B>>C`` or USPTO's ``C >> A.B``) contributes each of its molecules separately, which is how
  reaction data adds charged and unusual molecules to a pretraining corpus.

Output, for ``dest`` and ``num_shards=1``::

    dest/dict.txt  dest/train.bin  dest/train.idx  dest/valid.bin  dest/valid.idx  dest/preprocess.json

With ``num_shards=K`` the training rows go round-robin, row by row, into ``dest/shard<k>/``;
every shard gets the dictionary and the whole validation split, and fairseq is given the data
path ``dest/shard0:dest/shard1:...`` (it visits one shard per epoch).  Nothing is held in memory
beyond a chunk per worker, so corpora larger than memory work.

Each stored row is the token ids followed by ``</s>`` (fairseq's convention; tasks add ``<s>``).
Rows longer than ``max_positions`` (``<s>`` and ``</s>`` included) are cut, and the count is
reported in ``preprocess.json``.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from fairseq.data import indexed_dataset

from bartsmiles.core.encoding import EncodeStats, iter_encoded, iter_smiles_file
from bartsmiles.core.vocab import Vocabulary

from .architectures import MAX_POSITIONS


@dataclass
class SplitReport:
    split: str
    files: list[str]
    rows: int = 0
    tokens: int = 0
    unk: int = 0
    truncated: int = 0
    seconds: float = 0.0

    @property
    def unk_rate(self) -> float:
        return self.unk / self.tokens if self.tokens else 0.0


@dataclass
class PreprocessReport:
    dest: str
    data_path: str  #: the value to give fairseq as DATA (colon-separated when sharded)
    vocab_size: int
    splits: list[SplitReport] = field(default_factory=list)

    def to_json(self) -> dict:
        out = asdict(self)
        for s, rep in zip(out["splits"], self.splits):
            s["unk_rate"] = rep.unk_rate
        return out


def iter_corpus_file(path: str | os.PathLike, column: str = "SMILES") -> Iterator[str]:
    """Yield the SMILES of one corpus file (see the module docstring for the formats)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus file not found: {path}")
    base = path.name.lower().removesuffix(".gz")
    if base.endswith(".csv"):
        yield from iter_smiles_file(path, column=column)
        return
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            if ">" in line:
                for side in line.replace(" ", "").split(">"):
                    yield from (m for m in side.split(".") if m)
            else:
                yield line.split()[0]


def iter_corpus(files: Sequence[str | os.PathLike], column: str = "SMILES") -> Iterator[str]:
    for f in files:
        yield from iter_corpus_file(f, column)


def _write_split(
    smiles: Iterable[str],
    vocab: Vocabulary,
    prefixes: list[str],
    *,
    n_jobs: int,
    chunk_size: int,
    max_positions: int,
) -> EncodeStats:
    """Encode ``smiles`` and append row i to ``prefixes[i % len(prefixes)]``."""
    builders = [
        indexed_dataset.make_builder(indexed_dataset.data_file_path(p), "mmap", vocab_size=len(vocab) + 1)
        for p in prefixes
    ]
    stats = EncodeStats()
    t0 = time.perf_counter()
    chunks = iter_encoded(
        smiles,
        vocab,
        n_jobs=n_jobs,
        chunk_size=chunk_size,
        max_positions=max_positions - 1,  # no <s> stored: the task prepends it
        on_overflow="truncate",
        add_bos=False,
        add_eos=True,
    )
    for chunk in chunks:
        # row by row (not chunk by chunk): a corpus smaller than num_shards * chunk_size must not
        # leave a shard empty (fairseq cannot even open an empty .bin)
        for j, row in enumerate(chunk.rows()):
            builders[(chunk.start + j) % len(builders)].add_item(torch.from_numpy(row))
        stats.add(chunk.stats)
    for p, b in zip(prefixes, builders):
        b.finalize(indexed_dataset.index_file_path(p))
    stats.seconds = time.perf_counter() - t0
    return stats


def preprocess(
    train: Sequence[str | os.PathLike],
    valid: Sequence[str | os.PathLike],
    vocab: Vocabulary,
    dest: str | os.PathLike,
    *,
    column: str = "SMILES",
    n_jobs: int = 0,
    num_shards: int = 1,
    chunk_size: int = 20000,
    max_positions: int = MAX_POSITIONS,
) -> PreprocessReport:
    """Binarize ``train`` and ``valid`` corpus files into ``dest`` (see the module docstring)."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if not train:
        raise ValueError("no training files given")
    if not valid:
        raise ValueError("no validation files given")
    for f in [*train, *valid]:
        if not Path(f).exists():
            raise FileNotFoundError(f"corpus file not found: {f}")
    dest = Path(dest)
    shard_dirs = [dest] if num_shards == 1 else [dest / f"shard{k}" for k in range(num_shards)]
    for d in shard_dirs:
        d.mkdir(parents=True, exist_ok=True)
        vocab.save(d / "dict.txt")

    report = PreprocessReport(
        dest=str(dest),
        data_path=os.pathsep.join(str(d) for d in shard_dirs),
        vocab_size=len(vocab),
    )
    for split, files, prefixes in (
        ("train", train, [str(d / "train") for d in shard_dirs]),
        ("valid", valid, [str(shard_dirs[0] / "valid")]),
    ):
        stats = _write_split(
            iter_corpus(files, column),
            vocab,
            prefixes,
            n_jobs=n_jobs,
            chunk_size=chunk_size,
            max_positions=max_positions,
        )
        report.splits.append(
            SplitReport(
                split=split,
                files=[str(f) for f in files],
                rows=stats.n,
                tokens=stats.n_tokens,
                unk=stats.n_unk,
                truncated=stats.n_truncated,
                seconds=round(stats.seconds, 2),
            )
        )
    for d in shard_dirs[1:]:  # every shard needs the validation split
        for ext in (".bin", ".idx"):
            shutil.copyfile(shard_dirs[0] / f"valid{ext}", d / f"valid{ext}")
    (dest / "preprocess.json").write_text(json.dumps(report.to_json(), indent=2))
    return report
