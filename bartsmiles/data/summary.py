"""The main job on the shipped defaults: a dataset's path through the data layer, summarized.

``bartsmiles run`` loads a MoleculeNet dataset (invalid SMILES reported with their row
numbers), tokenizes it with the shipped vocabulary, splits it (scaffold by default, exactly as
in the benchmark protocol) and prints what a user needs before training: sizes, label balance
per split part, token lengths, ``<unk>`` and overlong counts.  It writes the split as JSON and the
dropped rows as CSV, so the same split can be fed to fine-tuning.
"""
from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

import numpy as np

from bartsmiles.core.chem import canonicalize
from bartsmiles.core.encoding import encode_many
from bartsmiles.core.splits import make_split
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.data.datasets import load_dataset

MAX_POSITIONS = 128


def shipped_vocabulary() -> Vocabulary:
    """The vocabulary of the shipped model (``bartsmiles/pretrained/dict.txt``)."""

    return Vocabulary.load(str(resources.files("bartsmiles.pretrained") / "dict.txt"))


def summarize(name: str, data_dir=None, *, split: str = "scaffold", seed: int = 0, canonical: bool = True):
    """``(summary dict, Split, MolDataset)`` for a registered dataset.

    The token counts are those of the SMILES the model reads: RDKit's canonical form by default
    (as fine-tuning rewrites them), the SMILES as written with ``canonical=False``.
    """
    t0 = time.perf_counter()
    ds = load_dataset(name, data_dir)
    vocab = shipped_vocabulary()
    read = [canonicalize(s) for s in ds.smiles] if canonical else ds.smiles
    ids, stats = encode_many(read, vocab, n_jobs=1, max_positions=None)
    lengths = np.array([len(x) for x in ids])  # <s> and </s> included
    sp = make_split(split, ds.smiles, seed=seed)
    parts = {}
    for part, idx in (("train", sp.train), ("valid", sp.valid), ("test", sp.test)):
        lab = ds.labels[idx]
        if ds.task_type == "classification":
            balance = float(np.nanmean(lab)) if np.isfinite(lab).any() else float("nan")
            parts[part] = {"n": len(idx), "positive_fraction": round(balance, 3)}
        else:
            parts[part] = {"n": len(idx), "mean": round(float(np.nanmean(lab)), 3), "std": round(float(np.nanstd(lab)), 3)}
    summary = {
        "dataset": name,
        "rows_kept": len(ds),
        "invalid_rows": [r.row for r in ds.invalid],
        "tasks": ds.task_names if len(ds.task_names) <= 12 else f"{len(ds.task_names)} tasks",
        "task_type": ds.task_type,
        "missing_label_fraction": round(float(np.isnan(ds.labels).mean()), 4),
        "tokens": {
            "smiles": "canonical" if canonical else "as written",
            "total": stats.n_tokens,
            "unk": stats.n_unk,
            "length_median": int(np.median(lengths)),
            "length_max": int(lengths.max()),
            f"over_{MAX_POSITIONS}_positions": int((lengths > MAX_POSITIONS).sum()),
        },
        "split": {"kind": sp.kind, "seed": sp.seed, "checksum": sp.checksum()[:16], **parts},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return summary, sp, ds


def run_summary(name: str, data_dir=None, *, split: str = "scaffold", seed: int = 0, out=None):
    """Summarize, print, write the split JSON (and the invalid rows); returns ``(summary, Split, MolDataset)``."""
    s, sp, ds = summarize(name, data_dir, split=split, seed=seed)
    out_dir = Path(out) if out else Path("runs") / f"{name}_{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    sp.save(out_dir / "split.json")
    if ds.invalid:
        ds.write_invalid_report(out_dir / "invalid_rows.csv")
    (out_dir / "summary.json").write_text(json.dumps(s, indent=2))

    print(f"bartsmiles run: {name} ({s['task_type']}, tasks: {s['tasks']})")
    print(f"  rows kept {s['rows_kept']}, invalid SMILES dropped {len(s['invalid_rows'])}"
          + (f" at rows {s['invalid_rows'][:20]} (see {out_dir / 'invalid_rows.csv'})" if s["invalid_rows"] else ""))
    t = s["tokens"]
    print(f"  tokens {t['total']} ({t['smiles']} SMILES, <unk> {t['unk']}), length median {t['length_median']}, max {t['length_max']}, "
          f"{t[f'over_{MAX_POSITIONS}_positions']} SMILES over {MAX_POSITIONS} positions")
    print(f"  {s['split']['kind']} split (checksum {s['split']['checksum']}):")
    for part in ("train", "valid", "test"):
        info = s["split"][part]
        extra = ", ".join(f"{k} {v}" for k, v in info.items() if k != "n")
        print(f"    {part:5s} {info['n']:6d}  {extra}")
    print(f"  wrote {out_dir / 'split.json'} and {out_dir / 'summary.json'} in {s['seconds']} s")
    return s, sp, ds
