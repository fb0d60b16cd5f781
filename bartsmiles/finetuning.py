"""Fine-tuning for property prediction: a typed config, its fairseq command line, and a runner.

* :class:`FinetuneConfig` holds the published BARTSmiles recipe as defaults: Adam (0.9, 0.999),
  weight decay 0.01, clip-norm 0.1, polynomial decay with warmup over 16% of the updates,
  10 epochs, batch size 16.
* :func:`finetune_args` is a pure function ``config -> fairseq-train argument list`` for the
  ``smiles_property`` task (:mod:`bartsmiles.tasks.property`).  It needs the training-set size to
  turn epochs into the update counts the scheduler takes.
* :func:`finetune` resolves the config (dataset name -> file and columns, architecture read from
  the pretrained checkpoint, ``--cpu`` without a GPU), checks the data, writes the split file,
  trains through :func:`bartsmiles.training.fairseq_train` (the same code path as the documented
  ``fairseq-train`` command), then scores the best checkpoint on the test split with
  :func:`predict`.

The equivalent command line (``finetune(cfg).argv`` is exactly this list)::

    fairseq-train data.csv --user-dir $(bartsmiles user-dir) --task smiles_property \\
        --split-file split.json --smiles-column smiles --target-columns p_np \\
        --task-type classification --criterion smiles_property --arch bartsmiles_small \\
        --ignore-unused-valid-subsets \\
        --restore-file pretrained.pt --reset-optimizer --reset-dataloader --reset-meters \\
        --reset-lr-scheduler --optimizer adam --adam-betas '(0.9, 0.999)' ... \\
        --best-checkpoint-metric roc_auc --maximize-best-checkpoint-metric

Checkpoint loading and prediction (:mod:`bartsmiles.property_model`), resuming an interrupted
run (:mod:`bartsmiles.finetune_resume`) and the hyperparameter grid (:mod:`bartsmiles.grid`)
live in their own modules; their public names are re-exported here.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .config import help_field as _help, runtime_args
from .finetune_resume import (  # noqa: F401  (re-exported)
    _RESET_FLAGS, RESUME_IGNORED_FIELDS, _data_fingerprint, _last_epoch, _same_run, resume_args,
)
from .grid import _grid_dir, grid_search  # noqa: F401  (re-exported)
from .progress import EpochProgress
from .property_model import (  # noqa: F401  (re-exported)
    SHAPE_FIELDS, PropertyPredictor, _load_state, predict, pretrained_model_args, resolve_model,
)

logger = logging.getLogger(__name__)

SPLIT_KINDS = ("scaffold", "random")


class FinetuneError(ValueError):
    """A fine-tuning setup that cannot work (missing file, unusable labels or split)."""


@dataclass
class FinetuneConfig:
    """Fine-tune a pretrained BARTSmiles on a property table (the paper's recipe by default)."""

    data: str = _help("a CSV file, a folder with train.csv/valid.csv[/test.csv], or a registered dataset name (bbbp, esol, ...)", default="")
    pretrained: str = _help("the pretrained checkpoint to start from (must exist); empty: train from random weights", default="")
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
    update_freq: int = _help("accumulate gradients over this many batches", default=1)
    lr: float = _help("peak learning rate (paper grid: 5e-6, 1e-5, 3e-5)", default=3e-5)
    warmup_ratio: float = _help("fraction of all updates spent in linear warmup (paper: 0.16)", default=0.16)
    dropout: float = _help("dropout (paper grid: 0.1, 0.2, 0.3)", default=0.1)
    attention_dropout: float = _help("attention dropout", default=0.1)
    pooler_dropout: float = _help("dropout inside the classification head", default=0.0)
    weight_decay: float = _help("Adam weight decay (paper: 0.01)", default=0.01)
    clip_norm: float = _help("gradient clipping norm (paper: 0.1)", default=0.1)
    adam_betas: tuple[float, float] = _help("Adam betas (paper: 0.9, 0.999)", default=(0.9, 0.999))
    adam_eps: float = _help("Adam epsilon", default=1e-8)
    pos_weight: str = _help("classification: 'auto' (n_neg/n_pos per task), a number, or 'none'", default="none")
    regression_scaling: str = _help("regression targets: 'standardize' (train mean/std) or 'none'", default="standardize")
    metric: str = _help("validation metric: roc_auc | prc_auc | rmse; empty: by task type (roc_auc, rmse)", default="")
    max_positions: int = _help("longest input in tokens, <s> and </s> included", default=128)
    on_overflow: str = _help("longer SMILES: 'truncate' (counted in the report) or 'error'", default="truncate")
    keep_last_epochs: int = _help("keep the newest N epoch checkpoints (for averaging); -1 keeps all", default=5)
    seed: int = _help("training seed (initialization of the head, dropout, batch order)", default=1)
    cpu: Optional[bool] = _help("force CPU (True) or not (False); None: CPU exactly when no GPU is visible", default=None)
    precision: str = _help("fp32 | fp16 | bf16 (half precision needs a GPU)", default="fp32")
    num_workers: int = _help("data-loading worker processes", default=0)
    log_interval: int = _help("log every N updates", default=10)
    log_file: str = _help("also write fairseq's log to this file", default="")
    score_test: bool = _help("after training, predict the test split with the best checkpoint and score it", default=True)
    progress: bool = _help("show a progress bar per epoch (loss, validation metric) instead of fairseq's log lines on the console", default=True)
    extra_args: tuple[str, ...] = _help("further fairseq-train flags, passed through verbatim", default=())


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


def updates_per_epoch(n_train: int, batch_size: int, update_freq: int = 1) -> int:
    """Optimizer updates in one epoch of ``n_train`` molecules."""
    return math.ceil(math.ceil(n_train / batch_size) / update_freq)


def is_split_file(split: str) -> bool:
    return split not in SPLIT_KINDS


def split_file_path(cfg: FinetuneConfig) -> Optional[str]:
    """The split file the run uses: the one given, or SAVE_DIR/split.json for a computed split."""
    if cfg.data and Path(cfg.data).is_dir():
        return None
    return cfg.split if is_split_file(cfg.split) else os.path.join(cfg.save_dir, "split.json")


def finetune_args(cfg: FinetuneConfig, n_train: int, user_dir: Optional[str] = None) -> list[str]:
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
    if cfg.precision not in ("fp32", "fp16", "bf16"):
        raise FinetuneError(f"precision must be fp32, fp16 or bf16, got {cfg.precision!r}")
    if cfg.on_overflow not in ("truncate", "error"):
        raise FinetuneError(f"on_overflow must be 'truncate' or 'error', got {cfg.on_overflow!r}")
    if n_train < 1 or cfg.batch_size < 1 or cfg.epochs < 1 or cfg.update_freq < 1:
        raise FinetuneError(f"n_train, batch_size, epochs and update_freq must be >= 1 (got {n_train}, "
                            f"{cfg.batch_size}, {cfg.epochs}, {cfg.update_freq})")
    if not 0.0 <= cfg.warmup_ratio < 1.0:
        raise FinetuneError(f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    metric = cfg.metric or ("roc_auc" if cfg.task_type == "classification" else "rmse")
    if user_dir is None:
        from bartsmiles.tasks import USER_DIR as user_dir

    total = cfg.epochs * updates_per_epoch(n_train, cfg.batch_size, cfg.update_freq)
    warmup = int(round(cfg.warmup_ratio * total))
    args = [
        cfg.data,
        "--user-dir", user_dir,
        "--task", "smiles_property",
        "--task-type", cfg.task_type,
        "--smiles-column", cfg.smiles_column or "smiles",
    ]
    if cfg.target_columns:
        args += ["--target-columns", ",".join(cfg.target_columns)]
    split_file = split_file_path(cfg)
    if split_file:
        args += ["--split-file", split_file]
    if cfg.dict:
        args += ["--dict", cfg.dict]
    args += [
        "--max-positions", str(cfg.max_positions),
        "--on-overflow", cfg.on_overflow,
        "--pos-weight", str(cfg.pos_weight),
        "--regression-target-scaling", cfg.regression_scaling,
        "--metric", metric,
        "--criterion", "smiles_property",
        "--arch", cfg.arch,
        *cfg.model_args,
        "--dropout", str(cfg.dropout),
        "--attention-dropout", str(cfg.attention_dropout),
        "--pooler-dropout", str(cfg.pooler_dropout),
        "--optimizer", "adam",
        "--adam-betas", f"({cfg.adam_betas[0]}, {cfg.adam_betas[1]})",
        "--adam-eps", str(cfg.adam_eps),
        "--weight-decay", str(cfg.weight_decay),
        "--clip-norm", str(cfg.clip_norm),
        "--lr-scheduler", "polynomial_decay",
        "--lr", str(cfg.lr),
        "--total-num-update", str(total),
        "--warmup-updates", str(warmup),
        "--max-epoch", str(cfg.epochs),
        "--max-update", str(total),
        "--batch-size", str(cfg.batch_size),
        "--batch-size-valid", str(cfg.valid_batch_size),
        "--update-freq", str(cfg.update_freq),
        "--required-batch-size-multiple", "1",
        "--seed", str(cfg.seed),
        "--num-workers", str(cfg.num_workers),
        "--save-dir", cfg.save_dir,
        "--keep-last-epochs", str(cfg.keep_last_epochs),
        "--best-checkpoint-metric", metric,
        "--log-format", "json",
        "--log-interval", str(cfg.log_interval),
        # fairseq lists DATA as a folder looking for extra valid* files; DATA may be a CSV file
        "--ignore-unused-valid-subsets",
    ]
    if metric != "rmse":
        args += ["--maximize-best-checkpoint-metric"]
    if cfg.pretrained:
        args += ["--restore-file", cfg.pretrained,
                 "--reset-optimizer", "--reset-dataloader", "--reset-meters", "--reset-lr-scheduler"]
    args += runtime_args(precision=cfg.precision, cpu=cfg.cpu, log_file=cfg.log_file)
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
        from bartsmiles import datasets

        try:
            spec = datasets.get_spec(data)
        except KeyError:
            raise FinetuneError(f"data {data!r} is neither a file, a folder nor a registered dataset") from None
        if not spec.is_property_dataset:
            raise FinetuneError(f"dataset {data!r} is a {spec.task_type} file, not a property dataset")
        path = datasets.locate(spec, cfg.data_dir or None)
        changes["data"] = str(path)
        changes["smiles_column"] = cfg.smiles_column or spec.smiles_column
        if not cfg.target_columns:
            import pandas as pd

            columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
            changes["target_columns"] = tuple(datasets.resolve_targets(spec, columns))
        changes["task_type"] = cfg.task_type or spec.task_type
        if not cfg.metric and spec.metric in ("roc_auc", "prc_auc", "rmse"):
            changes["metric"] = spec.metric
    changes.update(resolve_model(cfg.pretrained, cfg.arch, cfg.model_args, cfg.cpu))
    if cfg.pretrained and not cfg.dict:
        beside = Path(cfg.pretrained).with_name("dict.txt")
        if beside.is_file():
            changes["dict"] = str(beside)
    return dataclasses.replace(cfg, **changes)


def _prepare_data(cfg: FinetuneConfig):
    """Read and check the data as the task will, and write the split file; returns (cfg, splits)."""
    from bartsmiles.datasets import load_table
    from bartsmiles.splits import make_split
    from bartsmiles.tasks.property import PropertyDataError, check_trainable, read_property_splits

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


def _reset_fairseq_best() -> None:
    """fairseq keeps the best validation value on a function attribute: forget a previous run's."""
    from fairseq import checkpoint_utils

    if hasattr(checkpoint_utils.save_checkpoint, "best"):
        del checkpoint_utils.save_checkpoint.best


def finetune(cfg: FinetuneConfig, *, dry_run: bool = False) -> FinetuneResult:
    """Fine-tune as configured (see the module docstring) and return what it produced.

    Raises :class:`FinetuneError` (a ValueError) for unusable data: a training set with a single
    class, an empty or single-class validation split, labels that are not 0/1 for
    classification or not numeric; FileNotFoundError for a missing pretrained checkpoint.
    """
    from bartsmiles.metrics import score

    from .training import fairseq_train

    t0 = time.perf_counter()
    cfg = resolve_config(cfg)
    cfg, splits = _prepare_data(cfg)
    argv = finetune_args(cfg, n_train=len(splits["train"]))
    metric = cfg.metric or ("roc_auc" if cfg.task_type == "classification" else "rmse")
    sizes = {k: len(v) for k, v in splits.items()}
    save = Path(cfg.save_dir)
    best = save / "checkpoint_best.pt"
    if dry_run:
        return FinetuneResult(str(save), str(best), metric, None, None, sizes, argv, 0.0)
    run_argv = resume_args(cfg, argv)
    (save / "finetune_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    _reset_fairseq_best()
    with EpochProgress(cfg.epochs, metric, desc=f"fine-tuning {Path(cfg.data).stem}", enabled=cfg.progress,
                       first_epoch=_last_epoch(save) + 1):
        fairseq_train(run_argv)
    if not best.is_file():
        raise RuntimeError(f"fairseq finished without writing {best}")
    state = _load_state(best)
    best_value = (state.get("extra_state") or {}).get("best")
    test_value = None
    if cfg.score_test and len(splits.get("test", ())) > 0:
        test = splits["test"]
        preds = predict(best, test.smiles)
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


__all__ = [
    "FinetuneConfig", "FinetuneResult", "FinetuneError", "finetune_args", "finetune", "predict",
    "PropertyPredictor", "resolve_config", "pretrained_model_args", "updates_per_epoch",
    "resume_args", "grid_search", "resolve_model",
]
