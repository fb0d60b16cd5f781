"""Pretraining, end to end: vocabulary, binarized data, and BART denoising through fairseq.

* :func:`build_vocabulary` counts tokens over corpus files (parallel) and writes ``dict.txt``;
* :func:`preprocess` binarizes SMILES files for fairseq (see :mod:`bartsmiles.tasks.binarize`);
* :func:`pretrain` runs a :class:`~bartsmiles.config.PretrainConfig` through fairseq's trainer,
  in this process, or as one CPU process per rank when ``cpu`` and ``world_size > 1``.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

from .config import PretrainConfig, pretrain_args
from .encoding import count_tokens
from .vocab import Vocabulary

logger = logging.getLogger(__name__)


def build_vocabulary(
    files: Sequence[str | os.PathLike],
    *,
    column: str = "SMILES",
    min_count: int = 1,
    n_jobs: int = 0,
) -> tuple[Vocabulary, dict[str, int]]:
    """Vocabulary over the SMILES of ``files`` (csv column, .smi lines, reaction lines split).

    Returns the vocabulary and, per file, the number of SMILES read.
    """
    from .tasks.binarize import iter_corpus_file

    total: Counter = Counter()
    per_file: dict[str, int] = {}
    for f in files:
        n = 0

        def counted(it):
            nonlocal n
            for s in it:
                n += 1
                yield s

        total.update(count_tokens(counted(iter_corpus_file(f, column)), n_jobs=n_jobs))
        per_file[str(f)] = n
    return Vocabulary.from_counter(total, min_count=min_count), per_file


def _tokenize_chunk(chunk: list[str]) -> str:
    from .tokenizer import SmilesTokenizer

    tok = SmilesTokenizer()
    return "".join(" ".join(tok.tokenize(s)) + "\n" for s in chunk)


def write_tokenized(files, output, *, column: str = "SMILES", n_jobs: int = 0, chunk_size: int = 20000) -> int:
    """Write the SMILES of ``files`` as space-separated tokens, one per line, in input order.

    ``fairseq-preprocess --only-source --srcdict pretrained/dict.txt`` on this text gives the same
    binarized data as :func:`preprocess` (fairseq splits lines on whitespace).  Streams in chunks.
    """
    import itertools
    import multiprocessing

    from .encoding import resolve_n_jobs
    from .tasks.binarize import iter_corpus

    smiles = iter_corpus(files, column)
    chunks = iter(lambda: list(itertools.islice(smiles, chunk_size)), [])
    n = 0
    with open(output, "w") as out, multiprocessing.get_context("fork").Pool(resolve_n_jobs(n_jobs)) as pool:
        for text in pool.imap(_tokenize_chunk, chunks):
            out.write(text)
            n += text.count("\n")
    return n


def preprocess(train, valid, vocab: Vocabulary | str | os.PathLike, dest, **kwargs):
    """Binarize corpus files; see :func:`bartsmiles.tasks.binarize.preprocess`."""
    from .tasks.binarize import preprocess as _preprocess

    if not isinstance(vocab, Vocabulary):
        vocab = Vocabulary.load(vocab)
    return _preprocess(train, valid, vocab, dest, **kwargs)


def pretrain(cfg: PretrainConfig, *, dry_run: bool = False) -> list[str]:
    """Pretrain as configured; returns the fairseq-train argument list that was run.

    With ``dry_run`` nothing is trained: the arguments are only built and returned.
    """
    from .training import fairseq_train, launch_cpu_workers

    argv = pretrain_args(cfg)
    if dry_run:
        return argv
    for folder in cfg.data.split(os.pathsep):
        if not (Path(folder) / "dict.txt").is_file():
            what = "has no dict.txt" if Path(folder).is_dir() else "does not exist"
            raise FileNotFoundError(
                f"data folder {folder!r} {what}: make one with `bartsmiles preprocess --train ... --valid ... "
                f"--vocab pretrained/dict.txt --dest {folder}`"
            )
    Path(cfg.save_dir).mkdir(parents=True, exist_ok=True)
    if cfg.world_size > 1 and cfg.cpu:
        launch_cpu_workers(argv, cfg.world_size, log_dir=os.path.join(cfg.save_dir, "logs"))
    else:
        fairseq_train(argv)
    return argv
