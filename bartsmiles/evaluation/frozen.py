"""Frozen features: a linear model on :meth:`PretrainedModel.encode` vectors.

This is the cheapest honest measure of what pretraining put into the encoder, and it runs
the whole protocol (every dataset, every seed) on a laptop CPU in minutes, where full
fine-tuning takes hours.  The same head on the same-shaped *randomly initialized* encoder is
the control: the gap between the two is the value of pretraining for frozen features.

Recipe (recorded in each run's settings):

1. Features: mean-pooled final encoder states (``pooling="mean"``) of every molecule; SMILES
   longer than the model's positions are truncated, and counted.
2. Standardize each feature with the *train* rows' mean and standard deviation.
3. Per task, on the labelled train rows: classification ``LogisticRegression`` (L2,
   ``lbfgs``), regression ``Ridge`` on the standardized target. The regularization strength
   is chosen on the validation rows from :data:`C_GRID` (``alpha = 1 / C`` for ridge), by
   ROC-AUC or RMSE of that task; test rows are never used to choose.
4. Score the test rows with the protocol's metric (:mod:`bartsmiles.core.metrics`).

A task whose train labels are a single class predicts that class's constant (recorded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score

from bartsmiles.core.metrics import prc_auc, rmse, roc_auc

__all__ = ["C_GRID", "FrozenHead", "run_frozen"]

#: inverse regularization strengths tried on the validation split
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class FrozenHead:
    """Per-task linear heads on standardized features, C chosen on validation rows."""

    task_type: str
    seed: int = 0
    max_iter: int = 2000

    def fit(self, X: np.ndarray, Y: np.ndarray, Xv: np.ndarray, Yv: np.ndarray) -> "FrozenHead":
        if self.task_type not in ("classification", "regression"):
            raise ValueError(f"task_type must be classification or regression, got {self.task_type!r}")
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0) + 1e-8
        Z, Zv = self._z(X), self._z(Xv)
        self.heads_: list[Any] = []
        self.chosen_c_: list[Optional[float]] = []
        for j in range(Y.shape[1]):
            head, c = self._fit_task(Z, Y[:, j], Zv, Yv[:, j])
            self.heads_.append(head)
            self.chosen_c_.append(c)
        return self

    def _z(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_

    def _fit_task(self, Z, y, Zv, yv):
        have = np.isfinite(y)
        Z, y = Z[have], y[have]
        have_v = np.isfinite(yv)
        Zv, yv = Zv[have_v], yv[have_v]
        if self.task_type == "classification" and np.unique(y).size < 2:
            return ("constant", float(y[0]) if y.size else 0.0), None
        if y.size == 0:
            return ("constant", 0.0), None
        best = None
        for c in C_GRID:
            if self.task_type == "classification":
                model = LogisticRegression(C=c, max_iter=self.max_iter, random_state=self.seed).fit(Z, y.astype(int))
                if yv.size and np.unique(yv).size > 1:
                    value = roc_auc_score(yv, model.predict_proba(Zv)[:, 1])
                else:
                    value = 0.0
            else:
                mu, sd = y.mean(), y.std() + 1e-12
                model = (Ridge(alpha=1.0 / c).fit(Z, (y - mu) / sd), mu, sd)
                value = -float(np.sqrt(np.mean((self._ridge(model, Zv) - yv) ** 2))) if yv.size else 0.0
            if best is None or value > best[0]:
                best = (value, model, c)
        return best[1], best[2]

    @staticmethod
    def _ridge(model, Z):
        ridge, mu, sd = model
        return ridge.predict(Z) * sd + mu

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or values in the target's units, one column per task."""
        Z = self._z(X)
        out = np.empty((len(X), len(self.heads_)))
        for j, head in enumerate(self.heads_):
            if isinstance(head, tuple) and head and head[0] == "constant":
                out[:, j] = head[1]
            elif self.task_type == "classification":
                out[:, j] = head.predict_proba(Z)[:, 1]
            else:
                out[:, j] = self._ridge(head, Z)
        return out


def run_frozen(dataset, split, seed: int, model, *, metric: str, batch_size: int = 64) -> dict:
    """Encode ``dataset`` with ``model`` (a :class:`PretrainedModel`), fit, score the test split."""

    train, valid, test = (np.asarray(idx, dtype=np.int64) for idx in (split.train, split.valid, split.test))
    if test.size == 0 or valid.size == 0:
        raise ValueError(f"{dataset.name}: frozen features need non-empty valid and test splits")
    n_truncated = sum(len(model.tokenizer.tokenize(s)) + 2 > model.max_positions for s in dataset.smiles)
    X = model.encode(dataset.smiles, batch_size=batch_size, pooling="mean", progress=False, on_overflow="truncate")
    Y = dataset.labels
    head = FrozenHead(dataset.task_type, seed=seed).fit(X[train], Y[train], X[valid], Y[valid])
    pred = head.predict(X[test])
    per_task = None
    if metric == "roc_auc":
        value, per_task = roc_auc(Y[test], pred)
    elif metric == "prc_auc":
        value, per_task = prc_auc(Y[test], pred)
    elif metric == "rmse":
        value = rmse(Y[test], pred)
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return {"value": float(value), "per_task": per_task, "metric": metric, "n_truncated": int(n_truncated),
            "sizes": {"train": len(train), "valid": len(valid), "test": len(test)},
            "settings": {"pooling": "mean", "standardize": True, "c_grid": list(C_GRID),
                         "chosen_c": head.chosen_c_, "feature_dim": int(X.shape[1]),
                         "head": "LogisticRegression(L2, lbfgs)" if dataset.task_type == "classification"
                         else "Ridge(alpha=1/C) on the standardized target"}}
