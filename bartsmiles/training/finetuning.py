"""Fine-tuning for property prediction: a typed config, its fairseq command line, and a runner.

* :class:`FinetuneConfig` holds the published BARTSmiles recipe as defaults: Adam (0.9, 0.999),
  weight decay 0.01, clip-norm 0.1, polynomial decay with warmup over 16% of the updates,
  10 epochs, batch size 16.  The optimizer and schedule fields are the shared ones of
  :class:`~bartsmiles.training.config.TrainingConfig`.
* :func:`finetune_args` is a pure function ``config -> fairseq-train argument list`` for the
  ``smiles_property`` task (:mod:`bartsmiles.tasks.property`).  It needs the training-set size to
  turn epochs into the update counts the scheduler takes.
* :func:`resume_args` continues an interrupted run from ``SAVE_DIR/checkpoint_last.pt`` when the
  configuration and the data are the same.
* :func:`finetune` resolves the config (dataset name -> file and columns, architecture read from
  the pretrained checkpoint, ``--cpu`` without a GPU), checks the data, writes the split file,
  trains through :func:`bartsmiles.training.runner.fairseq_train` (the same code path as the
  documented ``fairseq-train`` command), calibrates the best checkpoint on the validation split
  (split-conformal scores in ``SAVE_DIR/conformal.json``, :mod:`bartsmiles.model.uncertainty`),
  then scores it on the test split.

The equivalent command line (``finetune(cfg).argv`` is exactly this list)::

    fairseq-train data.csv --user-dir $(bartsmiles user-dir) --task smiles_property \\
        --split-file split.json --smiles-column smiles --target-columns p_np \\
        --task-type classification --criterion smiles_property --arch bartsmiles_small \\
        --ignore-unused-valid-subsets \\
        --restore-file pretrained.pt --reset-optimizer --reset-dataloader --reset-meters \\
        --reset-lr-scheduler --optimizer adam --adam-betas '(0.9, 0.999)' ... \\
        --best-checkpoint-metric roc_auc --maximize-best-checkpoint-metric

Loading a fine-tuned checkpoint to predict is :mod:`bartsmiles.model.predictor`; the
hyperparameter grid is :mod:`bartsmiles.training.grid`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
from fairseq import checkpoint_utils

from bartsmiles.core.chem import model_spelling
from bartsmiles.core.metrics import default_metric, score
from bartsmiles.core.splits import SPLIT_KINDS, make_split
from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.data.datasets import load_table
from bartsmiles.data.download import sha256_file
from bartsmiles.data.registry import get_spec, locate, resolve_targets
from bartsmiles.errors import FinetuneError, PropertyDataError
from bartsmiles.model.checkpoint import load_fairseq_state
from bartsmiles.model.predictor import PropertyPredictor
from bartsmiles.model.uncertainty import Calibration, forget_calibration, save_calibration
from bartsmiles.tasks import USER_DIR
from bartsmiles.tasks.property_head import HEAD_INPUTS
from bartsmiles.tasks.property_table import check_trainable, read_property_splits
from bartsmiles.training.config import (
    TrainingConfig,
    config_changes,
    continue_from_last,
    help_field,
    override,
    resolve_model,
    start_from_args,
    updates_per_epoch,
)
from bartsmiles.training.progress import EpochProgress
from bartsmiles.training.runner import fairseq_train

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune_args", "finetune", "resolve_config", "resume_args",
           "split_file_path", "RESUME_IGNORED_FIELDS"]

logger = logging.getLogger(__name__)

_help = help_field


@dataclass
class FinetuneConfig(TrainingConfig):
    """Fine-tune a pretrained BARTSmiles on a property table (the paper's recipe by default)."""

    lr: float = override(TrainingConfig, "lr", 3e-5, "paper grid: 5e-6, 1e-5, 3e-5")
    warmup_ratio: float = override(TrainingConfig, "warmup_ratio", 0.16, "paper: 0.16")
    clip_norm: float = override(TrainingConfig, "clip_norm", 0.1, "paper: 0.1")
    dropout: float = override(TrainingConfig, "dropout", 0.1, "paper grid: 0.1, 0.2, 0.3")
    log_interval: int = override(TrainingConfig, "log_interval", 10)
    data: str = _help("a CSV file, a folder with train.csv/valid.csv[/test.csv], or a registered dataset name (bbbp, esol, ...)", default="")
    pretrained: str = _help("the pretrained model to start from: a .pt file, a model folder or a run folder (must exist); empty: train from random weights", default="")
    save_dir: str = _help("where checkpoints, the split file, the data report and the result go", default="runs/finetune")
    smiles_column: str = _help("SMILES column; empty: from the dataset registry, else 'smiles'", default="")
    target_columns: tuple[str, ...] = _help("label columns; empty: from the registry, else every column but the SMILES", default=())
    task_type: str = _help("classification | regression; empty: from the registry, else inferred from the labels", default="")
    split: str = _help("scaffold | random (computed and written to SAVE_DIR/split.json) or a split JSON file; ignored for a folder", default="scaffold")
    split_seed: int = _help("seed of a random split (not of training)", default=0)
    data_dir: str = _help("folder searched for a registered dataset's file (default: $BARTSMILES_DATA / the cache)", default="")
    dict: str = _help("dictionary file; empty: dict.txt beside the pretrained checkpoint, else in the data folder, else the shipped one", default="")
    arch: str = _help("model shape; empty: read from the pretrained checkpoint (bartsmiles_small without one)", default="")
    model_args: tuple[str, ...] = _help("explicit model-shape flags; filled from the pretrained checkpoint by finetune()", default=())
    epochs: int = _help("training epochs (paper: about 10)", default=10)
    batch_size: int = _help("molecules per batch (paper: 16)", default=16)
    valid_batch_size: int = _help("molecules per validation batch", default=64)
    max_tokens: int = _help("also cap a batch at this many padded token positions (0: no cap); long molecules then "
                            "come in smaller batches, which bounds the memory of the longest batch", default=0)
    length_sorted_batches: bool = _help(
        "cut training batches of BATCH_SIZE molecules from the molecules sorted by length: little padding, about "
        "twice as fast; batches of similar length are batches of similar size, which cost accuracy on ESOL "
        "(README, Speed)", default=False)
    keep_smiles_as_written: bool = _help(
        "read the SMILES as written instead of rewriting them to RDKit's canonical isomeric form first (the default, "
        "recorded in the checkpoint so that predict does the same): spelling can carry the label (bartsmiles audit)",
        default=False)
    randomize_smiles: float = _help(
        "augmentation: per epoch, rewrite each training molecule as a random SMILES with this probability "
        "(0: off; validation, test and prediction read the canonical form)", default=0.0)
    attention_dropout: float = _help("attention dropout", default=0.1)
    pooler_dropout: float = _help("dropout inside the classification head", default=0.0)
    head_input: str = _help("what the head reads: 'decoder_eos' (the decoder state at the final </s>, the BART recipe) "
                            "or 'encoder_mean' (the mean-pooled encoder output; the decoder is never run, about half "
                            "the cost of training and prediction)", default="decoder_eos",
                            choices=HEAD_INPUTS)
    pos_weight: str = _help("classification: 'auto' (n_neg/n_pos per task), a number, or 'none'", default="none")
    regression_scaling: str = _help("regression targets: 'standardize' (train mean/std) or 'none'", default="standardize")
    metric: str = _help("validation metric: roc_auc | prc_auc | rmse; empty: by task type (roc_auc, rmse)", default="")
    max_positions: int = _help("longest input in tokens, <s> and </s> included", default=128)
    on_overflow: str = _help("longer SMILES: 'truncate' (counted in the report) or 'error'", default="truncate")
    keep_last_epochs: int = _help("keep the newest N epoch checkpoints (for averaging); -1 keeps all; 0 writes none "
                                  "(checkpoint_best.pt and checkpoint_last.pt are always written)", default=5)
    score_test: bool = _help("after training, predict the test split with the best checkpoint and score it", default=True)
    progress: bool = _help("show a progress bar per epoch (loss, validation metric) instead of fairseq's log lines on the console", default=True)


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced."""

    save_dir: str
    best_checkpoint: str
    metric: str
    best_valid_metric: Optional[float]
    test_metric: Optional[float]
    sizes: dict
    argv: list
    seconds: float

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- pure config -> argv


def is_split_file(split: str) -> bool:
    return split not in SPLIT_KINDS


def _metric(cfg: FinetuneConfig) -> str:
    """The validation metric: the one configured, else the task type's default."""
    try:
        return default_metric(cfg.task_type, cfg.metric)
    except PropertyDataError as exc:
        raise FinetuneError(str(exc)) from None


def split_file_path(cfg: FinetuneConfig) -> Optional[str]:
    """The split file the run uses: the one given, or SAVE_DIR/split.json for a computed split."""
    if cfg.data and Path(cfg.data).is_dir():
        return None
    return cfg.split if is_split_file(cfg.split) else os.path.join(cfg.save_dir, "split.json")


def finetune_args(cfg: FinetuneConfig, n_train: int, user_dir: Optional[str] = None,
                  train_sizes: Optional[Sequence[int]] = None) -> list[str]:
    """The ``fairseq-train`` argument list for ``cfg`` (without the program name).

    ``cfg`` must be resolved (``task_type`` and ``arch`` set; :func:`finetune` does that).
    ``n_train`` is the number of training molecules: with ``epochs``, ``batch_size`` and
    ``update_freq`` it fixes the total number of updates and the warmup length.
    """
    if not cfg.data:
        raise FinetuneError("FinetuneConfig.data is empty")
    if cfg.task_type not in ("classification", "regression"):
        raise FinetuneError(f"task_type must be 'classification' or 'regression', got {cfg.task_type!r}")
    if not cfg.arch:
        raise FinetuneError("FinetuneConfig.arch is empty (finetune() reads it from the pretrained checkpoint)")
    if cfg.head_input not in HEAD_INPUTS:
        raise FinetuneError(f"head_input must be one of {', '.join(HEAD_INPUTS)}, got {cfg.head_input!r}")
    if cfg.on_overflow not in ("truncate", "error"):
        raise FinetuneError(f"on_overflow must be 'truncate' or 'error', got {cfg.on_overflow!r}")
    if not 0.0 <= cfg.randomize_smiles <= 1.0:
        raise FinetuneError(f"randomize_smiles is a probability in [0, 1], got {cfg.randomize_smiles}")
    if n_train < 1 or cfg.batch_size < 1 or cfg.epochs < 1 or cfg.update_freq < 1:
        raise FinetuneError(f"n_train, batch_size, epochs and update_freq must be >= 1 (got {n_train}, "
                            f"{cfg.batch_size}, {cfg.epochs}, {cfg.update_freq})")
    cfg.check_training(FinetuneError)
    metric = _metric(cfg)

    if cfg.max_tokens and cfg.max_tokens < cfg.max_positions:
        raise FinetuneError(f"max_tokens ({cfg.max_tokens}) must be at least max_positions ({cfg.max_positions})")
    if cfg.max_tokens and (train_sizes is None or len(train_sizes) != n_train):
        raise FinetuneError("max_tokens needs the token count of every training molecule (train_sizes)")
    total = cfg.epochs * updates_per_epoch(n_train, cfg.batch_size, cfg.update_freq, sizes=train_sizes,
                                           max_tokens=cfg.max_tokens)
    args = [
        cfg.data,
        "--user-dir", user_dir or USER_DIR,
        "--task", "smiles_property",
        "--task-type", cfg.task_type,
        "--smiles-column", cfg.smiles_column or "smiles",
    ]
    if cfg.target_columns:
        names = list(cfg.target_columns)
        # SIDER's column names hold commas: those travel as a JSON list (bartsmiles.tasks.property_table.split_targets)
        args += ["--target-columns", json.dumps(names) if any("," in n for n in names) else ",".join(names)]
    split_file = split_file_path(cfg)
    if split_file:
        args += ["--split-file", split_file]
    if cfg.dict:
        args += ["--dict", cfg.dict]
    args += [
        "--max-positions", str(cfg.max_positions),
        "--on-overflow", cfg.on_overflow,
        "--smiles-form", "as_written" if cfg.keep_smiles_as_written else "canonical",
        *(["--randomize-smiles", str(cfg.randomize_smiles)] if cfg.randomize_smiles > 0 else []),
        "--pos-weight", str(cfg.pos_weight),
        "--regression-target-scaling", cfg.regression_scaling,
        "--metric", metric,
        "--criterion", "smiles_property",
        "--arch", cfg.arch,
        *cfg.model_args,
        "--dropout", str(cfg.dropout),
        "--attention-dropout", str(cfg.attention_dropout),
        "--pooler-dropout", str(cfg.pooler_dropout),
        "--head-input", cfg.head_input,
        *cfg.optimizer_args(total),
        "--max-epoch", str(cfg.epochs),
        "--max-update", str(total),
        "--batch-size", str(cfg.batch_size),
        "--batch-size-valid", str(cfg.valid_batch_size),
        *(["--max-tokens", str(cfg.max_tokens)] if cfg.max_tokens else []),
        "--required-batch-size-multiple", "1",
        "--save-dir", cfg.save_dir,
        *(["--no-epoch-checkpoints"] if cfg.keep_last_epochs == 0 else ["--keep-last-epochs", str(cfg.keep_last_epochs)]),
        "--best-checkpoint-metric", metric,
        # fairseq lists DATA as a folder looking for extra valid* files; DATA may be a CSV file
        "--ignore-unused-valid-subsets",
    ]
    if metric != "rmse":
        args += ["--maximize-best-checkpoint-metric"]
    if cfg.length_sorted_batches:
        args += ["--length-sorted-batches"]
    args += start_from_args(cfg.pretrained)
    args += cfg.runtime_args()
    args += list(cfg.extra_args)
    return args


# --------------------------------------------------------------------------- runner


def resolve_config(cfg: FinetuneConfig) -> FinetuneConfig:
    """Fill what the user left open: dataset file and columns, architecture, ``cpu``."""
    changes: dict = {}
    data = cfg.data
    if not data:
        raise FinetuneError("FinetuneConfig.data is empty: give a CSV, a folder or a dataset name")
    if not Path(data).exists():
        try:
            spec = get_spec(data)
        except KeyError:
            raise FinetuneError(f"data {data!r} is neither a file, a folder nor a registered dataset") from None
        if not spec.is_property_dataset:
            raise FinetuneError(f"dataset {data!r} is a {spec.task_type} file, not a property dataset")
        path = locate(spec, cfg.data_dir or None)
        changes["data"] = str(path)
        changes["smiles_column"] = cfg.smiles_column or spec.smiles_column
        if not cfg.target_columns:
            columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
            changes["target_columns"] = tuple(resolve_targets(spec, columns))
        changes["task_type"] = cfg.task_type or spec.task_type
        if not cfg.metric and spec.metric in ("roc_auc", "prc_auc", "rmse"):
            changes["metric"] = spec.metric
    changes.update(resolve_model(cfg.pretrained, cfg.arch, cfg.model_args, cfg.cpu))
    pretrained = changes.get("pretrained", cfg.pretrained)
    if pretrained and not cfg.dict:
        beside = Path(pretrained).with_name("dict.txt")
        if beside.is_file():
            changes["dict"] = str(beside)
    return dataclasses.replace(cfg, **changes)


def _prepare_data(cfg: FinetuneConfig):
    """Read and check the data as the task will, and write the split file; returns (cfg, splits)."""
    save = Path(cfg.save_dir)
    save.mkdir(parents=True, exist_ok=True)
    targets = list(cfg.target_columns) or None
    try:
        if Path(cfg.data).is_file() and not is_split_file(cfg.split):
            table = load_table(cfg.data, cfg.smiles_column or "smiles", targets,
                               task_type=cfg.task_type or None)
            split = make_split(cfg.split, table.smiles, seed=cfg.split_seed)
            split.save(split_file_path(cfg))
        if not cfg.task_type or not cfg.target_columns:  # infer once, as load_table does
            probe = Path(cfg.data) / "train.csv" if Path(cfg.data).is_dir() else Path(cfg.data)
            table = load_table(probe, cfg.smiles_column or "smiles", targets, task_type=cfg.task_type or None)
            cfg = dataclasses.replace(cfg, task_type=cfg.task_type or table.task_type,
                                      target_columns=cfg.target_columns or tuple(table.task_names))
        if cfg.task_type not in ("classification", "regression"):
            raise FinetuneError(f"task_type must be 'classification' or 'regression', got {cfg.task_type!r}")
        splits = read_property_splits(cfg.data, cfg.smiles_column or "smiles", list(cfg.target_columns),
                                      cfg.task_type, split_file_path(cfg))
        check_trainable(splits, cfg.task_type, cfg.metric)
    except PropertyDataError as exc:
        raise FinetuneError(str(exc)) from None
    return cfg, splits


# --------------------------------------------------------------------------- resuming


#: config fields that may differ between a killed run and its continuation
RESUME_IGNORED_FIELDS = ("log_file", "log_interval", "score_test", "num_workers", "valid_batch_size", "progress")


def _last_epoch(save_dir: Path) -> int:
    """The epoch of ``checkpoint_last.pt`` in ``save_dir`` (0 when there is none)."""
    last = save_dir / "checkpoint_last.pt"
    if not last.is_file():
        return 0
    try:
        return int(((load_fairseq_state(last).get("extra_state") or {}).get("train_iterator") or {}).get("epoch", 0))
    except Exception:  # an unreadable checkpoint: the resume check reports it
        return 0


def _data_fingerprint(cfg: FinetuneConfig) -> dict:
    """sha256 of the data file(s) and of the split file, so edited data is never resumed."""
    data = Path(cfg.data)
    files = sorted(data.glob("*.csv*")) if data.is_dir() else [data]
    split = split_file_path(cfg)
    if split and Path(split).is_file():
        files.append(Path(split))
    return {str(f): sha256_file(f) for f in files if f.is_file()}


def resume_args(cfg: FinetuneConfig, argv: Sequence[str], resume: bool = True) -> list[str]:
    """The argument list to run: ``argv``, or its continuation of an interrupted run.

    :func:`finetune_args` restores the *pretrained* checkpoint with ``--reset-*`` flags, so
    rerunning an interrupted run with the same ``save_dir`` would start again from the
    pretrained weights (and overwrite the epoch checkpoints).  When ``resume`` is true,
    ``SAVE_DIR/checkpoint_last.pt`` exists and ``SAVE_DIR/finetune_config.json`` records the
    same configuration (fields in :data:`RESUME_IGNORED_FIELDS` may differ) and
    ``SAVE_DIR/resume_fingerprint.json`` the same sha256 of the data and split files (this
    function writes it for the current run), the pretrained
    ``--restore-file`` and the reset flags are replaced by ``--restore-file checkpoint_last.pt``:
    fairseq then continues with the next epoch, the optimizer, learning-rate schedule, data
    order and best-so-far value as they were saved.  A finished run "continues" with no
    training at all.  With a different configuration the run starts afresh, with a warning.

    (Without a pretrained checkpoint fairseq's default ``--restore-file checkpoint_last.pt``
    already continues from ``SAVE_DIR``; the list is returned unchanged.)
    """
    argv = list(argv)
    last = Path(cfg.save_dir) / "checkpoint_last.pt"
    fingerprint_file = Path(cfg.save_dir) / "resume_fingerprint.json"
    fingerprint = _data_fingerprint(cfg)
    previous = None
    if fingerprint_file.is_file():
        try:
            previous = json.loads(fingerprint_file.read_text())
        except ValueError:
            previous = None
    Path(cfg.save_dir).mkdir(parents=True, exist_ok=True)
    fingerprint_file.write_text(json.dumps(fingerprint, indent=2))
    if not resume or not cfg.pretrained or not last.is_file():
        return argv
    record = Path(cfg.save_dir) / "finetune_config.json"
    differ = config_changes(record, cfg, RESUME_IGNORED_FIELDS)
    if differ is None:
        logger.warning("%s exists but %s does not describe its run: starting afresh from %s",
                       last, record, cfg.pretrained)
        return argv
    differ += ["data or split file contents"] if previous != fingerprint else []
    if differ:
        logger.warning("%s is from a run with a different configuration (%s): starting afresh from %s",
                       last, ", ".join(differ), cfg.pretrained)
        return argv
    logger.info("resuming the interrupted run in %s from %s", cfg.save_dir, last)
    return continue_from_last(argv)


# --------------------------------------------------------------------------- runner


def _positions(cfg: FinetuneConfig, smiles: Sequence[str]) -> list[int]:
    """Positions each training molecule takes (``<s>``, tokens, ``</s>``; truncated as the task does)."""
    tokenizer = SmilesTokenizer()
    if not cfg.keep_smiles_as_written:
        smiles = [model_spelling(s) for s in smiles]
    return [min(len(tokenizer.tokenize(s)) + 2, cfg.max_positions) for s in smiles]


def reset_fairseq_best() -> None:
    """fairseq keeps the best validation value on a function attribute: forget a previous run's."""
    if hasattr(checkpoint_utils.save_checkpoint, "best"):
        del checkpoint_utils.save_checkpoint.best


def _calibrate(predictor: PropertyPredictor, best: Path, valid, cfg: FinetuneConfig) -> None:
    """Split-conformal calibration of ``best`` on the validation split, stored beside it
    (:mod:`bartsmiles.model.uncertainty`); one prediction pass over the validation molecules."""
    calibration = Calibration.from_predictions(
        predictor.predict(valid.smiles), valid.labels, cfg.task_type, predictor.task_names,
        source=f"valid split of {cfg.data} ({split_file_path(cfg) or 'valid.csv'})")
    path = save_calibration(calibration, best)
    logger.info("conformal calibration on %s validation molecule(s) -> %s", min(calibration.n), path)


def finetune(cfg: FinetuneConfig, *, dry_run: bool = False) -> FinetuneResult:
    """Fine-tune as configured (see the module docstring) and return what it produced.

    Raises :class:`FinetuneError` (a ValueError) for unusable data: a training set with a single
    class, an empty or single-class validation split, labels that are not 0/1 for
    classification or not numeric; FileNotFoundError for a missing pretrained checkpoint.
    """
    t0 = time.perf_counter()
    cfg = resolve_config(cfg)
    cfg, splits = _prepare_data(cfg)
    sizes = _positions(cfg, splits["train"].smiles) if cfg.max_tokens else None  # only a token budget needs them
    argv = finetune_args(cfg, n_train=len(splits["train"]), train_sizes=sizes)
    metric = _metric(cfg)
    sizes = {k: len(v) for k, v in splits.items()}
    save = Path(cfg.save_dir)
    best = save / "checkpoint_best.pt"
    if dry_run:
        return FinetuneResult(str(save), str(best), metric, None, None, sizes, argv, 0.0)
    run_argv = resume_args(cfg, argv)
    (save / "finetune_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    reset_fairseq_best()
    forget_calibration(best)  # the best checkpoint is about to change: its old calibration would not fit
    resuming = run_argv[-2:] == ["--restore-file", "checkpoint_last.pt"] or not cfg.pretrained
    # a run that starts afresh in an old run's folder must not start its bar at the old run's epoch
    with EpochProgress(cfg.epochs, metric, desc=f"fine-tuning {Path(cfg.data).stem}", enabled=cfg.progress,
                       first_epoch=_last_epoch(save) + 1 if resuming else 1):
        fairseq_train(run_argv)
    if not best.is_file():
        raise RuntimeError(f"fairseq finished without writing {best}")
    state = load_fairseq_state(best)
    best_value = (state.get("extra_state") or {}).get("best")
    predictor = PropertyPredictor(best)
    _calibrate(predictor, best, splits["valid"], cfg)
    test_value = None
    if cfg.score_test and len(splits.get("test", ())) > 0:
        test = splits["test"]
        preds = predictor.predict(test.smiles)
        try:
            test_value = float(score(metric, test.labels, preds))
        except ValueError as exc:
            logger.warning("test %s is undefined: %s", metric, exc)
    result = FinetuneResult(
        save_dir=str(save), best_checkpoint=str(best), metric=metric,
        best_valid_metric=None if best_value is None else float(best_value),
        test_metric=test_value, sizes=sizes, argv=list(argv), seconds=round(time.perf_counter() - t0, 2),
    )
    (save / "finetune_result.json").write_text(json.dumps(result.to_json(), indent=2))
    return result
