"""The README's main job: fine-tune the shipped model on a MoleculeNet set and compare.

``bartsmiles run`` (BBBP, scaffold split, seed 0 by default) does, in order:

1. the data summary of :mod:`bartsmiles.data.summary` (rows, invalid SMILES with their row numbers,
   tokens, the protocol's scaffold split, written as ``OUT/split.json``);
2. the ECFP4 + random-forest peer of PROTOCOL.md on that split;
3. a linear head on the shipped model's frozen encoder features (:mod:`bartsmiles.evaluation.frozen`);
4. fine-tuning of the shipped model on the train part, the best epoch chosen on the valid part
   (:func:`bartsmiles.training.finetuning.finetune`, a progress bar per epoch);

and prints the three test scores side by side with their wall times.  Everything goes to
``OUT/main_job.json`` (settings, scores, seconds, machine).  The defaults (5 epochs, batch 32,
peak learning rate 1e-4) are the CPU recipe of the committed benchmark table; the main job adds
length-sorted batches and a cap of 2,048 padded positions per batch, which bring it under
4 minutes and 2 GB on 2 CPU cores (README, "What make run prints").
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from bartsmiles.core.splits import SPLIT_KINDS
from bartsmiles.data.registry import get_spec
from bartsmiles.data.summary import run_summary
from bartsmiles.evaluation.baselines import run_ecfp4_rf
from bartsmiles.evaluation.frozen import run_frozen
from bartsmiles.evaluation.machine import machine_info
from bartsmiles.model.pretrained import load_pretrained
from bartsmiles.model.resolve import resolve_checkpoint
from bartsmiles.training.config import help_field as _help
from bartsmiles.training.finetuning import FinetuneConfig, finetune


@dataclass
class MainJobConfig:
    """Settings of ``bartsmiles run``."""

    dataset: str = _help("registered MoleculeNet dataset", default="bbbp")
    data_dir: str = _help("folder holding the data (default: $BARTSMILES_DATA, then the cache)", default="")
    split: str = _help("scaffold | random", default="scaffold", choices=SPLIT_KINDS)
    seed: int = _help("seed of the training run, the forest and a random split", default=0)
    out: str = _help("output folder (default: runs/<dataset>_<split>)", default="")
    model: str = _help("pretrained model: a .pt file, a model folder or a run folder; empty: the shipped model", default="")
    finetune: bool = _help("fine-tune (False: the data summary and the peers only)", default=True)
    epochs: int = _help("fine-tuning epochs", default=5)
    batch_size: int = _help("molecules per fine-tuning batch", default=32)
    lr: float = _help("peak fine-tuning learning rate", default=1e-4)
    length_sorted_batches: bool = _help("fine-tune on length-sorted batches: about twice as fast; within seed noise "
                                        "on BBBP over 3 seeds (README, Speed)", default=True)
    max_tokens: int = _help("cap a fine-tuning batch at this many padded token positions (0: no cap): the few "
                            "batches of long molecules get fewer of them, and peak memory stays under 2 GB",
                            default=2048)
    rf_trees: int = _help("trees of the ECFP4 random forest (protocol: 500)", default=500)
    progress: bool = _help("progress bar per fine-tuning epoch", default=True)


def run_main_job(cfg: MainJobConfig) -> dict:
    """Run the main job (see the module docstring); returns what ``main_job.json`` holds."""

    if cfg.finetune and (cfg.epochs < 1 or cfg.batch_size < 1):
        raise ValueError(f"epochs and batch_size must be >= 1 (got {cfg.epochs}, {cfg.batch_size})")
    model_file = str(resolve_checkpoint(cfg.model or None))  # a .pt file, a model or run folder, or the shipped model
    t_start = time.perf_counter()
    out = Path(cfg.out or f"runs/{cfg.dataset}_{cfg.split}")
    summary, split, dataset = run_summary(cfg.dataset, cfg.data_dir or None, split=cfg.split, seed=cfg.seed,
                                          out=out)
    metric = get_spec(cfg.dataset).metric
    rows: list[dict] = []

    t0 = time.perf_counter()
    rf = run_ecfp4_rf(dataset, split, cfg.seed, metric=metric, n_estimators=cfg.rf_trees)
    rows.append({"model": f"ECFP4 + random forest ({cfg.rf_trees} trees)", "key": "ecfp4_rf",
                 "test": rf["value"], "seconds": round(time.perf_counter() - t0, 1)})
    t0 = time.perf_counter()
    frozen = run_frozen(dataset, split, cfg.seed, load_pretrained(model_file), metric=metric)
    rows.append({"model": "bartsmiles frozen features + linear head", "key": "bartsmiles_frozen",
                 "test": frozen["value"], "seconds": round(time.perf_counter() - t0, 1)})
    finetuned: Optional[dict] = None
    if cfg.finetune:
        t0 = time.perf_counter()
        result = finetune(FinetuneConfig(
            data=cfg.dataset, data_dir=cfg.data_dir, pretrained=model_file, split=str(out / "split.json"),
            save_dir=str(out / "finetune"), epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
            max_tokens=cfg.max_tokens, length_sorted_batches=cfg.length_sorted_batches,
            seed=cfg.seed, keep_last_epochs=0, log_file=str(out / "finetune" / "train.log"),
            progress=cfg.progress))
        finetuned = result.to_json()
        rows.insert(0, {"model": f"bartsmiles fine-tuned ({cfg.epochs} epochs)", "key": "bartsmiles",
                        "test": result.test_metric, "valid": result.best_valid_metric,
                        "seconds": round(time.perf_counter() - t0, 1),
                        "checkpoint": result.best_checkpoint})
    report = {"config": asdict(cfg), "pretrained": model_file, "metric": metric, "split_checksum": split.checksum(),
              "summary": summary, "results": rows, "finetune": finetuned, "machine": machine_info(),
              "seconds": round(time.perf_counter() - t_start, 1)}
    (out / "main_job.json").write_text(json.dumps(report, indent=2, default=str))
    _print(report, cfg, out)
    return report


def _print(report: dict, cfg: MainJobConfig, out: Path) -> None:
    label = {"roc_auc": "ROC-AUC (higher is better)", "prc_auc": "PRC-AUC (higher is better)",
             "rmse": "RMSE (lower is better)"}[report["metric"]]
    print(f"  test {label}, {cfg.split} split, seed {cfg.seed}:")
    for row in report["results"]:
        value = "n/a" if row["test"] is None else f"{row['test']:.3f}"
        print(f"    {row['model']:44s} {value:>7s}   ({row['seconds']:.0f} s)")
    print(f"  wrote {out / 'main_job.json'} ({report['seconds']:.0f} s in all). One seed: see the README's "
          "benchmark table for 3 seeds on 8 datasets.")
