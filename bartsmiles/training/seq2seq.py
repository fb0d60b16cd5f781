"""The typed config of SMILES-to-SMILES fine-tuning and the ``fairseq-train`` argument list it stands for.

* :class:`Seq2SeqConfig` -- a typed config (the optimizer and schedule fields are the shared ones
  of :class:`~bartsmiles.training.config.TrainingConfig`); :func:`seq2seq_args` turns it (purely)
  into the ``fairseq-train`` argument list of the ``smiles_seq2seq`` task
  (:mod:`bartsmiles.tasks.seq2seq`); :func:`resolve_config` fills the architecture from the
  pretrained checkpoint.

The model that trains with it is :class:`bartsmiles.seq2seq.BartSmilesSeq2Seq`.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bartsmiles.errors import Seq2SeqError
from bartsmiles.tasks import USER_DIR
from bartsmiles.training.config import (
    TrainingConfig,
    config_changes,
    help_field,
    resolve_model,
    start_from_args,
    updates_per_epoch,
)

__all__ = ["Seq2SeqConfig", "CRITERIA", "seq2seq_args", "resolve_config", "continues_run", "RESUME_IGNORED_FIELDS"]

logger = logging.getLogger(__name__)

#: config fields that may differ when ``resume`` continues a run (extra_args: e.g. a larger --max-update)
RESUME_IGNORED_FIELDS = ("extra_args", "log_file", "log_interval", "num_workers", "progress", "resume")

_help = help_field

CRITERIA = ("label_smoothed_cross_entropy", "cross_entropy")


@dataclass
class Seq2SeqConfig(TrainingConfig):
    """Fine-tune a pretrained BARTSmiles to translate SMILES (retrosynthesis by default)."""

    data: str = _help("folder with train/valid[/test] files (S.smi, S.csv or *-S.smi); fit() writes its own", default="")
    pretrained: str = _help("pretrained model to start from: a .pt file, a model folder or a run folder (must exist); empty: random initialization", default="")
    save_dir: str = _help("where checkpoints, dict.txt and reports go", default="runs/seq2seq")
    dict: str = _help("dictionary; empty: dict.txt beside the pretrained checkpoint, else in DATA, else the shipped one", default="")
    arch: str = _help("model shape; empty: read from the pretrained checkpoint (bartsmiles_small without one)", default="")
    model_args: tuple[str, ...] = _help("explicit model-shape flags; filled from the pretrained checkpoint by fit()", default=())
    direction: str = _help("reaction files: retro (product -> reactants) or forward (reactants -> product)", default="retro")
    reaction_layout: str = _help("reaction files: product_first (PRODUCT >> REACTANTS) or reactants_first (R>>P)", default="product_first")
    source_views: str = _help("how the training sources are spelled: random (as given or randomized) or rooted "
                              "(root-aligned pairs from bartsmiles prepare-retro); generation follows it", default="random")
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
    attention_dropout: float = _help("attention dropout", default=0.1)
    max_positions: int = _help("longest source/target in tokens, <s> and </s> included (must match the model)", default=128)
    epoch_checkpoints: bool = _help("keep checkpoint<N>.pt per epoch (else only best and last)", default=False)
    resume: bool = _help("continue SAVE_DIR/checkpoint_last.pt when it exists -- optimizer, learning-rate schedule, "
                         "data order and update count as saved -- instead of starting from PRETRAINED: for a killed "
                         "run of the same configuration, or (a larger --max-update in extra_args) to train it longer",
                         default=False)


# ------------------------------------------------------------------------------ config -> argv


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
    if cfg.source_views not in ("random", "rooted"):
        raise Seq2SeqError(f"source_views must be 'random' or 'rooted', got {cfg.source_views!r}")
    if not 0.0 <= cfg.randomize_smiles <= 1.0:
        raise Seq2SeqError(f"randomize_smiles is a probability, got {cfg.randomize_smiles}")
    if n_train < 1 or cfg.batch_size < 1 or cfg.epochs < 1 or cfg.update_freq < 1:
        raise Seq2SeqError(f"n_train, batch_size, epochs and update_freq must be >= 1 (got {n_train}, "
                           f"{cfg.batch_size}, {cfg.epochs}, {cfg.update_freq})")
    cfg.check_training(Seq2SeqError)
    total = cfg.epochs * updates_per_epoch(n_train, cfg.batch_size, cfg.update_freq)
    args = [
        cfg.data,
        "--user-dir", user_dir or USER_DIR,
        "--task", "smiles_seq2seq",
        "--direction", cfg.direction,
        "--reaction-layout", cfg.reaction_layout,
        "--source-views", cfg.source_views,
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
        *cfg.optimizer_args(total),
        "--max-epoch", str(cfg.epochs),
        "--max-update", str(total),
        "--batch-size", str(cfg.batch_size),
        "--required-batch-size-multiple", "1",
        "--save-dir", cfg.save_dir,
        "--ignore-unused-valid-subsets",
    ]
    if not cfg.epoch_checkpoints:
        args += ["--no-epoch-checkpoints"]
    args += start_from_args(cfg.pretrained)
    args += cfg.runtime_args()
    return args + list(cfg.extra_args)


def resolve_config(cfg: Seq2SeqConfig) -> Seq2SeqConfig:
    """The pretrained checkpoint file, its architecture and shape flags; ``cpu`` when no GPU."""
    return dataclasses.replace(cfg, **resolve_model(cfg.pretrained, cfg.arch, cfg.model_args, cfg.cpu))


def continues_run(cfg: Seq2SeqConfig) -> bool:
    """Whether ``cfg`` (``resume``) continues the run saved in its ``save_dir``: ``checkpoint_last.pt``
    exists and ``seq2seq_config.json`` records the same configuration (:data:`RESUME_IGNORED_FIELDS`
    aside); a different or unreadable one starts afresh from ``pretrained``, with a warning."""
    last = Path(cfg.save_dir) / "checkpoint_last.pt"
    if not cfg.resume or not last.is_file():
        return False
    differ = config_changes(last.with_name("seq2seq_config.json"), cfg, RESUME_IGNORED_FIELDS)
    if differ is None:
        logger.warning("%s exists but seq2seq_config.json does not describe its run: starting afresh", last)
    elif differ:
        logger.warning("%s is from a run with a different configuration (%s): starting afresh", last, ", ".join(differ))
    return differ == []
