"""The ``smiles_denoising`` task: BART's denoising objective over tokenized SMILES.

It is fairseq's ``denoising`` task with defaults for molecules: one SMILES per sample
(``sample_break_mode=eos``), 128 positions, BART's span masking, plus two additions:

* ``--randomize-smiles P``: with probability P a training SMILES is rewritten as a random
  non-canonical SMILES of the same molecule, anew each epoch (:mod:`.augment`);
* ``--log-sample-ids DIR``: every rank appends the ids of the samples it trains on to
  ``DIR/rank<R>.ids`` -- a plain-text record that shows how fairseq shards the batches across
  distributed workers (used by the 2-worker test).

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

from bartsmiles.core.vocab import Vocabulary

from .architectures import MAX_POSITIONS
from .augment import RandomizedSmilesDataset

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
        self.datasets[split] = _EpochForwardingDenoisingDataset(
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
