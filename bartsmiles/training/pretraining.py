"""Pretraining, end to end: vocabulary, binarized data, and BART denoising through fairseq.

* :class:`PretrainConfig` is the typed config; :func:`pretrain_args` turns it into the exact
  argument list ``fairseq-train`` takes (a pure function, unit-tested on its own), so
  ``bartsmiles pretrain`` and a documented ``fairseq-train`` command run the same configuration
  through the same trainer;
* :func:`build_vocabulary` counts tokens over corpus files (parallel) and writes ``dict.txt``;
* :func:`preprocess` binarizes SMILES files for fairseq (see :mod:`bartsmiles.tasks.binarize`);
* :func:`pretrain` runs a :class:`PretrainConfig` through fairseq's trainer, in this process, or
  as one CPU process per rank when on CPU with ``world_size > 1``.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from bartsmiles.core.encoding import count_tokens, resolve_n_jobs
from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.model.checkpoint import safe_load, training_record
from bartsmiles.model.resolve import resolve_checkpoint
from bartsmiles.tasks import USER_DIR
from bartsmiles.tasks.binarize import iter_corpus, iter_corpus_file
from bartsmiles.tasks.binarize import preprocess as _binarize
from bartsmiles.tasks.descriptors import build_descriptor_cache, has_descriptor_cache
from bartsmiles.training.config import RESET_FLAGS, TrainingConfig, help_field, override
from bartsmiles.training.runner import fairseq_train, launch_cpu_workers

logger = logging.getLogger(__name__)


@dataclass
class PretrainConfig(TrainingConfig):
    """BART denoising pretraining on binarized SMILES (see ``bartsmiles preprocess``)."""

    lr: float = override(TrainingConfig, "lr", 5e-4)
    lr_scheduler: str = override(TrainingConfig, "lr_scheduler", "inverse_sqrt")
    adam_betas: tuple[float, float] = override(TrainingConfig, "adam_betas", (0.9, 0.98), "BART: 0.9, 0.98")
    adam_eps: float = override(TrainingConfig, "adam_eps", 1e-6)
    num_workers: int = override(TrainingConfig, "num_workers", 1)
    data: str = help_field("binarized data folder from `bartsmiles preprocess` (colon-separated shards allowed)", default="")
    save_dir: str = help_field("where checkpoints go; a rerun with the same folder resumes from checkpoint_last.pt", default="runs/pretrain")
    arch: str = help_field("model shape: bartsmiles_tiny | bartsmiles_mini | bartsmiles_small | bartsmiles_base | bartsmiles_large", default="bartsmiles_small")
    max_update: int = help_field("stop after this many updates (0: no limit)", default=20000)
    max_epoch: int = help_field("stop after this many epochs (0: no limit)", default=0)
    stop_time_hours: float = help_field("stop after this much wall time in hours (0: no limit)", default=0.0)
    max_tokens: int = help_field("tokens per batch per worker", default=8192)
    mask: float = help_field("fraction of tokens masked (BART: 0.3)", default=0.3)
    mask_random: float = help_field("fraction of masked tokens replaced by random tokens (BART: 0.1)", default=0.1)
    poisson_lambda: float = help_field("mean masked-span length (BART: 3.0)", default=3.0)
    insert: float = help_field("fraction of random tokens inserted (BART: 0.0)", default=0.0)
    randomize_smiles: float = help_field("probability of a randomized (non-canonical) SMILES per sample and epoch", default=0.0)
    save_interval_updates: int = help_field("save a checkpoint every N updates (0: per epoch only)", default=500)
    keep_interval_updates: int = help_field("keep only the newest N update checkpoints", default=2)
    validate_interval_updates: int = help_field("validate every N updates (0: per epoch)", default=0)
    restore_file: str = help_field("start from this checkpoint instead of checkpoint_last.pt (must exist)", default="")
    reset_optimizer: bool = help_field("ignore the optimizer state of the restored checkpoint", default=False)
    world_size: int = help_field("distributed workers (GPUs, or CPU processes on CPU)", default=1)
    log_sample_ids: str = help_field("folder where each rank records the sample ids it trains on", default="")
    descriptor_loss: bool = help_field(
        "add the auxiliary loss that regresses 65 RDKit 2D descriptors from the pooled encoder output "
        "(the descriptor cache is built beside the data on first use)", default=False)
    descriptor_weight: float = help_field("weight of the descriptor MSE against the per-token cross-entropy",
                                          default=1.0)
    init_from: str = help_field(
        "start from these weights (a model folder such as pretrained/, or a checkpoint) with a fresh optimizer "
        "the first time; a rerun resumes from SAVE_DIR/checkpoint_last.pt", default="")
    initial_tokens_seen: int = help_field(
        "tokens the starting weights were trained on (0: read from the checkpoint given by --init-from or "
        "--restore-file)", default=0)


def pretrain_args(cfg: PretrainConfig, user_dir: Optional[str] = None) -> list[str]:
    """The ``fairseq-train`` argument list for ``cfg`` (without the program name)."""
    if not cfg.data:
        raise ValueError("PretrainConfig.data is empty: give the binarized data folder")
    cfg.check_training()
    args = [
        cfg.data,
        "--user-dir", user_dir or USER_DIR,
        "--task", "smiles_denoising",
        "--arch", cfg.arch,
        *(["--criterion", "smiles_denoising", "--descriptor-loss", "--descriptor-weight", str(cfg.descriptor_weight)]
          if cfg.descriptor_loss else ["--criterion", "cross_entropy"]),
        "--mask", str(cfg.mask),
        "--mask-random", str(cfg.mask_random),
        "--poisson-lambda", str(cfg.poisson_lambda),
        "--insert", str(cfg.insert),
        "--randomize-smiles", str(cfg.randomize_smiles),
        "--dropout", str(cfg.dropout),
        *cfg.optimizer_args(cfg.max_update or None),
        "--max-tokens", str(cfg.max_tokens),
        "--save-dir", cfg.save_dir,
        "--save-interval-updates", str(cfg.save_interval_updates),
        "--keep-interval-updates", str(cfg.keep_interval_updates),
        "--skip-invalid-size-inputs-valid-test",
        "--required-batch-size-multiple", "1",
    ]
    if cfg.max_update:
        args += ["--max-update", str(cfg.max_update)]
    if cfg.max_epoch:
        args += ["--max-epoch", str(cfg.max_epoch)]
    if cfg.stop_time_hours:
        args += ["--stop-time-hours", str(cfg.stop_time_hours)]
    if cfg.validate_interval_updates:
        args += ["--validate-interval-updates", str(cfg.validate_interval_updates)]
    args += cfg.runtime_args()
    if cfg.restore_file:
        args += ["--restore-file", cfg.restore_file]
    if cfg.reset_optimizer:
        args += list(RESET_FLAGS)
    if cfg.init_from:
        if cfg.restore_file:
            raise ValueError("give --init-from or --restore-file, not both")
        args += ["--finetune-from-model", cfg.init_from]
    if cfg.initial_tokens_seen:
        args += ["--initial-tokens-seen", str(cfg.initial_tokens_seen)]
    if cfg.log_sample_ids:
        args += ["--log-sample-ids", cfg.log_sample_ids]
    if cfg.world_size > 1:
        args += ["--distributed-world-size", str(cfg.world_size)]
        if cfg.cpu:
            args += ["--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"]
    args += list(cfg.extra_args)
    return args


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
    tok = SmilesTokenizer()
    return "".join(" ".join(tok.tokenize(s)) + "\n" for s in chunk)


def write_tokenized(files, output, *, column: str = "SMILES", n_jobs: int = 0, chunk_size: int = 20000) -> int:
    """Write the SMILES of ``files`` as space-separated tokens, one per line, in input order.

    ``fairseq-preprocess --only-source --srcdict pretrained/dict.txt`` on this text gives the same
    binarized data as :func:`preprocess` (fairseq splits lines on whitespace).  Streams in chunks.
    """
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
    if not isinstance(vocab, Vocabulary):
        vocab = Vocabulary.load(vocab)
    return _binarize(train, valid, vocab, dest, **kwargs)


def preprocess_descriptors(data: str, *, n_jobs: int = 0, progress: bool = True, force: bool = False) -> dict:
    """Build the descriptor cache (:mod:`bartsmiles.tasks.descriptors`) of every data folder in ``data``.

    ``data`` is what ``--data`` takes: one folder, or shards separated by ``os.pathsep``. A folder
    that already has a current cache is skipped unless ``force``. Returns ``{folder: stats}``.
    """
    out = {}
    for folder in data.split(os.pathsep):
        if not (Path(folder) / "dict.txt").is_file():
            raise FileNotFoundError(f"{folder} is not a binarized data folder (no dict.txt): "
                                    f"make one with `bartsmiles preprocess`")
        if force or not has_descriptor_cache(folder):
            logger.info("building the descriptor cache of %s", folder)
            out[folder] = build_descriptor_cache(folder, n_jobs=n_jobs, progress=progress)
        else:
            out[folder] = json.loads((Path(folder) / "descriptors" / "stats.json").read_text())
    return out


def pretrain(cfg: PretrainConfig, *, dry_run: bool = False) -> list[str]:
    """Pretrain as configured; returns the fairseq-train argument list that was run.

    With ``dry_run`` nothing is trained: the arguments are only built and returned.
    """
    if cfg.cpu is None:
        cfg = dataclasses.replace(cfg, cpu=not torch.cuda.is_available())
    if cfg.init_from:
        cfg = dataclasses.replace(cfg, init_from=str(resolve_checkpoint(cfg.init_from)))
    start = cfg.init_from or (cfg.restore_file if cfg.reset_optimizer else "")
    if start and not cfg.initial_tokens_seen and Path(start).is_file():
        seen = training_record(safe_load(start)).get("tokens_seen")
        if seen:
            cfg = dataclasses.replace(cfg, initial_tokens_seen=int(seen))
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
    if cfg.descriptor_loss:
        preprocess_descriptors(cfg.data)
    Path(cfg.save_dir).mkdir(parents=True, exist_ok=True)
    if cfg.world_size > 1 and cfg.cpu:
        launch_cpu_workers(argv, cfg.world_size, log_dir=os.path.join(cfg.save_dir, "logs"))
    else:
        fairseq_train(argv)
    return argv
