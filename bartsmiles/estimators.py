"""scikit-learn estimators that fine-tune BARTSmiles: :class:`BartSmilesClassifier`, :class:`BartSmilesRegressor`.

>>> clf = BartSmilesClassifier(epochs=10, average_last=4).fit(smiles, y)
>>> clf.predict_proba(new_smiles)[:, 1]          # single task: sklearn's (n, 2) convention
>>> clf.save("my_model"); BartSmilesClassifier.load("my_model").predict(new_smiles)

``fit`` writes the molecules to a CSV plus a split file and calls
:func:`bartsmiles.finetuning.finetune` -- the same ``fairseq-train`` code path as
``bartsmiles finetune`` -- so the model is the paper's recipe (Adam, polynomial decay with 16 %
warmup, clip-norm 0.1, weight decay 0.01) with the hyperparameters given here.

Parameters (stored as given, as scikit-learn requires; ``get_params``/``set_params``/``clone`` work):

``pretrained``
    checkpoint file or model folder to start from. ``None``: the shipped model
    (``bartsmiles/pretrained/model.pt``) if it is installed, else random weights of ``arch``.
    ``""`` always means random weights of ``arch``.
``arch``
    architecture used without a pretrained checkpoint (default ``bartsmiles_small``).
``epochs``, ``batch_size``, ``lr``, ``dropout``, ``seed``
    as in :class:`~bartsmiles.finetuning.FinetuneConfig`; ``seed`` also seeds the internal
    validation split.
``pos_weight`` (classifier)
    ``"none"``, ``"auto"`` (n_neg / n_pos per task) or a number.
``average_last``
    ``k > 0``: predict with the average of ``k`` consecutive epoch checkpoints ending at the best
    validation epoch (:func:`bartsmiles.averaging.average_last_epochs`; the paper uses 4). All
    epoch checkpoints are then kept on disk during fit. ``0``: the best checkpoint.
``grid``
    ``None`` or a dict with lists under ``"lr"`` and/or ``"dropout"``: one fine-tuning run per
    combination, selected on the validation metric (:func:`bartsmiles.finetuning.grid_search`);
    ``best_params_`` and ``grid_results_`` record the outcome.
``valid_fraction``
    size of the internal validation split when ``fit`` gets no ``valid=`` (default 0.1). The split
    is random, seeded with ``seed``; for classification it is stratified on the first task's
    labels so that the validation ROC-AUC is defined.
``work_dir``
    folder for the runs (one ``fit-*`` subfolder per fit). ``None``: a temporary folder that is
    deleted when the estimator is garbage-collected -- use :meth:`save` to keep a model.
``cpu``
    ``True``/``False`` to force; ``None``: CPU exactly when no GPU is visible.
``progress``
    ``False`` silences fairseq's training log.

Inputs: ``smiles`` may be a list, a NumPy array, a pandas Series, or a DataFrame with one column
(or a column named ``smiles``); ``y`` a list/array/Series (one task) or a 2-D array/DataFrame
(several tasks, NaN = missing label, masked out of the loss). In ``fit``, invalid SMILES are
dropped with a warning naming their row numbers (``invalid_rows_``). In ``predict*`` they get NaN
and never shift rows; SMILES longer than the model's positions are truncated, as in training.

Outputs: :meth:`BartSmilesClassifier.predict_proba` returns, for a **single task**, scikit-learn's
``(n, 2)`` array ``[P(classes_[0]), P(classes_[1])]``; for several tasks an ``(n, n_tasks)``
array of positive-class probabilities. ``predict`` returns ``(n,)`` for one task and
``(n, n_tasks)`` otherwise. :meth:`predict_frame` returns a DataFrame with one column per task
and an ``error`` column. ``score`` is the masked mean ROC-AUC over tasks (classifier; the
field's metric rather than accuracy) and the mean R² over tasks (regressor, scikit-learn's
convention; RMSE is in ``valid_score_`` when the metric is rmse).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, RegressorMixin

from .estimator_base import (  # noqa: F401  (re-exported)
    _GRID_KEYS, ESTIMATOR_FILE, _as_float, _BartSmilesEstimator, _check_smiles, _silenced, _smiles_list,
    _task_names, _text, _validation_split,
)

__all__ = ["BartSmilesClassifier", "BartSmilesRegressor", "ESTIMATOR_FILE"]


class BartSmilesClassifier(ClassifierMixin, _BartSmilesEstimator):
    """Fine-tuned BARTSmiles classifier (one or several binary tasks); see the module docstring."""

    _task_type = "classification"

    def __init__(self, pretrained=None, arch="bartsmiles_small", epochs=10, batch_size=16, lr=3e-5, dropout=0.1,
                 seed=1, pos_weight="none", average_last=0, grid=None, valid_fraction=0.1, work_dir=None,
                 cpu=None, progress=True):
        self.pretrained = pretrained
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.dropout = dropout
        self.seed = seed
        self.pos_weight = pos_weight
        self.average_last = average_last
        self.grid = grid
        self.valid_fraction = valid_fraction
        self.work_dir = work_dir
        self.cpu = cpu
        self.progress = progress

    def _encode_labels(self, y: Any, refit: bool = True) -> np.ndarray:
        values, one_d = self._labels_2d(y)
        if one_d:
            column = values[:, 0]
            missing = np.asarray(pd.isna(column), dtype=bool)
            observed = column[~missing]
            if refit:
                try:
                    classes = np.unique(observed.astype(np.float64))
                    if np.all(classes == np.round(classes)):
                        classes = classes.astype(np.int64)
                except (TypeError, ValueError):
                    classes = np.unique(observed.astype(str))
                if classes.size != 2:
                    raise ValueError(f"a single-task classifier needs exactly 2 classes in y, got {classes.tolist()}")
                self.classes_ = classes
            numeric = self.classes_.dtype.kind in "if"
            known = self.classes_.astype(np.float64) if numeric else self.classes_.astype(str)
            out = np.full(len(column), np.nan)
            for i in np.flatnonzero(~missing):
                try:
                    key = float(column[i]) if numeric else str(column[i])
                except (TypeError, ValueError):
                    key = None
                hit = np.flatnonzero(known == key) if key is not None else []
                if len(hit) != 1:
                    raise ValueError(f"label {column[i]!r} at row {i} is not one of the classes {self.classes_.tolist()}")
                out[i] = float(hit[0])
            return out.reshape(-1, 1)
        out = _as_float(values, "y")
        bad = ~np.isnan(out) & ~np.isin(out, (0.0, 1.0))
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise ValueError(f"multi-task labels must be 0, 1 or NaN; row {i}, task {j} is {out[i, j]!r}")
        if refit:
            self.classes_ = np.array([0, 1])
        return out

    def _restore_fitted(self, fitted: dict) -> None:
        self.classes_ = np.asarray(fitted["classes_"])

    def _fitted_state(self) -> dict:
        return {**super()._fitted_state(), "classes_": np.asarray(self.classes_).tolist()}

    def predict_proba(self, smiles: Any) -> np.ndarray:
        """Single task: ``(n, 2)`` = [P(classes_[0]), P(classes_[1])]; several: ``(n, n_tasks)`` P(1). NaN rows for invalid SMILES."""
        preds, _ = self._raw_predict(smiles)
        if self.n_tasks_ == 1:
            return np.column_stack([1.0 - preds[:, 0], preds[:, 0]])
        return preds

    def predict(self, smiles: Any) -> np.ndarray:
        """Class labels (threshold 0.5). Single task: ``(n,)`` of ``classes_`` values (NaN, or None
        for non-numeric classes, where the SMILES is invalid); several tasks: ``(n, n_tasks)`` of 0/1/NaN."""
        proba = self.predict_proba(smiles)
        if self.n_tasks_ > 1:
            return np.where(np.isnan(proba), np.nan, (proba >= 0.5).astype(np.float64))
        p = proba[:, 1]
        invalid = np.isnan(p)
        picked = self.classes_[(np.nan_to_num(p) >= 0.5).astype(np.int64)]
        if not invalid.any():
            return picked
        if self.classes_.dtype.kind in "if":
            out = picked.astype(np.float64)
            out[invalid] = np.nan
        else:
            out = picked.astype(object)
            out[invalid] = None
        return out

    def score(self, smiles: Any, y: Any, sample_weight=None) -> float:
        """Mean ROC-AUC over the tasks (masked; rows with invalid SMILES left out)."""
        from .metrics import roc_auc

        if sample_weight is not None:
            raise ValueError("sample_weight is not supported")
        Y = self._encode_labels(y, refit=False)
        preds, _ = self._raw_predict(smiles)
        keep = ~np.isnan(preds).any(axis=1)
        return roc_auc(Y[keep], preds[keep])[0]


class BartSmilesRegressor(RegressorMixin, _BartSmilesEstimator):
    """Fine-tuned BARTSmiles regressor (one or several targets); see the module docstring.

    Targets are standardized with the training mean/std for training; predictions are in the
    original units.
    """

    _task_type = "regression"

    def __init__(self, pretrained=None, arch="bartsmiles_small", epochs=10, batch_size=16, lr=3e-5, dropout=0.1,
                 seed=1, average_last=0, grid=None, valid_fraction=0.1, work_dir=None, cpu=None, progress=True):
        self.pretrained = pretrained
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.dropout = dropout
        self.seed = seed
        self.average_last = average_last
        self.grid = grid
        self.valid_fraction = valid_fraction
        self.work_dir = work_dir
        self.cpu = cpu
        self.progress = progress

    def _encode_labels(self, y: Any, refit: bool = True) -> np.ndarray:
        values, _ = self._labels_2d(y)
        out = _as_float(values, "y")
        if np.isinf(out).any():
            raise ValueError("y contains infinite values")
        return out

    def predict(self, smiles: Any) -> np.ndarray:
        """Values in the original units: ``(n,)`` for one target, ``(n, n_tasks)`` otherwise; NaN for invalid SMILES."""
        preds, _ = self._raw_predict(smiles)
        return preds[:, 0] if self.n_tasks_ == 1 else preds

    def score(self, smiles: Any, y: Any, sample_weight=None) -> float:
        """Mean R² over the targets (masked; rows with invalid SMILES left out)."""
        from sklearn.metrics import r2_score

        if sample_weight is not None:
            raise ValueError("sample_weight is not supported")
        Y = self._encode_labels(y, refit=False)
        preds, _ = self._raw_predict(smiles)
        values = []
        for j in range(Y.shape[1]):
            mask = ~np.isnan(Y[:, j]) & ~np.isnan(preds[:, j])
            if mask.sum() >= 2:
                values.append(float(r2_score(Y[mask, j], preds[mask, j])))
        if not values:
            raise ValueError("score: no target has two or more labelled, predictable rows")
        return float(np.mean(values))
