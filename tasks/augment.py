"""Randomized (non-canonical) SMILES as data augmentation inside fairseq datasets.

The wrapped dataset yields ``[<s>, ids..., </s>]`` tensors.  With probability ``prob`` an item is
decoded back to its SMILES, rewritten as a random SMILES of the same molecule (RDKit, random
atom order), tokenized and encoded again.  The choice is seeded by ``(seed, epoch, index)``, so
every epoch sees a different but reproducible view.  An item whose SMILES RDKit cannot parse,
or whose randomized form would exceed ``max_tokens``, is returned unchanged.

``sizes`` keep the original lengths: randomized strings differ by a few tokens at most (ring
digits, parentheses), which only slightly perturbs fairseq's length bucketing.
"""
from __future__ import annotations

import numpy as np
import torch
from fairseq.data import BaseWrapperDataset, data_utils

from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import InvalidSmilesError, TokenizationError


class RandomizedSmilesDataset(BaseWrapperDataset):
    def __init__(self, dataset, vocab: Vocabulary, prob: float, seed: int, max_tokens: int):
        super().__init__(dataset)
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"randomization probability must lie in [0, 1], got {prob}")
        self.vocab = vocab
        self.prob = prob
        self.seed = seed
        self.max_tokens = max_tokens
        self.epoch = 1
        self.tokenizer = SmilesTokenizer()

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return False  # items change with the epoch

    def set_epoch(self, epoch, **unused):
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, index):
        item = self.dataset[index]
        if self.prob <= 0.0:
            return item
        with data_utils.numpy_seed(self.seed, self.epoch, index):
            if np.random.random() >= self.prob:
                return item
            rng_seed = int(np.random.randint(0, 2**31 - 1))
        return self._randomize(item, np.random.default_rng(rng_seed))

    def _randomize(self, item: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        ids = item.tolist()
        tokens = self.vocab.decode(ids, strip_special=True)
        if len(tokens) != len(ids) - 2:  # <unk> or other specials inside: leave it alone
            return item
        try:
            from bartsmiles.core.chem import randomize_smiles  # lazy: RDKit is optional for the plugin

            smiles = randomize_smiles("".join(tokens), rng)
            new_ids = self.vocab.encode(self.tokenizer.tokenize(smiles))
        except (InvalidSmilesError, TokenizationError, ValueError):
            return item
        if len(new_ids) > self.max_tokens or self.vocab.unk in new_ids:
            return item
        return torch.tensor(new_ids, dtype=item.dtype)
