"""The ``smiles_property`` task: fine-tune BART on molecular properties straight from a CSV.

Data (``DATA`` is the first positional argument of ``fairseq-train``):

* a CSV file plus ``--split-file SPLIT.json`` (written by :meth:`bartsmiles.splits.Split.save`;
  its indices count the rows whose SMILES parse, in file order), or
* a folder holding ``train.csv``, ``valid.csv`` and optionally ``test.csv``.

Rows whose SMILES RDKit cannot parse are left out and reported: their count and row numbers are
logged, and written to ``SAVE_DIR/invalid_rows.csv`` (``invalid_rows_<split>.csv`` with a
folder).  A summary of the data (sizes, truncated SMILES, unknown tokens, label statistics,
``pos_weight``, target scaling) goes to ``SAVE_DIR/property_data.json``.

Model: fairseq's BART (any ``bartsmiles_*`` architecture) with a classification head of one
output per target column (``register_classification_head``), as fairseq's
``sentence_prediction`` does.  The encoder reads ``[<s>, ids, </s>]``; the decoder reads the same
sequence shifted right by one; the head reads the decoder state at the final ``</s>``.

The dictionary is ``--dict``, else ``dict.txt`` beside the ``--restore-file`` checkpoint, else in
the data folder (or beside the CSV), else the shipped ``pretrained/dict.txt``.  ``<mask>`` is
appended, as the denoising task does, so a pretrained embedding matrix fits.

Targets: classification labels are 0/1 with NaN for a missing label (masked out of the loss and
the metric).  ``--pos-weight auto`` weighs each task's positives by n_neg / n_pos over the
training labels.  Regression targets are standardized with the training split's mean and
standard deviation (``--regression-target-scaling standardize``); predictions and the logged
RMSE are in the original units.

Everything needed to read the model's outputs later (target names, task type, scaling,
pos_weight, the dictionary's symbols) is kept in the task state, which fairseq saves in every
checkpoint as ``task_state["bartsmiles"]``.

Validation logs ``loss`` and the metric (``roc_auc``, ``prc_auc`` or ``rmse``) over the whole
validation split, so ``--best-checkpoint-metric roc_auc --maximize-best-checkpoint-metric``
selects on it.
"""

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np
from fairseq.data import Dictionary
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II

# bartsmiles.datasets needs RDKit: imported where used, so that `import bartsmiles.tasks` (and
# GPU pretraining on a machine without RDKit) does not need it.
if TYPE_CHECKING:  # pragma: no cover
    from bartsmiles.datasets import MolDataset
from bartsmiles.tokenizer import SmilesTokenizer, TokenizationError
from bartsmiles.vocab import SequenceTooLongError, Vocabulary

from .architectures import MAX_POSITIONS
from .property_data import PropertyDataset

logger = logging.getLogger(__name__)

TASK_TYPE_CHOICES = ChoiceEnum(["classification", "regression"])
OVERFLOW_CHOICES = ChoiceEnum(["truncate", "error"])
SCALING_CHOICES = ChoiceEnum(["standardize", "none"])
METRICS = {"classification": ("roc_auc", "prc_auc"), "regression": ("rmse",)}
SPLITS = ("train", "valid", "test")
STATE_KEY = "bartsmiles"


class PropertyDataError(ValueError):
    """The property data cannot be trained on as given (the message says why and where)."""


@dataclass
class SmilesPropertyConfig(FairseqDataclass):
    data: str = field(
        default="",
        metadata={"help": "a CSV file (with --split-file), or a folder with train.csv, valid.csv and optionally test.csv"},
    )
    smiles_column: str = field(default="smiles", metadata={"help": "name of the SMILES column"})
    target_columns: str = field(
        default="",
        metadata={"help": "comma-separated label columns; empty: every column except the SMILES column"},
    )
    task_type: TASK_TYPE_CHOICES = field(
        default="classification", metadata={"help": "classification (0/1 labels, BCE) or regression (MSE)"}
    )
    split_file: Optional[str] = field(
        default=None,
        metadata={"help": "split JSON (bartsmiles.splits.Split.save): indices into the CSV's parsable rows"},
    )
    dict: str = field(
        default="",
        metadata={"help": "dictionary; default: dict.txt beside --restore-file, else in the data folder, else the shipped one"},
    )
    max_positions: int = field(
        default=MAX_POSITIONS, metadata={"help": "longest input in tokens, <s> and </s> included"}
    )
    on_overflow: OVERFLOW_CHOICES = field(
        default="truncate",
        metadata={"help": "a longer SMILES is cut (and counted in the report) or is an error naming its rows"},
    )
    pos_weight: str = field(
        default="none",
        metadata={"help": "classification: 'auto' (n_neg/n_pos per task, from the training labels), a number, or 'none'"},
    )
    regression_target_scaling: SCALING_CHOICES = field(
        default="standardize",
        metadata={"help": "regression: standardize targets with the training split's mean/std, or 'none'"},
    )
    metric: str = field(
        default="",
        metadata={"help": "validation metric: roc_auc | prc_auc (classification), rmse (regression); default by task type"},
    )
    classification_head_name: str = field(
        default="smiles_property", metadata={"help": "name of the model's classification head"}
    )
    seed: int = II("common.seed")
    restore_file: str = II("checkpoint.restore_file")
    save_dir: str = II("checkpoint.save_dir")


# ----------------------------------------------------------------------------------- data


def default_metric(task_type: str, metric: str = "") -> str:
    metric = metric or METRICS[task_type][0]
    if metric not in METRICS[task_type]:
        raise PropertyDataError(f"metric {metric!r} does not fit a {task_type} task; choose one of {METRICS[task_type]}")
    return metric


def split_targets(target_columns) -> Optional[List[str]]:
    """``"a,b"`` -> ``["a", "b"]``; empty -> None (every other column)."""
    if target_columns is None:
        return None
    if isinstance(target_columns, str):
        names = [c.strip() for c in target_columns.split(",") if c.strip()]
    else:
        names = [str(c) for c in target_columns]
    return names or None


def read_property_splits(
    data: str,
    smiles_column: str,
    target_columns,
    task_type: str,
    split_file: Optional[str] = None,
    report_dir: Optional[str] = None,
) -> Dict[str, "MolDataset"]:
    """The train/valid/test tables of ``data`` (see the module docstring), invalid rows left out.

    Raises :class:`PropertyDataError` (or the loader's ValueError) with a clear message for a
    missing file, a missing split file, wrong label values, or an empty train/valid split.
    """
    from bartsmiles.datasets import MolDataset, load_table
    from bartsmiles.splits import Split

    targets = split_targets(target_columns)
    path = Path(data)
    report = Path(report_dir) if report_dir else None
    out: Dict[str, "MolDataset"] = {}
    if path.is_dir():
        for split in SPLITS:
            f = path / f"{split}.csv"
            if not f.is_file():
                if split == "test":
                    continue
                raise PropertyDataError(f"{path} is a folder but has no {split}.csv")
            out[split] = load_table(
                f, smiles_column, targets, task_type=task_type,
                invalid_report=(report / f"invalid_rows_{split}.csv") if report else None,
            )
    elif path.is_file():
        if not split_file:
            raise PropertyDataError(
                f"{path} is one CSV file: give --split-file (from bartsmiles.splits), or a folder with train/valid/test.csv"
            )
        if not Path(split_file).is_file():
            raise PropertyDataError(f"split file not found: {split_file}")
        table = load_table(
            path, smiles_column, targets, task_type=task_type,
            invalid_report=(report / "invalid_rows.csv") if report else None,
        )
        split = Split.load(split_file)
        n = len(table)
        for name in SPLITS:
            idx = np.asarray(getattr(split, name), dtype=np.int64)
            if idx.size and idx.max() >= n:
                raise PropertyDataError(
                    f"split file {split_file}: {name} index {int(idx.max())} is out of range: {path} has {n} parsable rows "
                    f"({len(table.invalid)} invalid row(s) dropped); indices count parsable rows only"
                )
            out[name] = MolDataset(
                name=f"{table.name}:{name}", smiles=[table.smiles[i] for i in idx], labels=table.labels[idx],
                task_names=table.task_names, task_type=table.task_type, rows=table.rows[idx],
                invalid=table.invalid if name == "train" else [],
            )
    else:
        raise PropertyDataError(f"property data not found: {data!r} is neither a CSV file nor a folder")
    for name in ("train", "valid"):
        if len(out[name]) == 0:
            raise PropertyDataError(f"the {name} split of {data} is empty")
    names = {tuple(d.task_names) for d in out.values()}
    if len(names) > 1:
        raise PropertyDataError(f"the splits of {data} have different target columns: {sorted(names)}")
    return out


def check_trainable(splits: Dict[str, "MolDataset"], task_type: str, metric: str = "") -> None:
    """Errors for data fairseq would train on to no purpose (single-class train set, nothing to validate on)."""
    train, valid = splits["train"], splits["valid"]
    names = train.task_names
    if not names:
        raise PropertyDataError("no target columns")
    if task_type != "classification":
        for label, ds in (("train", train), ("valid", valid)):
            if np.isnan(ds.labels).all():
                raise PropertyDataError(f"every {label} label is missing")
        return
    single = []
    for j, name in enumerate(names):
        col = train.labels[:, j]
        classes = np.unique(col[~np.isnan(col)])
        if classes.size < 2:
            single.append(f"{name!r} ({'no labels' if classes.size == 0 else f'only class {int(classes[0])}'})")
    if len(single) == len(names):
        raise PropertyDataError(
            "the training set has a single class in every task: " + ", ".join(single)
            + "; a classifier cannot learn from it (check the split and the label columns)"
        )
    if single:
        logger.warning("training labels of %d task(s) have a single class: %s", len(single), ", ".join(single))
    ok = False
    for j in range(len(names)):
        col = valid.labels[:, j]
        ok = ok or np.unique(col[~np.isnan(col)]).size == 2
    if not ok:
        raise PropertyDataError(
            "no task has both classes among the validation labels: the validation "
            f"{default_metric('classification', metric)} is undefined; use a different split"
        )


def label_statistics(train: "MolDataset", task_type: str, pos_weight: str, scaling: str) -> Dict[str, Any]:
    """pos_weight (classification) and mean/std (regression) from the training labels only."""
    labels = train.labels
    stats: Dict[str, Any] = {"pos_weight": None, "target_mean": None, "target_std": None}
    if task_type == "classification":
        pw = (pos_weight or "none").strip().lower()
        if pw == "auto":
            n_pos = np.nansum(labels == 1.0, axis=0).astype(float)
            n_neg = np.nansum(labels == 0.0, axis=0).astype(float)
            stats["pos_weight"] = [float(n / p) if p > 0 and n > 0 else 1.0 for n, p in zip(n_neg, n_pos)]
        elif pw not in ("none", ""):
            try:
                value = float(pw)
            except ValueError:
                raise PropertyDataError(f"pos_weight must be 'auto', 'none' or a number, got {pos_weight!r}") from None
            if not value > 0:
                raise PropertyDataError(f"pos_weight must be positive, got {value}")
            stats["pos_weight"] = [value] * labels.shape[1]
    elif scaling == "standardize":
        mean = np.nanmean(labels, axis=0)
        std = np.nanstd(labels, axis=0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        stats["target_mean"] = [float(m) if np.isfinite(m) else 0.0 for m in mean]
        stats["target_std"] = [float(s) for s in std]
    return stats


def copy_dictionary(dict_path, save_dir) -> None:
    """Write ``save_dir/dict.txt`` from ``dict_path`` once, so a checkpoint folder is self-contained."""
    if not dict_path or not save_dir:
        return
    target = Path(save_dir) / "dict.txt"
    if not target.exists():
        os.makedirs(save_dir, exist_ok=True)
        Vocabulary.load(dict_path).save(target)


def resolve_dict_path(explicit: str, restore_file: str, save_dir: str, data: str) -> Path:
    """The dictionary file by the order of the module docstring."""
    candidates: List[Path] = []
    if explicit:
        if not Path(explicit).is_file():
            raise PropertyDataError(f"--dict {explicit} does not exist")
        return Path(explicit)
    if restore_file:
        r = Path(restore_file)
        for p in ([r] if r.is_absolute() else [r, Path(save_dir or ".") / r]):
            if p.is_file():
                candidates.append(p.parent / "dict.txt")
                break
    if data:
        d = Path(data)
        candidates.append((d if d.is_dir() else d.parent) / "dict.txt")
    for c in candidates:
        if c.is_file():
            return c
    import bartsmiles.pretrained

    shipped = Path(bartsmiles.pretrained.__file__).with_name("dict.txt")
    logger.info("no dict.txt beside the restore file or the data: using the shipped %s", shipped)
    return shipped


def encode_smiles(
    smiles: List[str], vocab: Vocabulary, max_positions: int, on_overflow: str, rows=None
) -> tuple:
    """``[<s>, ids, </s>]`` per SMILES; returns (ids, n_truncated, n_unk)."""
    tokenizer = SmilesTokenizer()
    out, truncated, unk, too_long = [], 0, 0, []
    for i, smi in enumerate(smiles):
        where = int(rows[i]) if rows is not None else i
        try:
            tokens = tokenizer.tokenize(smi)
        except TokenizationError as exc:
            raise PropertyDataError(f"row {where}: SMILES {smi!r} cannot be tokenized: {exc}") from None
        n = len(tokens) + 2
        try:
            ids = vocab.encode(tokens, max_positions=max_positions, on_overflow=on_overflow)
        except SequenceTooLongError:
            too_long.append(f"row {where} ({n} tokens)")
            continue
        truncated += n > max_positions
        unk += sum(1 for t in ids if t == vocab.unk)
        out.append(ids)
    if too_long:
        raise PropertyDataError(
            f"{len(too_long)} SMILES exceed max_positions={max_positions} (with <s> and </s>): "
            + ", ".join(too_long[:20]) + (" ..." if len(too_long) > 20 else "")
            + "; use on_overflow=truncate to cut them"
        )
    return out, truncated, unk


def load_fairseq_dictionary(path) -> Dictionary:
    d = Dictionary.load(str(path))
    d.add_symbol("<mask>")
    return d


def dictionary_from_symbols(symbols: List[str]) -> Dictionary:
    d = Dictionary()
    for s in symbols[d.nspecial:]:
        d.add_symbol(s)
    return d


# ----------------------------------------------------------------------------------- task


@register_task("smiles_property", dataclass=SmilesPropertyConfig)
class SmilesPropertyTask(FairseqTask):
    """Multi-task property prediction (classification or regression) on SMILES."""

    cfg: SmilesPropertyConfig

    def __init__(self, cfg, dictionary: Dictionary, meta: Dict[str, Any], splits: Optional[Dict[str, "MolDataset"]] = None):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.vocab = Vocabulary(symbols=list(dictionary.symbols), counts=[0] * len(dictionary.symbols))
        self._splits = splits or {}
        self.state.merge_state_dict({STATE_KEY: meta})

    # metadata saved with every checkpoint ------------------------------------------------
    @property
    def meta(self) -> Dict[str, Any]:
        return self.state.state_dict[STATE_KEY]

    @property
    def n_tasks(self) -> int:
        return len(self.meta["task_names"])

    @classmethod
    def setup_task(cls, cfg: SmilesPropertyConfig, **kwargs):
        task_type = str(cfg.task_type)
        metric = default_metric(task_type, cfg.metric)
        # reports and the dictionary copy are written when training, never when a checkpoint is
        # merely loaded (fairseq then passes from_checkpoint=True and save_dir may be its default)
        save_dir = None if kwargs.get("from_checkpoint") else (cfg.save_dir or None)
        splits = read_property_splits(
            cfg.data, cfg.smiles_column, cfg.target_columns, task_type, cfg.split_file, report_dir=save_dir
        )
        check_trainable(splits, task_type, metric)
        dict_path = resolve_dict_path(cfg.dict, cfg.restore_file, cfg.save_dir, cfg.data)
        dictionary = load_fairseq_dictionary(dict_path)
        logger.info("dictionary %s: %d types (<mask> included)", dict_path, len(dictionary))
        train = splits["train"]
        meta: Dict[str, Any] = {
            "format": 1,
            "task_names": list(train.task_names),
            "task_type": task_type,
            "metric": metric,
            "smiles_column": cfg.smiles_column,
            "tokenizer": "regex",
            "max_positions": int(cfg.max_positions),
            "dictionary": list(dictionary.symbols),
            "classification_head_name": cfg.classification_head_name,
            **label_statistics(train, task_type, cfg.pos_weight, str(cfg.regression_target_scaling)),
        }
        invalid = sorted({r.row for d in splits.values() for r in d.invalid})
        report = {
            "data": cfg.data,
            "split_file": cfg.split_file,
            "dict": str(dict_path),
            "sizes": {k: len(v) for k, v in splits.items()},
            "n_invalid": len(invalid),
            "invalid_rows": invalid,
            "labels": {k: v.summary()["tasks"] for k, v in splits.items()},
            **{k: meta[k] for k in ("task_names", "task_type", "metric", "pos_weight", "target_mean", "target_std")},
        }
        if invalid:
            logger.warning("%d row(s) with invalid SMILES left out: rows %s", len(invalid), invalid[:50])
        task = cls(cfg, dictionary, meta, splits)
        task._report = report
        task._dict_path = dict_path
        return task

    def begin_epoch(self, epoch, model):
        """Training only: keep a copy of the dictionary beside the checkpoints (never on load)."""
        super().begin_epoch(epoch, model)
        copy_dictionary(getattr(self, "_dict_path", None), self.cfg.save_dir)

    @classmethod
    def for_inference(cls, cfg, task_state: Dict[str, Any]):
        """A task rebuilt from a checkpoint's ``task_state`` alone (no data files needed)."""
        meta = dict(task_state[STATE_KEY])
        return cls(cfg, dictionary_from_symbols(meta["dictionary"]), meta)

    def _write_report(self) -> None:
        if self.cfg.save_dir and getattr(self, "_report", None) is not None:
            os.makedirs(self.cfg.save_dir, exist_ok=True)
            with open(os.path.join(self.cfg.save_dir, "property_data.json"), "w") as fh:
                json.dump(self._report, fh, indent=2, default=str)

    def encode(self, smiles: List[str], rows=None, on_overflow: Optional[str] = None):
        return encode_smiles(smiles, self.vocab, self.cfg.max_positions, on_overflow or str(self.cfg.on_overflow), rows)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        if split not in self._splits:
            raise FileNotFoundError(f"smiles_property: no {split!r} split in {self.cfg.data}")
        table = self._splits[split]
        ids, truncated, unk = self.encode(table.smiles, table.rows)
        if truncated:
            logger.warning("%s: %d SMILES longer than %d tokens were truncated", split, truncated, self.cfg.max_positions)
        if getattr(self, "_report", None) is not None:
            self._report.setdefault("encoding", {})[split] = {"truncated": truncated, "unk_tokens": unk}
            self._write_report()
        self.datasets[split] = PropertyDataset(
            ids, table.labels, pad=self.dictionary.pad(), eos=self.dictionary.eos(),
            shuffle=(split == "train"), seed=self.cfg.seed,
        )
        logger.info("split %s: %d molecules, %d task(s)", split, len(table), self.n_tasks)
        return self.datasets[split]

    def build_dataset_for_inference(self, src_tokens, src_lengths=None, **kwargs):
        return PropertyDataset(
            src_tokens, np.full((len(src_tokens), self.n_tasks), np.nan),
            pad=self.dictionary.pad(), eos=self.dictionary.eos(), shuffle=False,
        )

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if not hasattr(model, "register_classification_head"):
            raise TypeError(f"smiles_property needs a BART model (--arch bartsmiles_*), got {type(model).__name__}")
        model.register_classification_head(self.cfg.classification_head_name, num_classes=self.n_tasks)
        return model

    def max_positions(self):
        return self.cfg.max_positions

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary


def scaling_arrays(meta: Dict[str, Any]):
    """(mean, std) arrays of the target scaling, or (None, None)."""
    if meta.get("target_mean") is None:
        return None, None
    return np.asarray(meta["target_mean"], dtype=np.float64), np.asarray(meta["target_std"], dtype=np.float64)


__all__ = [
    "SmilesPropertyConfig", "SmilesPropertyTask", "PropertyDataError", "read_property_splits",
    "check_trainable", "label_statistics", "resolve_dict_path", "encode_smiles", "scaling_arrays",
    "default_metric", "STATE_KEY",
]
