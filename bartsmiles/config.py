"""Typed configurations and their translation into fairseq command lines.

A config is a plain dataclass; :func:`pretrain_args` turns it into the exact argument list that
``fairseq-train`` takes.  That translation is a pure function, unit-tested on its own, and it is
the only place where our names meet fairseq's flags.  ``bartsmiles pretrain`` and a documented
``fairseq-train`` command therefore run the same configuration through the same trainer.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional


def help_field(text: str, **kw):
    """A dataclass field carrying its command-line help text (read by the CLI)."""
    return field(metadata={"help": text}, **kw)


_help = help_field


def runtime_args(*, precision: str, cpu: Optional[bool], log_file: str) -> list[str]:
    """The fairseq-train flags for numeric precision, device and log file, shared by every config."""
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
    args = {"fp16": ["--fp16"], "bf16": ["--bf16"], "fp32": []}[precision]
    if cpu:
        args = args + ["--cpu"]
    if log_file:
        args = args + ["--log-file", log_file]
    return args


@dataclass
class PretrainConfig:
    """BART denoising pretraining on binarized SMILES (see ``bartsmiles preprocess``)."""

    data: str = _help("binarized data folder from `bartsmiles preprocess` (colon-separated shards allowed)", default="")
    save_dir: str = _help("where checkpoints go; a rerun with the same folder resumes from checkpoint_last.pt", default="runs/pretrain")
    arch: str = _help("model shape: bartsmiles_tiny | bartsmiles_small | bartsmiles_base | bartsmiles_large", default="bartsmiles_small")
    max_update: int = _help("stop after this many updates (0: no limit)", default=20000)
    max_epoch: int = _help("stop after this many epochs (0: no limit)", default=0)
    stop_time_hours: float = _help("stop after this much wall time in hours (0: no limit)", default=0.0)
    lr: float = _help("peak learning rate", default=5e-4)
    warmup_updates: int = _help("linear warmup updates before inverse-sqrt decay", default=1000)
    max_tokens: int = _help("tokens per batch per worker", default=8192)
    update_freq: int = _help("accumulate gradients over this many batches", default=1)
    dropout: float = _help("dropout", default=0.1)
    weight_decay: float = _help("AdamW weight decay", default=0.01)
    clip_norm: float = _help("gradient clipping norm (0: off)", default=1.0)
    seed: int = _help("random seed (initialization, masking, batch order)", default=1)
    mask: float = _help("fraction of tokens masked (BART: 0.3)", default=0.3)
    mask_random: float = _help("fraction of masked tokens replaced by random tokens (BART: 0.1)", default=0.1)
    poisson_lambda: float = _help("mean masked-span length (BART: 3.0)", default=3.0)
    insert: float = _help("fraction of random tokens inserted (BART: 0.0)", default=0.0)
    randomize_smiles: float = _help("probability of a randomized (non-canonical) SMILES per sample and epoch", default=0.0)
    precision: str = _help("fp32 | fp16 | bf16 (half precision needs a GPU)", default="fp32")
    cpu: bool = _help("train on the CPU even if a GPU is present", default=False)
    num_workers: int = _help("data-loading worker processes per trainer", default=1)
    log_interval: int = _help("log every N updates", default=50)
    log_file: str = _help("also write fairseq's log to this file", default="")
    save_interval_updates: int = _help("save a checkpoint every N updates (0: per epoch only)", default=500)
    keep_interval_updates: int = _help("keep only the newest N update checkpoints", default=2)
    validate_interval_updates: int = _help("validate every N updates (0: per epoch)", default=0)
    restore_file: str = _help("start from this checkpoint instead of checkpoint_last.pt (must exist)", default="")
    reset_optimizer: bool = _help("ignore the optimizer state of the restored checkpoint", default=False)
    world_size: int = _help("distributed workers (GPUs, or CPU processes with --cpu)", default=1)
    log_sample_ids: str = _help("folder where each rank records the sample ids it trains on", default="")
    extra_args: tuple[str, ...] = _help("further fairseq-train flags, passed through verbatim", default=())


def pretrain_args(cfg: PretrainConfig, user_dir: Optional[str] = None) -> list[str]:
    """The ``fairseq-train`` argument list for ``cfg`` (without the program name)."""
    if not cfg.data:
        raise ValueError("PretrainConfig.data is empty: give the binarized data folder")
    if user_dir is None:
        from bartsmiles.tasks import USER_DIR as user_dir  # plugin path; the plugin is already importable
    args = [
        cfg.data,
        "--user-dir", user_dir,
        "--task", "smiles_denoising",
        "--arch", cfg.arch,
        "--criterion", "cross_entropy",
        "--mask", str(cfg.mask),
        "--mask-random", str(cfg.mask_random),
        "--poisson-lambda", str(cfg.poisson_lambda),
        "--insert", str(cfg.insert),
        "--randomize-smiles", str(cfg.randomize_smiles),
        "--dropout", str(cfg.dropout),
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06",
        "--weight-decay", str(cfg.weight_decay),
        "--clip-norm", str(cfg.clip_norm),
        "--lr-scheduler", "inverse_sqrt",
        "--lr", str(cfg.lr),
        "--warmup-updates", str(cfg.warmup_updates),
        "--warmup-init-lr", "1e-07",
        "--max-tokens", str(cfg.max_tokens),
        "--update-freq", str(cfg.update_freq),
        "--seed", str(cfg.seed),
        "--num-workers", str(cfg.num_workers),
        "--save-dir", cfg.save_dir,
        "--save-interval-updates", str(cfg.save_interval_updates),
        "--keep-interval-updates", str(cfg.keep_interval_updates),
        "--log-format", "json",
        "--log-interval", str(cfg.log_interval),
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
    args += runtime_args(precision=cfg.precision, cpu=cfg.cpu, log_file=cfg.log_file)
    if cfg.restore_file:
        args += ["--restore-file", cfg.restore_file]
    if cfg.reset_optimizer:
        args += ["--reset-optimizer", "--reset-lr-scheduler", "--reset-meters", "--reset-dataloader"]
    if cfg.log_sample_ids:
        args += ["--log-sample-ids", cfg.log_sample_ids]
    if cfg.world_size > 1:
        args += ["--distributed-world-size", str(cfg.world_size)]
        if cfg.cpu:
            args += ["--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"]
    args += list(cfg.extra_args)
    return args


def config_help(cls) -> dict[str, str]:
    """Field name -> help text, for building command-line parsers."""
    return {f.name: f.metadata.get("help", "") for f in fields(cls)}
