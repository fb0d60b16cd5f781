"""The ``smiles_property`` task: fine-tune BART on molecular properties straight from a CSV.

Data (``DATA`` is the first positional argument of ``fairseq-train``):

* a CSV file plus ``--split-file SPLIT.json`` (written by :meth:`bartsmiles.core.splits.Split.save`;
  its indices count the rows whose SMILES parse, in file order), or
* a folder holding ``train.csv``, ``valid.csv`` and optionally ``test.csv``.

Rows whose SMILES RDKit cannot parse are left out and reported: their count and row numbers are
logged, and written to ``SAVE_DIR/invalid_rows.csv`` (``invalid_rows_<split>.csv`` with a
folder).  A summary of the data (sizes, truncated SMILES, unknown tokens, label statistics,
``pos_weight``, target scaling) goes to ``SAVE_DIR/property_data.json``.
The tables are read and checked by :mod:`bartsmiles.tasks.property_table` (re-exported here).

Model: fairseq's BART (any ``bartsmiles_*`` architecture) with a classification head of one
output per target column (``register_classification_head``), as fairseq's
``sentence_prediction`` does.  The encoder reads ``[<s>, ids, </s>]``; the decoder reads the same
sequence shifted right by one; the head reads the decoder state at the final ``</s>``
(``--head-input decoder_eos``, the recipe), or the mean-pooled encoder output without running the
decoder (``--head-input encoder_mean``; :mod:`bartsmiles.tasks.property_head`).

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

# bartsmiles.data.datasets needs RDKit: imported where used, so that `import bartsmiles.tasks` (and
# GPU pretraining on a machine without RDKit) does not need it.
if TYPE_CHECKING:  # pragma: no cover
    from bartsmiles.data.datasets import MolDataset
import bartsmiles.pretrained
from bartsmiles.core.chem import model_spelling, randomize_smiles
from bartsmiles.core.metrics import default_metric
from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import PropertyDataError, SequenceTooLongError, TokenizationError

from .architectures import MAX_POSITIONS
from .property_data import PropertyDataset
from .property_head import HEAD_INPUTS, use_head_input
from .property_table import check_trainable, label_statistics, read_property_splits

logger = logging.getLogger(__name__)

TASK_TYPE_CHOICES = ChoiceEnum(["classification", "regression"])
OVERFLOW_CHOICES = ChoiceEnum(["truncate", "error"])
SCALING_CHOICES = ChoiceEnum(["standardize", "none"])
SMILES_FORM_CHOICES = ChoiceEnum(["canonical", "as_written"])
HEAD_INPUT_CHOICES = ChoiceEnum(list(HEAD_INPUTS))
STATE_KEY = "bartsmiles"


@dataclass
class SmilesPropertyConfig(FairseqDataclass):
    data: str = field(
        default="",
        metadata={"help": "a CSV file (with --split-file), or a folder with train.csv, valid.csv and optionally test.csv"},
    )
    smiles_column: str = field(default="smiles", metadata={"help": "name of the SMILES column"})
    target_columns: str = field(
        default="",
        metadata={"help": "comma-separated label columns, or a JSON list for names that contain commas; "
                          "empty: every column except the SMILES column"},
    )
    task_type: TASK_TYPE_CHOICES = field(
        default="classification", metadata={"help": "classification (0/1 labels, BCE) or regression (MSE)"}
    )
    split_file: Optional[str] = field(
        default=None,
        metadata={"help": "split JSON (bartsmiles.core.splits.Split.save): indices into the CSV's parsable rows"},
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
    length_sorted_batches: bool = field(
        default=False,
        metadata={"help": "cut training batches from the molecules sorted by length (same number of molecules per "
                          "batch, little padding, about twice as fast) instead of batches of random lengths"},
    )
    smiles_form: SMILES_FORM_CHOICES = field(
        default="canonical",
        metadata={"help": "'canonical': rewrite every SMILES to RDKit's canonical isomeric form before tokenizing "
                          "(training, validation and, through the checkpoint's record, prediction), so that how a "
                          "SMILES was written cannot carry the label; 'as_written': read the SMILES as given"},
    )
    randomize_smiles: float = field(
        default=0.0,
        metadata={"help": "augmentation: per epoch, rewrite each training molecule as a random (non-canonical) "
                          "SMILES with this probability (seeded by seed, epoch and molecule); validation, test and "
                          "prediction keep smiles_form"},
    )
    classification_head_name: str = field(
        default="smiles_property", metadata={"help": "name of the model's classification head"}
    )
    head_input: HEAD_INPUT_CHOICES = field(
        default="decoder_eos",
        metadata={"help": "what the head reads: 'decoder_eos', the decoder state at the final </s> (the BART "
                          "recipe), or 'encoder_mean', the mean-pooled encoder output, without running the decoder "
                          "(about half the cost of training and prediction)"},
    )
    seed: int = II("common.seed")
    restore_file: str = II("checkpoint.restore_file")
    save_dir: str = II("checkpoint.save_dir")


# ----------------------------------------------------------------------------- dictionary


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


class RandomSpelling:
    """Training augmentation: molecule ``i`` of ``smiles`` written as a random SMILES in an epoch, with
    probability ``prob``; the draw depends only on ``(seed, epoch, i)``. Returns the token ids
    (``[<s>, ids, </s>]``, cut at ``max_positions`` as training truncates), or ``None`` to keep the
    stored spelling. Picklable, for data-loading workers."""

    def __init__(self, smiles: List[str], vocab: Vocabulary, prob: float, seed: int, max_positions: int):
        if not 0.0 < prob <= 1.0:
            raise ValueError(f"randomize_smiles must lie in (0, 1], got {prob}")
        self.smiles, self.vocab, self.prob, self.seed, self.max_positions = smiles, vocab, prob, seed, max_positions

    def __call__(self, index: int, epoch: int) -> Optional[List[int]]:
        rng = np.random.default_rng([self.seed, epoch, index])
        if rng.random() >= self.prob:
            return None
        try:
            tokens = SmilesTokenizer().tokenize(randomize_smiles(self.smiles[index], rng))
        except (TokenizationError, ValueError):  # a spelling the tokenizer cannot read: keep the stored one
            return None
        return self.vocab.encode(tokens, max_positions=self.max_positions, on_overflow="truncate")


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
            "smiles_form": str(cfg.smiles_form),
            "max_positions": int(cfg.max_positions),
            "dictionary": list(dictionary.symbols),
            "classification_head_name": cfg.classification_head_name,
            "head_input": str(cfg.head_input),
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

    @property
    def smiles_form(self) -> str:
        """How input SMILES are rewritten before tokenizing: ``canonical`` or ``as_written``.

        Read from the checkpoint's record; a checkpoint written before the record existed was
        trained on SMILES as written.
        """
        return str(self.meta.get("smiles_form", "as_written"))

    def model_smiles(self, smiles: List[str]) -> List[str]:
        """``smiles`` in the form the model reads (:attr:`smiles_form`); each must parse."""
        if self.smiles_form != "canonical":
            return list(smiles)
        return [model_spelling(s) for s in smiles]

    def encode(self, smiles: List[str], rows=None, on_overflow: Optional[str] = None):
        """Token ids of ``smiles`` after :meth:`model_smiles`: (ids, n_truncated, n_unk)."""
        return encode_smiles(self.model_smiles(smiles), self.vocab, self.cfg.max_positions,
                             on_overflow or str(self.cfg.on_overflow), rows)

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
        respell = None
        if split == "train" and float(self.cfg.randomize_smiles) > 0:
            respell = RandomSpelling(table.smiles, self.vocab, float(self.cfg.randomize_smiles), int(self.cfg.seed),
                                     int(self.cfg.max_positions))
        self.datasets[split] = PropertyDataset(
            ids, table.labels, pad=self.dictionary.pad(), eos=self.dictionary.eos(),
            shuffle=(split == "train"), seed=self.cfg.seed,
            length_sorted=split != "train" or bool(getattr(self.cfg, "length_sorted_batches", False)),
            respell=respell,
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
        return use_head_input(model, self.head_input)

    @property
    def head_input(self) -> str:
        """What the head reads (:mod:`bartsmiles.tasks.property_head`), from the checkpoint's record;
        a checkpoint written before the record existed reads the decoder (``decoder_eos``)."""
        return str(self.meta.get("head_input", "decoder_eos"))

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
    "SmilesPropertyConfig", "SmilesPropertyTask", "RandomSpelling", "resolve_dict_path", "encode_smiles", "scaling_arrays", "STATE_KEY",
]
