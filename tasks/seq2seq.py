"""The ``smiles_seq2seq`` task: translate one SMILES into another (retrosynthesis, forward prediction).

Data (``DATA``, the first positional argument of ``fairseq-train``/``fairseq-generate``) is a
folder.  The file of split ``S`` (``train``, ``valid``, ``test``, or any ``--gen-subset``) is the
one file named ``S.smi``, ``S.txt``, ``S.csv``, ``*-S.smi``, ``*_S.smi``, ``*-S.csv`` or
``*_S.csv`` in it -- so the USPTO-50k folder ``uspto50k/liu2017_split`` (files
``retrosynthesis-{train,valid,test}.smi``) is read as it is.  Nothing is binarized beforehand:
the task tokenizes and encodes the text when fairseq loads a split.

Two file formats:

* **reaction lines** (``.smi``/``.txt``): one reaction per line, ``LEFT>>RIGHT`` (spaces around
  ``>>`` allowed).  ``--reaction-layout product_first`` (the default, as in the USPTO-50k
  ``retrosynthesis-*.smi`` files: ``PRODUCT >> REACTANT.REACTANT``) or ``reactants_first``
  (reaction SMILES, ``REACTANTS>>PRODUCT``; a middle agents part, ``R>A>P``, is dropped).
  ``--direction retro`` learns product -> reactants, ``forward`` reactants -> product.
  Blank lines are ignored.
* **CSV** (``.csv``): ``--source-column`` and ``--target-column`` name the two SMILES columns;
  direction and layout do not apply.  Line numbers count the header as line 1.

Both sides are tokenized by the regex tokenizer (:class:`bartsmiles.core.tokenizer.SmilesTokenizer`)
and encoded with the shared dictionary as ``<s> tokens </s>``, exactly as in pretraining; the
decoder therefore reads ``</s> <s> tokens`` and generation starts from a forced ``<s>``
(:meth:`SmilesSeq2SeqTask.inference_step`).  The dictionary is ``--dict``, else ``dict.txt``
beside the ``--restore-file`` checkpoint, else in DATA, else the shipped one; ``<mask>`` is
appended, as the denoising task does, so a pretrained embedding matrix fits.

Bad lines -- no ``>>`` separator, an empty side, a SMILES RDKit cannot parse (checked unless
``--no-check-smiles``), a SMILES the tokenizer cannot split, or one longer than the model's
positions -- are an error that lists them with their **line numbers** (1-based).  With
``--skip-invalid`` they are left out instead: their count and line numbers are logged, and
written to ``SAVE_DIR/skipped_lines_<split>.csv`` (columns ``line, reason, text``).
The files are found, read and checked by :mod:`bartsmiles.tasks.seq2seq_data` (re-exported here).

Augmentation: ``--randomize-smiles P`` rewrites a training pair, with probability P, as random
(non-canonical) SMILES: each molecule of the source, and (unless ``--keep-target``)
each molecule of the target too, keeping the molecules' order.  The draw is seeded by
``(seed, epoch, index)``: every epoch sees another, reproducible view.  A rewrite that would not
fit the positions is not used.

The task state saved in every checkpoint (``task_state["bartsmiles_seq2seq"]``) holds the
dictionary symbols and the reading settings, so a checkpoint is used later without its data
(:meth:`SmilesSeq2SeqTask.for_inference`).

Criterion: fairseq's ``label_smoothed_cross_entropy`` (``--label-smoothing``) or
``cross_entropy``.  Model: fairseq's ``bart`` (any ``bartsmiles_*`` architecture).
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
from fairseq.data import FairseqDataset, LanguagePairDataset, data_utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II

from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import Seq2SeqDataError, TokenizationError

from .architectures import MAX_POSITIONS
from .property import copy_dictionary, dictionary_from_symbols, load_fairseq_dictionary, resolve_dict_path
from .seq2seq_data import read_pairs, split_file, write_skipped

logger = logging.getLogger(__name__)

DIRECTION_CHOICES = ChoiceEnum(["retro", "forward"])
LAYOUT_CHOICES = ChoiceEnum(["product_first", "reactants_first"])
VIEW_CHOICES = ChoiceEnum(["random", "rooted"])
STATE_KEY = "bartsmiles_seq2seq"


@dataclass
class SmilesSeq2SeqConfig(FairseqDataclass):
    data: str = field(
        default="",
        metadata={"help": "folder with one file per split: S.smi/S.txt/S.csv or *-S.smi (e.g. retrosynthesis-train.smi)"},
    )
    direction: DIRECTION_CHOICES = field(
        default="retro", metadata={"help": "reaction files: retro (product -> reactants) or forward (reactants -> product)"}
    )
    reaction_layout: LAYOUT_CHOICES = field(
        default="product_first",
        metadata={"help": "reaction files: 'product_first' (PRODUCT >> REACTANTS, USPTO-50k liu2017) or "
                          "'reactants_first' (reaction SMILES REACTANTS>>PRODUCT)"},
    )
    source_views: VIEW_CHOICES = field(
        default="random",
        metadata={"help": "how the training sources are spelled: 'random' (as given, or randomized) or 'rooted' "
                          "(root-aligned pairs from bartsmiles prepare-retro); recorded in the checkpoint, so that "
                          "test-time augmentation writes its inputs the same way"},
    )
    source_column: str = field(default="source", metadata={"help": "CSV files: the source SMILES column"})
    target_column: str = field(default="target", metadata={"help": "CSV files: the target SMILES column"})
    skip_invalid: bool = field(
        default=False,
        metadata={"help": "leave bad lines out (reported in the log and SAVE_DIR/skipped_lines_<split>.csv) instead of failing"},
    )
    no_check_smiles: bool = field(
        default=False, metadata={"help": "do not parse the SMILES with RDKit (faster; invalid SMILES are then trained on)"}
    )
    dict: str = field(
        default="",
        metadata={"help": "dictionary; default: dict.txt beside --restore-file, else in DATA, else the shipped one"},
    )
    max_source_positions: int = field(
        default=MAX_POSITIONS, metadata={"help": "longest source in tokens, <s> and </s> included (must match the model)"}
    )
    max_target_positions: int = field(
        default=MAX_POSITIONS, metadata={"help": "longest target in tokens, <s> and </s> included (must match the model)"}
    )
    randomize_smiles: float = field(
        default=0.0,
        metadata={"help": "training augmentation: probability of rewriting a pair as random SMILES, anew each epoch"},
    )
    keep_target: bool = field(
        default=False,
        metadata={"help": "with --randomize-smiles: rewrite the source only, keep the target as written"},
    )
    seed: int = II("common.seed")
    restore_file: str = II("checkpoint.restore_file")
    save_dir: str = II("checkpoint.save_dir")


# ----------------------------------------------------------------------------- augmentation


def randomize_molecules(smiles: str, rng: np.random.Generator) -> str:
    """Each '.'-separated molecule of ``smiles`` written as a random SMILES, order kept."""

    from bartsmiles.core.chem import randomize_smiles  # lazy: RDKit is optional for the plugin

    return ".".join(randomize_smiles(part, rng) for part in smiles.split("."))


class SmilesSideDataset(FairseqDataset):
    """One side of the pairs: ``<s> ids </s>`` tensors, optionally re-drawn as random SMILES.

    Source and target sides of a pair make the same draw (seeded by ``(seed, epoch, index)``), so
    either both are rewritten or neither; each side then uses its own random stream.
    """

    def __init__(self, smiles: List[str], ids: List[List[int]], vocab: Vocabulary, *, side: int = 0,
                 prob: float = 0.0, seed: int = 1, max_positions: int = MAX_POSITIONS, enabled: bool = True):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"randomization probability must lie in [0, 1], got {prob}")
        self.smiles = smiles
        self.ids = [torch.tensor(i, dtype=torch.long) for i in ids]
        self.sizes = np.array([len(i) for i in ids], dtype=np.int64)
        self.vocab = vocab
        self.side = side
        self.prob = prob
        self.seed = seed
        self.max_positions = max_positions
        self.enabled = enabled
        self.epoch = 1
        self.tokenizer = SmilesTokenizer()

    def __len__(self):
        return len(self.ids)

    def set_epoch(self, epoch, **unused):
        self.epoch = epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return self.prob <= 0.0

    def __getitem__(self, index):
        item = self.ids[index]
        if self.prob <= 0.0:
            return item
        with data_utils.numpy_seed(self.seed, self.epoch, index):
            chosen = np.random.random() < self.prob
            seeds = np.random.randint(0, 2**31 - 1, size=2)
        if not chosen or not self.enabled:
            return item
        try:
            smiles = randomize_molecules(self.smiles[index], np.random.default_rng(int(seeds[self.side])))
            ids = self.vocab.encode(self.tokenizer.tokenize(smiles))
        except (ValueError, TokenizationError):
            return item
        if len(ids) > self.max_positions or self.vocab.unk in ids:
            return item
        return torch.tensor(ids, dtype=torch.long)

    def num_tokens(self, index):
        return int(self.sizes[index])

    def size(self, index):
        return int(self.sizes[index])


class EpochLanguagePairDataset(LanguagePairDataset):
    """fairseq's LanguagePairDataset that tells both sides the epoch (for the augmentation)."""

    def set_epoch(self, epoch, **unused):
        super().set_epoch(epoch)
        for side in (self.src, self.tgt):
            if hasattr(side, "set_epoch"):
                side.set_epoch(epoch)

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return all(getattr(s, "can_reuse_epoch_itr_across_epochs", True) for s in (self.src, self.tgt) if s is not None)


class _SmilesDetokenizer:
    """fairseq-generate's decode step for this task: tokens joined without spaces (a SMILES)."""

    def encode(self, x: str) -> str:
        return " ".join(SmilesTokenizer().tokenize(x.strip()))

    def decode(self, x: str) -> str:
        return x.replace(" ", "")


# ------------------------------------------------------------------------------------- task


@register_task("smiles_seq2seq", dataclass=SmilesSeq2SeqConfig)
class SmilesSeq2SeqTask(FairseqTask):
    """SMILES -> SMILES with BART (retrosynthesis, reaction prediction)."""

    cfg: SmilesSeq2SeqConfig

    def __init__(self, cfg, dictionary, meta: Dict[str, Any]):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.vocab = Vocabulary(symbols=list(dictionary.symbols), counts=[0] * len(dictionary.symbols))
        self.state.merge_state_dict({STATE_KEY: meta})
        self.reports: Dict[str, Dict[str, Any]] = {}

    @property
    def meta(self) -> Dict[str, Any]:
        return self.state.state_dict[STATE_KEY]

    @classmethod
    def setup_task(cls, cfg: SmilesSeq2SeqConfig, **kwargs):
        data = cfg.data.split(os.pathsep)[0] if cfg.data else ""
        dict_path = resolve_dict_path(cfg.dict, cfg.restore_file, cfg.save_dir, data)
        dictionary = load_fairseq_dictionary(dict_path)
        logger.info("dictionary %s: %d types (<mask> included)", dict_path, len(dictionary))
        task = cls(cfg, dictionary, cls._meta(cfg, dictionary))
        task._dict_path = dict_path
        return task

    def begin_epoch(self, epoch, model):
        """Training only: keep a copy of the dictionary beside the checkpoints (never on load)."""
        super().begin_epoch(epoch, model)
        copy_dictionary(getattr(self, "_dict_path", None), self.cfg.save_dir)

    @staticmethod
    def _meta(cfg, dictionary) -> Dict[str, Any]:
        return {
            "format": 1,
            "tokenizer": "regex",
            "dictionary": list(dictionary.symbols),
            "direction": str(cfg.direction),
            "reaction_layout": str(cfg.reaction_layout),
            "source_views": str(cfg.source_views),
            "source_column": cfg.source_column,
            "target_column": cfg.target_column,
        }

    @classmethod
    def for_inference(cls, cfg, task_state: Dict[str, Any]):
        """A task rebuilt from a checkpoint's ``task_state`` alone (no data files needed)."""
        meta = dict(task_state[STATE_KEY])
        return cls(cfg, dictionary_from_symbols(meta["dictionary"]), meta)

    def load_state_dict(self, state_dict: Dict[str, Any]):
        """fairseq calls this with a checkpoint's ``task_state`` before building the model
        (``fairseq-generate --path``): take the checkpoint's dictionary, so no ``--dict`` is needed."""
        super().load_state_dict(state_dict)
        symbols = (state_dict.get(STATE_KEY) or {}).get("dictionary")
        if symbols and list(symbols) != list(self.dictionary.symbols):
            # in place: fairseq-generate already holds this Dictionary object for printing
            new = dictionary_from_symbols(list(symbols))
            self.dictionary.symbols, self.dictionary.count, self.dictionary.indices = new.symbols, new.count, new.indices
            self.vocab = Vocabulary(symbols=list(self.dictionary.symbols), counts=[0] * len(self.dictionary.symbols))

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        path = split_file(self.cfg.data.split(os.pathsep)[0], split)
        table, src_ids, tgt_ids = read_pairs(path, self.cfg, self.vocab)
        if table.skipped:
            lines = [s.line for s in table.skipped]
            logger.warning("%s: %d bad line(s) skipped: lines %s", path, len(lines), lines[:50])
            if self.cfg.save_dir:
                write_skipped(table.skipped, Path(self.cfg.save_dir) / f"skipped_lines_{split}.csv")
        if len(table) == 0:
            raise Seq2SeqDataError(f"{path}: no usable pairs")
        n_unk = sum(i.count(self.vocab.unk) for ids in (src_ids, tgt_ids) for i in ids)
        if n_unk:
            logger.warning("%s: %d tokens are not in the dictionary and were encoded as <unk>", path, n_unk)
        self.reports[split] = {"file": str(path), "pairs": len(table), "skipped": len(table.skipped), "unk_tokens": n_unk}
        prob = float(self.cfg.randomize_smiles) if split == "train" else 0.0
        common = dict(vocab=self.vocab, prob=prob, seed=int(self.cfg.seed))
        src = SmilesSideDataset(table.sources, src_ids, side=0, max_positions=self.cfg.max_source_positions, **common)
        tgt = SmilesSideDataset(table.targets, tgt_ids, side=1, max_positions=self.cfg.max_target_positions,
                                enabled=not self.cfg.keep_target, **common)
        self.datasets[split] = EpochLanguagePairDataset(
            src, src.sizes, self.dictionary, tgt, tgt.sizes, self.dictionary,
            left_pad_source=False, left_pad_target=False, shuffle=(split == "train"),
        )
        logger.info("split %s: %d pairs from %s (%d skipped)", split, len(table), path, len(table.skipped))
        return self.datasets[split]

    def build_dataset_for_inference(self, src_tokens, src_lengths, constraints=None):
        return LanguagePairDataset(src_tokens, src_lengths, self.dictionary, left_pad_source=False,
                                   shuffle=False, constraints=constraints)

    def encode_source(self, smiles: str) -> List[int]:
        """``<s> ids </s>`` of one source SMILES (ValueError if it cannot be tokenized or is too long)."""
        return self.vocab.encode(SmilesTokenizer().tokenize(smiles.strip()),
                                 max_positions=int(self.cfg.max_source_positions), on_overflow="error")

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        # targets start with <s> (as in pretraining): force it as the first generated token
        if prefix_tokens is None and hasattr(generator, "beam_size"):
            src = sample["net_input"]["src_tokens"]
            prefix_tokens = src.new_full((src.size(0), 1), self.dictionary.bos())
        with torch.no_grad():
            return generator.generate(models, sample, prefix_tokens=prefix_tokens, constraints=constraints)

    def build_tokenizer(self, args):
        return _SmilesDetokenizer()

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if not hasattr(model, "encoder") or not hasattr(model, "decoder"):
            raise TypeError(f"smiles_seq2seq needs an encoder-decoder (--arch bartsmiles_*), got {type(model).__name__}")
        return model

    def max_positions(self):
        return (self.cfg.max_source_positions, self.cfg.max_target_positions)

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary


__all__ = ["SmilesSeq2SeqConfig", "SmilesSeq2SeqTask", "randomize_molecules", "SmilesSideDataset", "STATE_KEY"]
