"""The typed config of SMILES-to-SMILES fine-tuning and the ``fairseq-train`` argument list it stands for.

* :class:`Seq2SeqConfig` -- a typed config; :func:`seq2seq_args` turns it (purely) into the
  ``fairseq-train`` argument list of the ``smiles_seq2seq`` task (:mod:`bartsmiles.tasks.seq2seq`);
  :func:`resolve_config` fills the architecture from the pretrained checkpoint.

The model that trains with it is :class:`bartsmiles.seq2seq.BartSmilesSeq2Seq`, which re-exports
everything here.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from .config import help_field as _help, runtime_args

CRITERIA = ("label_smoothed_cross_entropy", "cross_entropy")


class Seq2SeqError(ValueError):
    """A seq2seq setup that cannot work (missing file, empty data, bad option)."""


@dataclass
class Seq2SeqConfig:
    """Fine-tune a pretrained BARTSmiles to translate SMILES (retrosynthesis by default)."""

    data: str = _help("folder with train/valid[/test] files (S.smi, S.csv or *-S.smi); fit() writes its own", default="")
    pretrained: str = _help("pretrained checkpoint to start from (must exist); empty: random initialization", default="")
    save_dir: str = _help("where checkpoints, dict.txt and reports go", default="runs/seq2seq")
    dict: str = _help("dictionary; empty: dict.txt beside the pretrained checkpoint, else in DATA, else the shipped one", default="")
    arch: str = _help("model shape; empty: read from the pretrained checkpoint (bartsmiles_small without one)", default="")
    model_args: tuple[str, ...] = _help("explicit model-shape flags; filled from the pretrained checkpoint by fit()", default=())
    direction: str = _help("reaction files: retro (product -> reactants) or forward (reactants -> product)", default="retro")
    reaction_layout: str = _help("reaction files: product_first (PRODUCT >> REACTANTS) or reactants_first (R>>P)", default="product_first")
    source_column: str = _help("CSV files: source SMILES column", default="source")
    target_column: str = _help("CSV files: target SMILES column", default="target")
    skip_invalid: bool = _help("leave bad lines out (reported) instead of failing", default=False)
    check_smiles: bool = _help("parse every SMILES with RDKit while reading", default=True)
    randomize_smiles: float = _help("augmentation: probability of rewriting a training pair as random SMILES per epoch", default=0.0)
    keep_target: bool = _help("with randomize_smiles: rewrite the source only, keep the target as written", default=False)
    criterion: str = _help("label_smoothed_cross_entropy | cross_entropy", default="label_smoothed_cross_entropy")
    label_smoothing: float = _help("label smoothing (label_smoothed_cross_entropy only)", default=0.1)
    epochs: int = _help("training epochs", default=30)
    batch_size: int = _help("pairs per batch", default=32)
    update_freq: int = _help("accumulate gradients over this many batches", default=1)
    lr: float = _help("peak learning rate", default=1e-4)
    warmup_ratio: float = _help("fraction of the updates spent in linear warmup", default=0.06)
    dropout: float = _help("dropout", default=0.1)
    attention_dropout: float = _help("attention dropout", default=0.1)
    weight_decay: float = _help("Adam weight decay", default=0.01)
    clip_norm: float = _help("gradient clipping norm", default=1.0)
    adam_betas: tuple[float, float] = _help("Adam betas", default=(0.9, 0.999))
    adam_eps: float = _help("Adam epsilon", default=1e-8)
    max_positions: int = _help("longest source/target in tokens, <s> and </s> included (must match the model)", default=128)
    seed: int = _help("training seed (initialization, dropout, batch order, augmentation)", default=1)
    cpu: Optional[bool] = _help("force CPU (True) or not (False); None: CPU exactly when no GPU is visible", default=None)
    precision: str = _help("fp32 | fp16 | bf16 (half precision needs a GPU)", default="fp32")
    num_workers: int = _help("data-loading worker processes", default=0)
    log_interval: int = _help("log every N updates", default=50)
    log_file: str = _help("also write fairseq's log to this file", default="")
    epoch_checkpoints: bool = _help("keep checkpoint<N>.pt per epoch (else only best and last)", default=False)
    extra_args: tuple[str, ...] = _help("further fairseq-train flags, passed through verbatim", default=())


# ------------------------------------------------------------------------------ config -> argv


def updates_per_epoch(n_train: int, batch_size: int, update_freq: int = 1) -> int:
    return math.ceil(math.ceil(n_train / batch_size) / update_freq)


def seq2seq_args(cfg: Seq2SeqConfig, n_train: int, user_dir: Optional[str] = None) -> list[str]:
    """The ``fairseq-train`` argument list for ``cfg`` (without the program name); pure.

    ``n_train`` (training pairs) fixes, with ``epochs``, ``batch_size`` and ``update_freq``,
    the total number of updates of the polynomial-decay schedule and the warmup length.
    """
    if not cfg.data:
        raise Seq2SeqError("Seq2SeqConfig.data is empty")
    if not cfg.arch:
        raise Seq2SeqError("Seq2SeqConfig.arch is empty (fit() reads it from the pretrained checkpoint)")
    if cfg.criterion not in CRITERIA:
        raise Seq2SeqError(f"criterion must be one of {CRITERIA}, got {cfg.criterion!r}")
    if cfg.direction not in ("retro", "forward"):
        raise Seq2SeqError(f"direction must be 'retro' or 'forward', got {cfg.direction!r}")
    if cfg.reaction_layout not in ("product_first", "reactants_first"):
        raise Seq2SeqError(f"reaction_layout must be 'product_first' or 'reactants_first', got {cfg.reaction_layout!r}")
    if cfg.precision not in ("fp32", "fp16", "bf16"):
        raise Seq2SeqError(f"precision must be fp32, fp16 or bf16, got {cfg.precision!r}")
    if not 0.0 <= cfg.randomize_smiles <= 1.0:
        raise Seq2SeqError(f"randomize_smiles is a probability, got {cfg.randomize_smiles}")
    if n_train < 1 or cfg.batch_size < 1 or cfg.epochs < 1 or cfg.update_freq < 1:
        raise Seq2SeqError(f"n_train, batch_size, epochs and update_freq must be >= 1 (got {n_train}, "
                           f"{cfg.batch_size}, {cfg.epochs}, {cfg.update_freq})")
    if not 0.0 <= cfg.warmup_ratio < 1.0:
        raise Seq2SeqError(f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    if user_dir is None:
        from bartsmiles.tasks import USER_DIR as user_dir
    total = cfg.epochs * updates_per_epoch(n_train, cfg.batch_size, cfg.update_freq)
    args = [
        cfg.data,
        "--user-dir", user_dir,
        "--task", "smiles_seq2seq",
        "--direction", cfg.direction,
        "--reaction-layout", cfg.reaction_layout,
        "--source-column", cfg.source_column,
        "--target-column", cfg.target_column,
        "--max-source-positions", str(cfg.max_positions),
        "--max-target-positions", str(cfg.max_positions),
    ]
    if cfg.dict:
        args += ["--dict", cfg.dict]
    if cfg.skip_invalid:
        args += ["--skip-invalid"]
    if not cfg.check_smiles:
        args += ["--no-check-smiles"]
    if cfg.randomize_smiles > 0:
        args += ["--randomize-smiles", str(cfg.randomize_smiles)]
        if cfg.keep_target:
            args += ["--keep-target"]
    args += ["--criterion", cfg.criterion]
    if cfg.criterion == "label_smoothed_cross_entropy":
        args += ["--label-smoothing", str(cfg.label_smoothing)]
    args += [
        "--arch", cfg.arch,
        *cfg.model_args,
        "--dropout", str(cfg.dropout),
        "--attention-dropout", str(cfg.attention_dropout),
        "--optimizer", "adam",
        "--adam-betas", f"({cfg.adam_betas[0]}, {cfg.adam_betas[1]})",
        "--adam-eps", str(cfg.adam_eps),
        "--weight-decay", str(cfg.weight_decay),
        "--clip-norm", str(cfg.clip_norm),
        "--lr-scheduler", "polynomial_decay",
        "--lr", str(cfg.lr),
        "--total-num-update", str(total),
        "--warmup-updates", str(int(round(cfg.warmup_ratio * total))),
        "--max-epoch", str(cfg.epochs),
        "--max-update", str(total),
        "--batch-size", str(cfg.batch_size),
        "--update-freq", str(cfg.update_freq),
        "--required-batch-size-multiple", "1",
        "--seed", str(cfg.seed),
        "--num-workers", str(cfg.num_workers),
        "--save-dir", cfg.save_dir,
        "--log-format", "json",
        "--log-interval", str(cfg.log_interval),
        "--ignore-unused-valid-subsets",
    ]
    if not cfg.epoch_checkpoints:
        args += ["--no-epoch-checkpoints"]
    if cfg.pretrained:
        args += ["--restore-file", cfg.pretrained,
                 "--reset-optimizer", "--reset-dataloader", "--reset-meters", "--reset-lr-scheduler"]
    args += runtime_args(precision=cfg.precision, cpu=cfg.cpu, log_file=cfg.log_file)
    return args + list(cfg.extra_args)


def resolve_config(cfg: Seq2SeqConfig) -> Seq2SeqConfig:
    """Architecture and shape flags from the pretrained checkpoint; ``cpu`` when no GPU."""
    from .finetuning import resolve_model

    changes = resolve_model(cfg.pretrained, cfg.arch, cfg.model_args, cfg.cpu)
    return dataclasses.replace(cfg, **changes)


__all__ = ["Seq2SeqConfig", "Seq2SeqError", "CRITERIA", "seq2seq_args", "resolve_config", "updates_per_epoch"]
