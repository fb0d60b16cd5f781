"""Length-sorted buckets for fine-tuning (``PropertyDataset``): little padding, same molecules, seeded."""
from __future__ import annotations

import numpy as np
import torch

from bartsmiles.tasks.property_data import PropertyDataset

RNG = np.random.default_rng(0)
LENGTHS = RNG.integers(5, 120, size=200)
TOKENS = [[0] + [10] * (n - 2) + [2] for n in LENGTHS]


def _padding(dataset: PropertyDataset, batch_size: int) -> float:
    order = dataset.ordered_indices()
    real = positions = 0
    for start in range(0, len(order), batch_size):
        batch = dataset.collater([dataset[int(i)] for i in order[start:start + batch_size]])
        real += batch["ntokens"]
        positions += batch["net_input"]["src_tokens"].numel()
    return 1.0 - real / positions


def test_buckets_are_sorted_by_length_and_hold_every_molecule_once():
    ds = PropertyDataset(TOKENS, np.zeros(len(TOKENS)), pad=1, eos=2, shuffle=True, seed=3)
    order = ds.ordered_indices()
    assert sorted(order.tolist()) == list(range(len(TOKENS)))
    assert np.all(np.diff(ds.sizes[order]) >= 0)


def test_equal_lengths_are_reshuffled_every_epoch_and_seeded():
    a = PropertyDataset(TOKENS, None, pad=1, eos=2, shuffle=True, seed=3)
    b = PropertyDataset(TOKENS, None, pad=1, eos=2, shuffle=True, seed=3)
    first = a.ordered_indices()
    assert np.array_equal(first, b.ordered_indices())  # same seed, same epoch: same order
    a.set_epoch(2)
    assert not np.array_equal(first, a.ordered_indices())  # ties reshuffled
    assert np.array_equal(np.sort(a.sizes[first]), a.sizes[a.ordered_indices()])


def test_buckets_pad_far_less_than_random_batches():
    sorted_ds = PropertyDataset(TOKENS, None, pad=1, eos=2, shuffle=True, seed=3)
    random_ds = PropertyDataset(TOKENS, None, pad=1, eos=2, shuffle=True, seed=3, length_sorted=False)
    assert _padding(random_ds, 32) > 0.3
    assert _padding(sorted_ds, 32) < _padding(random_ds, 32) / 3
    assert not np.all(np.diff(random_ds.sizes[random_ds.ordered_indices()]) >= 0)


def test_collater_ids_restore_input_order():
    ds = PropertyDataset(TOKENS[:10], np.arange(10, dtype=float), pad=1, eos=2, shuffle=False)
    batch = ds.collater([ds[int(i)] for i in ds.ordered_indices()])
    assert torch.equal(batch["target"][:, 0], batch["id"].float())
