"""What every training run shares: the optimizer, the learning-rate schedule and the runtime.

:class:`TrainingConfig` is the base of the three typed configs,
:class:`~bartsmiles.training.pretraining.PretrainConfig`,
:class:`~bartsmiles.training.finetuning.FinetuneConfig` and
:class:`~bartsmiles.training.seq2seq.Seq2SeqConfig`.  It holds the fields they have in common
(Adam, gradient clipping, the schedule, seed, precision, device, logging) and turns them into
``fairseq-train`` flags in one place (:meth:`TrainingConfig.optimizer_args`,
:meth:`TrainingConfig.runtime_args`).  A subclass that needs another default re-declares the
field with :func:`override`, which keeps the help text written here.

Every field carries its help text (:func:`help_field`); the command line builds its options
from these dataclasses (:mod:`bartsmiles.cli.parser`), so a default is written once.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from fairseq.data import data_utils

from bartsmiles.model.checkpoint import pretrained_model_args
from bartsmiles.model.resolve import resolve_checkpoint

__all__ = ["help_field", "override", "TrainingConfig", "config_help", "updates_per_epoch", "resolve_model",
           "start_from_args", "continue_from_last", "config_changes", "RESET_FLAGS", "PRECISIONS", "LR_SCHEDULERS"]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")
LR_SCHEDULERS = ("polynomial_decay", "inverse_sqrt")


def help_field(text: str, *, choices: Optional[Sequence[str]] = None, flag: str = "", **kw: Any):
    """A dataclass field carrying its command-line help text and, optionally, its allowed values.

    The command line (:mod:`bartsmiles.cli.parser`) builds one option per field from these:
    ``--field-name``, or ``flag`` when given.
    """
    metadata: dict[str, Any] = {"help": text}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if flag:
        metadata["flag"] = flag
    return field(metadata=metadata, **kw)


def override(base: type, name: str, default: Any, note: str = ""):
    """Re-declare ``base``'s field ``name`` with another ``default``, keeping its help text.

    ``note`` is appended to the help (e.g. where the default comes from).
    """
    inherited = next(f for f in fields(base) if f.name == name)
    text = inherited.metadata.get("help", "")
    return help_field(f"{text} ({note})" if note else text, choices=inherited.metadata.get("choices"), default=default)


def config_help(cls: type) -> dict[str, str]:
    """Field name -> help text, for building command-line parsers."""
    return {f.name: f.metadata.get("help", "") for f in fields(cls)}


def updates_per_epoch(n_train: int, batch_size: int, update_freq: int = 1, *,
                      sizes: Optional[Sequence[int]] = None, max_tokens: int = 0) -> int:
    """Optimizer updates in one epoch of ``n_train`` examples.

    With ``max_tokens`` the batches of length-sorted buckets are also capped at that many padded
    positions; ``sizes`` (positions of each example) then decide how many batches there are,
    counted by fairseq's own ``batch_by_size`` exactly as training will cut them.
    """
    if not max_tokens:
        return math.ceil(math.ceil(n_train / batch_size) / update_freq)
    if sizes is None or len(sizes) != n_train:
        raise ValueError("a token budget (max_tokens) needs the size of every training example")
    lengths = np.asarray(sizes, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    batches = data_utils.batch_by_size(order, num_tokens_fn=lambda i: int(lengths[i]), max_tokens=max_tokens,
                                       max_sentences=batch_size, required_batch_size_multiple=1,
                                       num_tokens_vec=lengths[order])
    return math.ceil(len(batches) / update_freq)


@dataclass
class TrainingConfig:
    """Optimizer, schedule and runtime settings shared by pretraining, fine-tuning and seq2seq."""

    lr: float = help_field("peak learning rate", default=1e-4)
    lr_scheduler: str = help_field(
        "learning-rate schedule: polynomial_decay (linear warmup over warmup_ratio of all updates, then linear "
        "decay) | inverse_sqrt (linear warmup over warmup_updates, then 1/sqrt decay)", default="polynomial_decay",
        choices=LR_SCHEDULERS)
    warmup_ratio: float = help_field("polynomial_decay: fraction of all updates spent in linear warmup", default=0.06)
    warmup_updates: int = help_field("inverse_sqrt: updates of linear warmup", default=1000)
    weight_decay: float = help_field("Adam weight decay", default=0.01)
    clip_norm: float = help_field("gradient clipping norm (0: off)", default=1.0)
    adam_betas: tuple[float, float] = help_field("Adam betas", default=(0.9, 0.999))
    adam_eps: float = help_field("Adam epsilon", default=1e-8)
    update_freq: int = help_field("accumulate gradients over this many batches", default=1)
    dropout: float = help_field("dropout", default=0.1)
    seed: int = help_field("training seed (initialization, dropout, noise, batch order)", default=1)
    cpu: Optional[bool] = help_field("force CPU (True) or not (False); None: CPU exactly when no GPU is visible",
                                     default=None)
    precision: str = help_field("fp32 | fp16 | bf16 (half precision needs a GPU)", default="fp32", choices=PRECISIONS)
    num_workers: int = help_field("data-loading worker processes", default=0)
    log_interval: int = help_field("log every N updates", default=50)
    log_file: str = help_field("also write fairseq's log to this file", default="")
    extra_args: tuple[str, ...] = help_field("further fairseq-train flags, passed through verbatim", default=())

    def check_training(self, error: type[Exception] = ValueError) -> None:
        """Refuse shared settings fairseq cannot run; ``error`` is the caller's error class."""
        if self.precision not in PRECISIONS:
            raise error(f"precision must be fp32, fp16 or bf16, got {self.precision!r}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise error(f"lr_scheduler must be one of {LR_SCHEDULERS}, got {self.lr_scheduler!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise error(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.update_freq < 1:
            raise error(f"update_freq must be >= 1, got {self.update_freq}")
        if self.lr <= 0:
            raise error(f"lr must be > 0, got {self.lr}")

    def optimizer_args(self, total_updates: Optional[int] = None) -> list[str]:
        """Adam, clipping and schedule flags; ``total_updates`` is needed by polynomial_decay."""
        args = [
            "--optimizer", "adam",
            "--adam-betas", f"({self.adam_betas[0]}, {self.adam_betas[1]})",
            "--adam-eps", str(self.adam_eps),
            "--weight-decay", str(self.weight_decay),
            "--clip-norm", str(self.clip_norm),
            "--lr-scheduler", self.lr_scheduler,
            "--lr", str(self.lr),
            "--update-freq", str(self.update_freq),
        ]
        if self.lr_scheduler == "polynomial_decay":
            if not total_updates:
                raise ValueError("polynomial_decay needs the total number of updates")
            args += ["--total-num-update", str(total_updates),
                     "--warmup-updates", str(int(round(self.warmup_ratio * total_updates)))]
        else:
            args += ["--warmup-updates", str(self.warmup_updates), "--warmup-init-lr", "1e-07"]
        return args

    def runtime_args(self) -> list[str]:
        """Seed, data loading, logging, precision and device flags."""
        args = ["--seed", str(self.seed), "--num-workers", str(self.num_workers),
                "--log-format", "json", "--log-interval", str(self.log_interval)]
        args += {"fp16": ["--fp16"], "bf16": ["--bf16"], "fp32": []}[self.precision]
        if self.cpu:
            args += ["--cpu"]
        if self.log_file:
            args += ["--log-file", self.log_file]
        return args


#: fairseq flags that start a run from a checkpoint's weights only (fresh optimizer, schedule, data order)
RESET_FLAGS = ("--reset-optimizer", "--reset-dataloader", "--reset-meters", "--reset-lr-scheduler")


def start_from_args(checkpoint: str) -> list[str]:
    """Flags that start training from ``checkpoint``'s weights with everything else fresh ([] for "")."""
    return ["--restore-file", checkpoint, *RESET_FLAGS] if checkpoint else []


def continue_from_last(argv: Sequence[str]) -> list[str]:
    """``argv`` made to continue the run saved in its ``--save-dir``: every ``--restore-file`` (and
    its value) and every reset flag removed, ``--restore-file checkpoint_last.pt`` appended.  fairseq
    then restores the optimizer, the learning-rate schedule, the data order and the update count as
    they were saved, instead of starting from a checkpoint's weights with everything else fresh."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--restore-file":
            i += 2
            continue
        if argv[i] not in RESET_FLAGS:
            out.append(argv[i])
        i += 1
    return out + ["--restore-file", "checkpoint_last.pt"]


def config_changes(record: Path, cfg, ignored: Sequence[str]) -> Optional[list[str]]:
    """The fields of dataclass config ``cfg`` that differ from the JSON ``record`` a run saved of its own
    config (``ignored`` fields aside), sorted; ``None`` when ``record`` cannot be read.  A resume check:
    a killed run continues only with the configuration it started with."""
    try:
        saved = json.loads(Path(record).read_text())
    except (OSError, ValueError):
        return None
    current = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    return sorted(k for k in (set(saved) | set(current)) - set(ignored) if saved.get(k) != current.get(k))


def resolve_model(pretrained: str, arch: str, model_args: Sequence[str], cpu: Optional[bool]) -> dict:
    """Config changes that make the model match ``pretrained`` and pick the device.

    ``pretrained`` (a file, model folder or run folder) becomes its checkpoint file
    (:func:`~bartsmiles.model.resolve.resolve_checkpoint`).  The architecture and shape flags are
    read from it (a different ``arch`` would fail to load, so the checkpoint wins with a warning);
    without a checkpoint the default is ``bartsmiles_small``.  ``cpu=None`` becomes "CPU exactly
    when no GPU is visible".  Shared by property fine-tuning and seq2seq.
    """
    changes: dict = {}
    if pretrained:
        if not Path(pretrained).exists():
            raise FileNotFoundError(
                f"pretrained checkpoint not found: {pretrained} (fairseq would silently train from scratch)")
        path = str(resolve_checkpoint(pretrained))
        if path != pretrained:
            changes["pretrained"] = path
        found, flags = pretrained_model_args(path)
        if arch and arch != found:
            logger.warning("arch %s given, but %s was pretrained as %s: using the checkpoint's shape",
                           arch, path, found)
        changes["arch"] = found
        if not model_args:
            changes["model_args"] = tuple(flags)
    elif not arch:
        changes["arch"] = "bartsmiles_small"
    if cpu is None:
        changes["cpu"] = not torch.cuda.is_available()
    return changes

