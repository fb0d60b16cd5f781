"""In-memory fairseq dataset for property prediction: token ids plus a float label vector.

One item is ``{"id", "source", "target"}`` where ``source`` is ``[<s>, ids..., </s>]`` (int64)
and ``target`` a float tensor of shape ``(n_tasks,)`` with NaN for a missing label.  The
collater builds what fairseq's BART sentence classification expects::

    net_input.src_tokens          (B, L)  right-padded source
    net_input.src_lengths         (B,)
    net_input.prev_output_tokens  (B, L)  the source shifted right: [</s>, <s>, ids...]
    target                        (B, T)  float, NaN = missing

BART's classification head reads the decoder state at the last ``</s>`` of ``src_tokens``; with
the shifted source as decoder input that state has seen the whole molecule.

Order of the molecules: a training set (``shuffle=True``) gets a fresh seeded random order every
epoch (``set_epoch``).  With ``length_sorted=True`` that order is then stably sorted by length, so
that fairseq's ``batch_by_size`` cuts length-sorted buckets that pad little (fairseq's epoch
iterator shuffles the order of the batches; a batch keeps the configured number of molecules).
The task asks for this on its training split only with ``--length-sorted-batches``: it is about
twice as fast, but batches of similar length are batches of similar size, and on a size-driven
target (ESOL) it cost accuracy (README, "Speed").  Inference and validation sets
(``shuffle=False``) are always sorted by length: their outputs go back by ``id``, so nothing but
the speed changes.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils


class PropertyDataset(FairseqDataset):
    """Encoded molecules (``tokens``: int sequences incl. ``<s>``/``</s>``) with labels ``(n, t)``."""

    def __init__(
        self,
        tokens: Sequence[Sequence[int]],
        labels: np.ndarray | None,
        *,
        pad: int,
        eos: int,
        shuffle: bool = True,
        seed: int = 1,
        length_sorted: bool = True,
        respell: Callable[[int, int], Sequence[int] | None] | None = None,
    ):
        """``respell(index, epoch)``: optional augmentation; it returns other token ids for the
        molecule in this epoch (a randomized SMILES), or ``None`` to keep the stored ones."""
        super().__init__()
        self.tokens = [torch.as_tensor(np.asarray(t, dtype=np.int64)) for t in tokens]
        n = len(self.tokens)
        if labels is None:
            labels = np.full((n, 0), np.nan)
        labels = np.asarray(labels, dtype=np.float32)
        if labels.ndim == 1:
            labels = labels[:, None]
        if labels.shape[0] != n:
            raise ValueError(f"{n} molecules but {labels.shape[0]} label rows")
        self.labels = torch.from_numpy(labels)
        self.sizes = np.array([len(t) for t in self.tokens], dtype=np.int64)
        self.pad, self.eos = pad, eos
        self.shuffle, self.seed, self.epoch = shuffle, seed, 1
        self.length_sorted = length_sorted
        self.respell = respell

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict:
        tokens = self.tokens[index]
        if self.respell is not None:
            other = self.respell(index, self.epoch)
            if other is not None:
                tokens = torch.as_tensor(np.asarray(other, dtype=np.int64))
        return {"id": index, "source": tokens, "target": self.labels[index]}

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def size(self, index: int) -> int:
        return int(self.sizes[index])

    def set_epoch(self, epoch: int, **unused) -> None:
        self.epoch = epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return not self.shuffle  # a new order each epoch needs a new iterator

    def ordered_indices(self) -> np.ndarray:
        if self.shuffle:
            with data_utils.numpy_seed(self.seed, self.epoch):
                order = np.random.permutation(len(self)).astype(np.int64)
        else:
            order = np.arange(len(self), dtype=np.int64)
        if self.length_sorted:  # stable: equal lengths keep the (random) order above
            order = order[np.argsort(self.sizes[order], kind="stable")]
        return order

    def collater(self, samples: list[dict]) -> dict:
        if not samples:
            return {}
        sources = [s["source"] for s in samples]
        src_tokens = data_utils.collate_tokens(sources, self.pad, left_pad=False)
        # decoder input = the source rolled right by one: [</s>, <s>, ids...]
        prev = data_utils.collate_tokens([torch.roll(s, 1) for s in sources], self.pad, left_pad=False)
        lengths = torch.tensor([len(s) for s in sources], dtype=torch.long)
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": int(lengths.sum()),
            "net_input": {"src_tokens": src_tokens, "src_lengths": lengths, "prev_output_tokens": prev},
            "target": torch.stack([s["target"] for s in samples]),
        }
