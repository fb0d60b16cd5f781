"""The ``smiles_denoising`` task: BART's denoising objective over tokenized SMILES.

It is fairseq's ``denoising`` task with defaults for molecules: one SMILES per sample
(``sample_break_mode=eos``), 128 positions, BART's span masking, plus two additions:

* ``--randomize-smiles P``: with probability P a training SMILES is rewritten as a random
  non-canonical SMILES of the same molecule, anew each epoch (:mod:`.augment`);
* ``--log-sample-ids DIR``: every rank appends the ids of the samples it trains on to
  ``DIR/rank<R>.ids`` -- a plain-text record that shows how fairseq shards the batches across
  distributed workers (used by the 2-worker test);
* ``--descriptor-loss`` (with ``--criterion smiles_denoising``): each batch also carries the
  molecules' standardized RDKit descriptors from ``DATA/descriptors/`` (:mod:`.descriptors`), and
  the criterion adds ``--descriptor-weight`` x their regression loss
  (:mod:`.denoising_criterion`).

**What a checkpoint says about its training.** The task counts the target tokens it has trained
on (summed over all workers, from the aggregated logging outputs) and saves, in the checkpoint's
``extra_state["SmilesDenoisingTask"]``, ``{"tokens_seen": int, "objective": {...}}``. A resumed run
continues the count; a run started from other weights (``--finetune-from-model``, or
``--restore-file`` with ``--reset-dataloader``) starts from ``--initial-tokens-seen``, which
``bartsmiles pretrain`` fills from the starting checkpoint's record.

The dictionary is read from ``DATA/dict.txt`` (fairseq format, see :mod:`bartsmiles.core.vocab`);
fairseq appends ``<mask>`` after the listed symbols.
"""

import inspect
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.data import DenoisingDataset
from fairseq.tasks import register_task
from fairseq.tasks.denoising import (
    MASK_LENGTH_CHOICES,
    SAMPLE_BREAK_MODE_CHOICES,
    DenoisingConfig,
    DenoisingTask,
)

from bartsmiles.core.descriptors import DESCRIPTOR_NAMES
from bartsmiles.core.vocab import Vocabulary

from .architectures import MAX_POSITIONS
from .augment import RandomizedSmilesDataset
from .descriptors import DescriptorTargets, DescriptorTargetsDataset

logger = logging.getLogger(__name__)


@dataclass
class SmilesDenoisingConfig(DenoisingConfig):
    tokens_per_sample: int = field(
        default=MAX_POSITIONS,
        metadata={"help": "longest sample in tokens, <s> and </s> included; longer SMILES are cut"},
    )
    sample_break_mode: SAMPLE_BREAK_MODE_CHOICES = field(
        default="eos", metadata={"help": "'eos': one SMILES per sample (keep this for molecules)"}
    )
    mask: float = field(
        default=0.3, metadata={"help": "fraction of tokens to corrupt by masking (BART: 0.3)"}
    )
    mask_random: float = field(
        default=0.1,
        metadata={"help": "of the masked tokens, the fraction replaced by a random token instead of <mask> (BART: 0.1)"},
    )
    insert: float = field(
        default=0.0,
        metadata={"help": "insert this fraction of extra random/mask tokens (BART: 0.0)"},
    )
    rotate: float = field(
        default=0.0,
        metadata={"help": "probability of rotating a sample to start at a random token (BART's final recipe: 0.0)"},
    )
    permute_sentences: float = field(
        default=0.0,
        metadata={"help": "fraction of sentences to permute; a SMILES is one sentence, so 0"},
    )
    poisson_lambda: float = field(
        default=3.0,
        metadata={"help": "mean span length of the Poisson span masking (BART: 3.0)"},
    )
    mask_length: MASK_LENGTH_CHOICES = field(
        default="span-poisson",
        metadata={"help": "span lengths: 'span-poisson' (BART's text infilling) or 'subword' (single tokens)"},
    )
    replace_length: int = field(
        default=1,
        metadata={"help": "a masked span becomes 0, 1 or (-1) as many <mask> tokens; BART: 1 (one mask per span)"},
    )
    max_source_positions: int = field(
        default=MAX_POSITIONS, metadata={"help": "encoder positions (must match the model)"}
    )
    max_target_positions: int = field(
        default=MAX_POSITIONS, metadata={"help": "decoder positions (must match the model)"}
    )
    randomize_smiles: float = field(
        default=0.0,
        metadata={"help": "probability of replacing a training SMILES by a random equivalent SMILES each epoch (augmentation; needs RDKit)"},
    )
    log_sample_ids: Optional[str] = field(
        default=None,
        metadata={"help": "folder where each rank appends the ids of the samples it trains on (rank<R>.ids)"},
    )
    descriptor_loss: bool = field(
        default=False,
        metadata={"help": "add the auxiliary loss that regresses RDKit 2D descriptors from the pooled encoder "
                          "output (needs DATA/descriptors, from `bartsmiles preprocess-descriptors`, and "
                          "--criterion smiles_denoising)"},
    )
    descriptor_weight: float = field(
        default=1.0,
        metadata={"help": "weight of the descriptor MSE (standardized units) against the per-token "
                          "cross-entropy, with --descriptor-loss"},
    )
    initial_tokens_seen: int = field(
        default=0,
        metadata={"help": "tokens the starting weights were already trained on, for runs started from other "
                          "weights (a resumed run reads its own count from the checkpoint)"},
    )


#: the key of the training record in a checkpoint's extra_state (fairseq's convention: the task's class name)
RECORD_KEY = "SmilesDenoisingTask"


class _EpochForwardingDenoisingDataset(DenoisingDataset):
    """fairseq's DenoisingDataset, but it tells the wrapped dataset the epoch too."""

    def set_epoch(self, epoch, **unused):
        super().set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False


@register_task("smiles_denoising", dataclass=SmilesDenoisingConfig)
class SmilesDenoisingTask(DenoisingTask):
    """BART denoising pretraining on SMILES."""

    cfg: SmilesDenoisingConfig

    def __init__(self, cfg, dictionary):
        super().__init__(cfg, dictionary)
        self._vocab: Optional[Vocabulary] = None
        #: target tokens trained on so far, over all workers (see the module docstring)
        self.tokens_seen = int(cfg.initial_tokens_seen)
        #: the model width, known once build_model ran (the descriptor head's input)
        self.descriptor_model_dim: Optional[int] = None
        self.descriptor_dim = len(DESCRIPTOR_NAMES)

    def objective(self) -> dict:
        """What this task trains, as recorded in checkpoints."""
        out = {"name": "denoising", "mask": self.cfg.mask, "poisson_lambda": self.cfg.poisson_lambda,
               "mask_random": self.cfg.mask_random, "randomize_smiles": self.cfg.randomize_smiles}
        if self.cfg.descriptor_loss:
            out.update(name="denoising+descriptors", descriptor_weight=self.cfg.descriptor_weight,
                       descriptors=self.descriptor_dim)
        return out

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        self.descriptor_model_dim = int(model.encoder.embed_tokens.embedding_dim)
        return model

    def build_criterion(self, cfg, from_checkpoint=False):
        name = getattr(cfg, "_name", None)
        if self.cfg.descriptor_loss and name != "smiles_denoising":
            raise ValueError(f"--descriptor-loss needs --criterion smiles_denoising (got {name!r})")
        return super().build_criterion(cfg, from_checkpoint)

    def get_checkpoint_dict(self) -> dict:
        return {RECORD_KEY: {"tokens_seen": int(self.tokens_seen), "objective": self.objective()}}

    def set_checkpoint_dict(self, state: dict) -> None:
        if "tokens_seen" in state:
            self.tokens_seen = int(state["tokens_seen"])

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if criterion.training:  # the trainer puts the criterion in eval mode to validate
            self.tokens_seen += int(sum(float(log.get("ntokens", 0)) for log in logging_outputs))

    @property
    def vocab(self) -> Vocabulary:
        """The core vocabulary view of this task's dictionary (same indices)."""
        if self._vocab is None:
            self._vocab = Vocabulary.load(os.path.join(self.cfg.data.split(os.pathsep)[0], "dict.txt"))
        return self._vocab

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        dataset = self._load_dataset_split(split, epoch, combine)
        if split == getattr(self.cfg, "train_subset", "train") or split == "train":
            if self.cfg.randomize_smiles > 0:
                dataset = RandomizedSmilesDataset(
                    dataset,
                    self.vocab,
                    prob=self.cfg.randomize_smiles,
                    seed=self.cfg.seed,
                    max_tokens=self.cfg.tokens_per_sample,
                )
        denoising = _EpochForwardingDenoisingDataset(
            dataset,
            dataset.sizes,
            self.dictionary,
            self.mask_idx,
            None,  # every SMILES token is a whole "word"
            shuffle=self.cfg.shuffle_instance,
            seed=self.cfg.seed,
            mask=self.cfg.mask,
            mask_random=self.cfg.mask_random,
            insert=self.cfg.insert,
            rotate=self.cfg.rotate,
            permute_sentences=self.cfg.permute_sentences,
            bpe=None,
            replace_length=self.cfg.replace_length,
            mask_length=self.cfg.mask_length,
            poisson_lambda=self.cfg.poisson_lambda,
        )
        if self.cfg.descriptor_loss:
            paths = self.cfg.data.split(os.pathsep)
            denoising = DescriptorTargetsDataset(denoising, DescriptorTargets(paths[(epoch - 1) % len(paths)], split))
        self.datasets[split] = denoising
        logger.info("split %s: %d SMILES for denoising", split, len(self.datasets[split]))

    def get_batch_iterator(self, *args, **kwargs):
        # fairseq's DenoisingDataset draws span lengths and random tokens from torch's global RNG.
        # A data-buffer thread (--data-buffer-size > 0, fairseq's default) would race the trainer's
        # dropout for that RNG, and two runs with the same seed would train different models.
        # Load in the trainer's own thread instead (DataLoader workers still prefetch).
        bound = inspect.signature(super().get_batch_iterator).bind(*args, **kwargs)
        bound.arguments["data_buffer_size"] = 0
        return super().get_batch_iterator(*bound.args, **bound.kwargs)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if self.cfg.log_sample_ids and not ignore_grad and sample and "id" in sample:
            _append_ids(self.cfg.log_sample_ids, sample["id"])
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)


def _append_ids(folder: str, ids: torch.Tensor) -> None:
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"rank{rank}.ids"), "a") as fh:
        fh.write(" ".join(str(i) for i in ids.tolist()) + "\n")
