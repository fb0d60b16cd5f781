"""Hyperparameter grid search: one fine-tuning run per (lr, dropout), selected on the validation metric."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from bartsmiles.training.finetuning import FinetuneConfig
from bartsmiles.core.metrics import METRIC_DIRECTION
from bartsmiles.errors import FinetuneError
from bartsmiles.training.finetuning import finetune

logger = logging.getLogger(__name__)


def _grid_dir(save_dir: str, lr: float, dropout: float) -> str:
    return os.path.join(save_dir, f"lr{lr:g}_dropout{dropout:g}")


def grid_search(cfg: FinetuneConfig, lrs: Sequence[float] = (5e-6, 1e-5, 3e-5),
                dropouts: Sequence[float] = (0.1, 0.2, 0.3)) -> tuple[FinetuneConfig, list[dict]]:
    """Fine-tune once per (lr, dropout) and select on the validation metric (the paper's grid).

    Each combination runs :func:`finetune` in its own folder ``SAVE_DIR/lr{lr}_dropout{dropout}``
    (so an interrupted search resumes run by run).  The best run has the highest validation
    ROC-/PRC-AUC, or the lowest RMSE; ties go to the earlier combination (lrs outer, dropouts
    inner).  Returns ``(best_cfg, table)``: ``best_cfg`` is ``cfg`` with the winning ``lr``,
    ``dropout`` and ``save_dir``; ``table`` has one dict per run (``lr``, ``dropout``,
    ``save_dir``, ``best_checkpoint``, ``metric``, ``valid``, ``test``, ``seconds``, ``best``),
    also written to ``SAVE_DIR/grid_search.json``.  Test scores are reported, never used to select.
    """

    lrs, dropouts = [float(v) for v in lrs], [float(v) for v in dropouts]
    if not lrs or not dropouts:
        raise FinetuneError("grid_search needs at least one learning rate and one dropout")
    table: list[dict] = []
    configs: list[FinetuneConfig] = []
    for lr in lrs:
        for dropout in dropouts:
            run_cfg = dataclasses.replace(cfg, lr=lr, dropout=dropout, save_dir=_grid_dir(cfg.save_dir, lr, dropout))
            logger.info("grid search: lr=%g dropout=%g -> %s", lr, dropout, run_cfg.save_dir)
            result = finetune(run_cfg)
            configs.append(run_cfg)
            table.append({"lr": lr, "dropout": dropout, "save_dir": result.save_dir,
                          "best_checkpoint": result.best_checkpoint, "metric": result.metric,
                          "valid": result.best_valid_metric, "test": result.test_metric,
                          "seconds": result.seconds, "best": False})
    metric = table[0]["metric"]
    sign = 1.0 if METRIC_DIRECTION.get(metric, "max") == "max" else -1.0
    usable = [i for i, row in enumerate(table) if row["valid"] is not None and math.isfinite(row["valid"])]
    if not usable:
        raise FinetuneError(f"grid search: no run has a finite validation {metric}")
    winner = max(usable, key=lambda i: (sign * table[i]["valid"], -i))
    table[winner]["best"] = True
    Path(cfg.save_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.save_dir) / "grid_search.json").write_text(json.dumps(table, indent=2))
    return configs[winner], table


__all__ = ["grid_search"]
