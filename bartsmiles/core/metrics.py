"""Masked evaluation metrics, as PROTOCOL.md defines them.

* Labels may be ``(n,)`` or ``(n, t)``; ``NaN`` marks a missing label and that entry
  is left out (per task for classification, per entry for RMSE).
* Classification: each task is scored on its labelled rows; a task whose labelled
  rows are all one class (or that has no labelled rows) cannot be scored and is
  reported as ``None``; the result is the mean over the scored tasks. An AUC below
  0.5 is reported as is (no flipping).
* Regression: RMSE over every labelled entry, in the units given.

Bad input fails loudly: mismatched shapes, classification labels other than 0/1,
NaN/inf predictions where a label exists, or nothing at all to score.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from bartsmiles.errors import PropertyDataError

__all__ = ["roc_auc", "prc_auc", "rmse", "score", "default_metric", "METRIC_DIRECTION", "METRICS"]

METRIC_DIRECTION: dict[str, str] = {"roc_auc": "max", "prc_auc": "max", "rmse": "min"}
#: The metrics that fit each task type; the first is the default.
METRICS: dict[str, tuple[str, ...]] = {"classification": ("roc_auc", "prc_auc"), "regression": ("rmse",)}


def default_metric(task_type: str, metric: str = "") -> str:
    """``metric`` if it fits ``task_type``, else the task type's default (ROC-AUC, RMSE).

    Raises :class:`~bartsmiles.errors.PropertyDataError` for an unknown task type or a metric that
    does not fit it.
    """
    if task_type not in METRICS:
        raise PropertyDataError(f"task type must be one of {tuple(METRICS)}, got {task_type!r}")
    metric = metric or METRICS[task_type][0]
    if metric not in METRICS[task_type]:
        raise PropertyDataError(f"metric {metric!r} does not fit a {task_type} task; choose one of {METRICS[task_type]}")
    return metric


def _as_2d(y_true: object, y_pred: object, what: str) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.shape != pred.shape:
        raise ValueError(f"{what}: labels have shape {true.shape} but predictions have shape {pred.shape}")
    if true.ndim == 1:
        true, pred = true[:, None], pred[:, None]
    elif true.ndim != 2:
        raise ValueError(f"{what}: expected 1-D (n,) or 2-D (n, tasks) arrays, got shape {true.shape}")
    if true.shape[0] == 0:
        raise ValueError(f"{what}: no rows to score")
    observed = ~np.isnan(true)
    bad = observed & ~np.isfinite(pred)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise ValueError(f"{what}: prediction at row {i}, task {j} is {pred[i, j]} where a label exists")
    return true, pred


def _per_task(
    y_true: object,
    y_score: object,
    fn: Callable[[np.ndarray, np.ndarray], float],
    what: str,
) -> tuple[float, list[float | None]]:
    true, pred = _as_2d(y_true, y_score, what)
    per_task: list[float | None] = []
    for j in range(true.shape[1]):
        mask = ~np.isnan(true[:, j])
        labels = true[mask, j]
        if labels.size and not np.isin(labels, (0.0, 1.0)).all():
            bad = labels[~np.isin(labels, (0.0, 1.0))][0]
            raise ValueError(f"{what}: classification labels must be 0 or 1; task {j} has {bad}")
        if np.unique(labels).size < 2:
            per_task.append(None)  # no labels, or a single class: the metric is undefined
            continue
        per_task.append(float(fn(labels, pred[mask, j])))
    scored = [v for v in per_task if v is not None]
    if not scored:
        raise ValueError(f"{what}: no task has both classes among its labelled rows; nothing to score")
    return float(np.mean(scored)), per_task


def roc_auc(y_true: object, y_score: object) -> tuple[float, list[float | None]]:
    """Mean ROC-AUC over scorable tasks and the per-task values (``None`` = skipped)."""
    return _per_task(y_true, y_score, roc_auc_score, "roc_auc")


def prc_auc(y_true: object, y_score: object) -> tuple[float, list[float | None]]:
    """Mean PRC-AUC (scikit-learn ``average_precision_score``) over scorable tasks, and per task."""
    return _per_task(y_true, y_score, average_precision_score, "prc_auc")


def rmse(y_true: object, y_pred: object) -> float:
    """Root mean squared error over every labelled entry (NaN labels are skipped)."""
    true, pred = _as_2d(y_true, y_pred, "rmse")
    mask = ~np.isnan(true)
    if not mask.any():
        raise ValueError("rmse: every label is missing; nothing to score")
    diff = true[mask] - pred[mask]
    return float(np.sqrt(np.mean(diff * diff)))


def score(metric: str, y_true: object, y_pred: object) -> float:
    """The headline number of ``metric`` (a registry metric name: roc_auc, prc_auc, rmse)."""
    if metric == "roc_auc":
        return roc_auc(y_true, y_pred)[0]
    if metric == "prc_auc":
        return prc_auc(y_true, y_pred)[0]
    if metric == "rmse":
        return rmse(y_true, y_pred)
    raise ValueError(f"unknown metric {metric!r}; known metrics: {sorted(METRIC_DIRECTION)}")
