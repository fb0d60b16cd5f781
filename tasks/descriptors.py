"""Descriptor targets beside binarized pretraining data: built once, read per batch.

Layout, for a data folder ``DATA`` made by ``bartsmiles preprocess`` (each shard has its own)::

    DATA/descriptors/train.npy   float32, (rows, len(DESCRIPTOR_NAMES)), raw RDKit values
    DATA/descriptors/valid.npy
    DATA/descriptors/stats.json  names, the train rows' mean and std, failures, versions

Row ``i`` of ``split.npy`` belongs to row ``i`` of the binarized ``split`` (the sample id that
fairseq's datasets carry), because the SMILES are decoded from the binarized rows themselves.
A row RDKit cannot parse (for example a SMILES cut at 126 tokens) is NaN and is reported in
``stats.json``; it gets no descriptor loss. Index space: sample id (row of the binarized split).

:class:`DescriptorTargets` standardizes with the train mean and std on the fly, clips to
``±CLIP`` standard deviations and turns non-finite values (and constant columns) into NaN,
which the loss masks.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from fairseq.data import BaseWrapperDataset, Dictionary, data_utils
from tqdm.auto import tqdm

from bartsmiles._version import __version__
from bartsmiles.core.descriptors import DESCRIPTOR_NAMES, descriptor_table

__all__ = ["CLIP", "DescriptorTargets", "DescriptorTargetsDataset", "build_descriptor_cache",
           "cache_folder", "has_descriptor_cache"]

#: standardized targets are clipped to this many standard deviations
CLIP = 6.0
#: a column whose train std is below this is constant and never trained
_MIN_STD = 1e-6
_FAILED_EXAMPLES = 20


def cache_folder(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "descriptors"


def _bin_size(data_dir: Path, split: str) -> int:
    path = data_dir / f"{split}.bin"
    return path.stat().st_size if path.is_file() else -1


def has_descriptor_cache(data_dir: str | os.PathLike, splits: tuple[str, ...] = ("train", "valid")) -> bool:
    """True when ``data_dir`` holds a current descriptor cache for ``splits``.

    Current: the same descriptor names as this bartsmiles computes, and made from binarized files
    of the same size (a re-binarized corpus needs a new cache).
    """
    data_dir = Path(data_dir)
    folder = cache_folder(data_dir)
    stats_file = folder / "stats.json"
    if not stats_file.is_file() or not all((folder / f"{s}.npy").is_file() for s in splits):
        return False
    stats = json.loads(stats_file.read_text())
    if tuple(stats.get("names", ())) != DESCRIPTOR_NAMES:
        return False
    return all(stats["splits"].get(s, {}).get("bin_bytes") == _bin_size(data_dir, s) for s in splits)


def _decoded_smiles(data_dir: Path, split: str, dictionary: Dictionary) -> list[str]:
    dataset = data_utils.load_indexed_dataset(str(data_dir / split), dictionary)
    if dataset is None:
        raise FileNotFoundError(f"{data_dir / split}.bin/.idx not found: binarize with `bartsmiles preprocess`")
    symbols = dictionary.symbols
    eos = dictionary.eos()
    out = []
    for i in range(len(dataset)):
        ids = dataset[i].tolist()
        out.append("".join(symbols[t] for t in ids if t != eos))
    return out


def build_descriptor_cache(data_dir: str | os.PathLike, *, splits: tuple[str, ...] = ("train", "valid"),
                           n_jobs: int = 0, progress: bool = True) -> dict:
    """Compute and write the descriptor cache of ``data_dir``; returns what ``stats.json`` holds.

    The SMILES are decoded from the binarized rows, so the cache matches the data exactly.
    The mean and std are those of the finite train values.
    """
    data_dir = Path(data_dir)
    dictionary = Dictionary.load(str(data_dir / "dict.txt"))
    folder = cache_folder(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    report: dict = {"names": list(DESCRIPTOR_NAMES), "splits": {}, "bartsmiles": __version__}
    started = time.time()
    train_values = None
    for split in splits:
        smiles = _decoded_smiles(data_dir, split, dictionary)
        with tqdm(total=len(smiles), desc=f"descriptors {split}", unit="mol", disable=not progress) as bar:
            table = descriptor_table(smiles, n_jobs=n_jobs, progress=bar.update)
        failed = np.flatnonzero(np.isnan(table).all(axis=1))
        tmp = folder / f"{split}.tmp.npy"
        np.save(tmp, table)
        os.replace(tmp, folder / f"{split}.npy")
        report["splits"][split] = {
            "rows": len(smiles),
            "bin_bytes": _bin_size(data_dir, split),
            "unparsable": int(failed.size),
            "unparsable_examples": [{"row": int(i), "smiles": smiles[i]} for i in failed[:_FAILED_EXAMPLES]],
            "nonfinite_values": int((~np.isfinite(table)).sum() - failed.size * table.shape[1]),
        }
        if split == "train":
            train_values = table
    if train_values is None:
        raise ValueError("the descriptor cache needs the train split (its mean and std standardize every split)")
    finite = np.where(np.isfinite(train_values), train_values, np.nan).astype(np.float64)
    report["mean"] = np.nan_to_num(np.nanmean(finite, axis=0)).tolist()
    report["std"] = np.nan_to_num(np.nanstd(finite, axis=0)).tolist()
    report["seconds"] = round(time.time() - started, 1)
    try:  # lazy: the version is only recorded, and RDKit is optional for the plugin
        from rdkit import __version__ as rdkit_version
    except ImportError:  # pragma: no cover - descriptor_table would have failed first
        rdkit_version = "unknown"
    report["rdkit"] = rdkit_version
    (folder / "stats.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


class DescriptorTargets:
    """Standardized descriptor rows of one split, looked up by sample id (memory-mapped)."""

    def __init__(self, data_dir: str | os.PathLike, split: str):
        folder = cache_folder(data_dir)
        path = folder / f"{split}.npy"
        if not path.is_file() or not (folder / "stats.json").is_file():
            raise FileNotFoundError(
                f"no descriptor cache for split {split!r} in {folder}: build it with "
                f"`bartsmiles preprocess-descriptors {data_dir}` (bartsmiles pretrain does it for you)")
        stats = json.loads((folder / "stats.json").read_text())
        if tuple(stats["names"]) != DESCRIPTOR_NAMES:
            raise ValueError(f"{folder / 'stats.json'} lists other descriptors than this bartsmiles computes: "
                             f"rebuild it with `bartsmiles preprocess-descriptors {data_dir}`")
        self.values = np.load(path, mmap_mode="r")
        self.mean = np.asarray(stats["mean"], dtype=np.float32)
        std = np.asarray(stats["std"], dtype=np.float32)
        self.usable = std > _MIN_STD
        self.std = np.where(self.usable, std, 1.0).astype(np.float32)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    def __getitem__(self, ids) -> np.ndarray:
        rows = np.asarray(self.values[np.asarray(ids, dtype=np.int64)], dtype=np.float32)
        z = np.clip((rows - self.mean) / self.std, -CLIP, CLIP)
        z[:, ~self.usable] = np.nan
        z[~np.isfinite(rows)] = np.nan
        return z


class DescriptorTargetsDataset(BaseWrapperDataset):
    """Adds ``sample["descriptors"]`` (``(batch, dim)`` float, NaN = no target) to each batch."""

    def __init__(self, dataset, targets: DescriptorTargets):
        super().__init__(dataset)
        if len(targets) != len(dataset):
            raise ValueError(f"the descriptor cache has {len(targets)} rows but the data has {len(dataset)}: "
                             f"rebuild it with `bartsmiles preprocess-descriptors`")
        self.targets = targets

    def collater(self, samples):
        batch = self.dataset.collater(samples)
        if batch and "id" in batch:
            batch["descriptors"] = torch.from_numpy(self.targets[batch["id"].numpy()])
        return batch

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return self.dataset.can_reuse_epoch_itr_across_epochs
