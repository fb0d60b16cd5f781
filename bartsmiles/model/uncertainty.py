"""Split-conformal calibration: intervals (regression) and prediction sets (classification).

A :class:`Calibration` holds, per task, the non-conformity scores of a model on held-out
molecules with labels (the validation split, which training used only to pick the best epoch):

* regression: ``|y - prediction|`` in the dataset's own units;
* classification: ``1 - p(true label)``, with ``p(1)`` the predicted probability and ``p(0) = 1 - p(1)``.

For a level ``alpha`` the threshold ``q`` is the ``k``-th smallest of the ``n`` scores with
``k = ceil((n + 1) (1 - alpha))`` (the finite-sample quantile).  Then
``prediction ± q`` (:meth:`Calibration.interval`) and ``{c : 1 - p(c) <= q}``
(:meth:`Calibration.prediction_set`) hold a new molecule's label with probability at least
``1 - alpha`` -- **if** the new molecule and the calibration molecules are exchangeable (drawn
from the same distribution, in no particular order).  The guarantee is marginal (on average
over molecules, not for each molecule) and per task.  A scaffold split puts new scaffolds in
the test set on purpose, so there it is not guaranteed; ``benchmarks/uncertainty.py`` measures
how far off it is.  ``k > n`` (fewer than ``1/alpha - 1`` scores) would need an infinite
interval: :class:`~bartsmiles.errors.CalibrationError`.

All scores are stored, not one threshold, so any ``alpha`` can be asked for later.  The file
is ``conformal.json`` beside the checkpoint, keyed by the checkpoint's file name (a run folder
holds ``checkpoint_best.pt`` and maybe ``checkpoint_avg.pt``; each needs its own scores)::

    cal = load_calibration("runs/esol/checkpoint_best.pt")      # None when there is none
    lower, upper = cal.interval(predictions, alpha=0.1)         # (n, n_tasks) each
    sets = cal.prediction_set(probabilities, alpha=0.1)         # (n, n_tasks, 2) bool: 0, 1 plausible
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from bartsmiles.errors import CalibrationError
from bartsmiles.model.resolve import resolve_checkpoint

__all__ = ["Calibration", "CALIBRATION_FILE", "calibration_file", "load_calibration", "save_calibration",
           "set_labels", "forget_calibration"]

#: the calibration file beside a checkpoint
CALIBRATION_FILE = "conformal.json"
_FORMAT = 1
_TASK_TYPES = ("classification", "regression")


def _check_alpha(alpha: float) -> float:
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise CalibrationError(f"alpha must be a number in (0, 1), got {alpha!r}") from None
    if not 0.0 < alpha < 1.0:
        raise CalibrationError(f"alpha must be in (0, 1) (0.1 for 90 % coverage), got {alpha}")
    return alpha


def _as_2d(values: np.ndarray, n_tasks: int, what: str) -> tuple[np.ndarray, bool]:
    values = np.asarray(values, dtype=np.float64)
    one_d = values.ndim == 1
    if one_d:
        values = values.reshape(-1, 1)
    if values.ndim != 2 or values.shape[1] != n_tasks:
        raise CalibrationError(f"{what} must have shape (n, {n_tasks}) for this calibration, got {values.shape}")
    return values, one_d


@dataclass
class Calibration:
    """Non-conformity scores per task (see the module docstring); build it with :meth:`from_predictions`."""

    task_type: str
    task_names: list[str]
    scores: list[np.ndarray]
    source: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task_type not in _TASK_TYPES:
            raise CalibrationError(f"task_type must be one of {_TASK_TYPES}, got {self.task_type!r}")
        self.task_names = [str(n) for n in self.task_names]
        self.scores = [np.sort(np.asarray(s, dtype=np.float64).ravel()) for s in self.scores]
        if len(self.scores) != len(self.task_names):
            raise CalibrationError(f"{len(self.scores)} score list(s) for {len(self.task_names)} task(s)")
        if any(not np.isfinite(s).all() for s in self.scores):
            raise CalibrationError("calibration scores must be finite")

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def from_predictions(cls, predictions: np.ndarray, labels: np.ndarray, task_type: str,
                         task_names: Optional[Sequence[str]] = None, source: str = "") -> "Calibration":
        """Scores of ``predictions`` (probabilities of class 1, or values) against ``labels``.

        Both are ``(n, n_tasks)`` (or ``(n,)`` for one task); a NaN label (missing) or a NaN
        prediction (a molecule that could not be predicted) leaves that pair out.
        """
        preds = np.asarray(predictions, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        if preds.ndim == 1:
            preds = preds.reshape(-1, 1)
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        if preds.shape != y.shape or preds.ndim != 2:
            raise CalibrationError(f"predictions {preds.shape} and labels {y.shape} must have the same (n, n_tasks) shape")
        names = list(task_names) if task_names is not None else [f"task{j}" for j in range(y.shape[1])]
        if len(names) != y.shape[1]:
            raise CalibrationError(f"{len(names)} task name(s) for {y.shape[1]} label column(s)")
        scores = []
        for j in range(y.shape[1]):
            keep = ~np.isnan(y[:, j]) & ~np.isnan(preds[:, j])
            yj, pj = y[keep, j], preds[keep, j]
            if task_type == "classification":
                if not np.isin(yj, (0.0, 1.0)).all():
                    raise CalibrationError(f"task {names[j]!r}: classification labels must be 0 or 1")
                scores.append(1.0 - np.where(yj == 1.0, pj, 1.0 - pj))
            else:
                scores.append(np.abs(yj - pj))
        return cls(task_type, names, scores, source=source)

    # -- the threshold ------------------------------------------------------------------------
    @property
    def n(self) -> list[int]:
        """Calibration points per task."""
        return [int(s.size) for s in self.scores]

    def quantile(self, alpha: float = 0.1) -> np.ndarray:
        """Per task, the ``ceil((n + 1)(1 - alpha))``-th smallest score (the conformal threshold)."""
        alpha = _check_alpha(alpha)
        out = np.empty(len(self.scores))
        for j, s in enumerate(self.scores):
            n = s.size
            k = math.ceil((n + 1) * (1.0 - alpha) - 1e-9)  # the tolerance keeps 0.9 * 10 at 9
            if k > n:
                need = math.ceil((1.0 - alpha) / alpha - 1e-9)
                raise CalibrationError(
                    f"task {self.task_names[j]!r}: {n} calibration point(s) are too few for alpha={alpha:g} "
                    f"(split-conformal needs at least {need}; use a larger alpha or a larger validation split)")
            out[j] = s[max(k, 1) - 1]
        return out

    # -- what a user asks for -------------------------------------------------------------------
    def interval(self, predictions: np.ndarray, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)``: ``prediction -/+ q`` per task, shaped as ``predictions``; NaN stays NaN."""
        if self.task_type != "regression":
            raise CalibrationError("interval() is for regression; a classification calibration gives prediction_set()")
        preds, one_d = _as_2d(predictions, len(self.task_names), "predictions")
        q = self.quantile(alpha)
        lower, upper = preds - q, preds + q
        return (lower[:, 0], upper[:, 0]) if one_d else (lower, upper)

    def prediction_set(self, probabilities: np.ndarray, alpha: float = 0.1) -> np.ndarray:
        """Boolean ``(n, n_tasks, 2)``: ``[..., c]`` is whether label ``c`` (0 or 1) is plausible.

        ``probabilities`` are P(class 1), ``(n, n_tasks)`` (``(n,)`` for one task gives ``(n, 2)``).
        A set may hold both labels (the model cannot tell at this level) or, when the model is
        confident enough overall, neither (the molecule looks unlike the calibration ones); a NaN
        probability (a molecule that could not be predicted) gives an empty set.
        """
        if self.task_type != "classification":
            raise CalibrationError("prediction_set() is for classification; a regression calibration gives interval()")
        p, one_d = _as_2d(probabilities, len(self.task_names), "probabilities")
        q = self.quantile(alpha)
        with np.errstate(invalid="ignore"):
            out = np.stack([p <= q, 1.0 - p <= q], axis=-1)  # score of label 0 is p, of label 1 is 1 - p
        out &= ~np.isnan(p)[..., None]
        return out[:, 0, :] if one_d else out

    # -- storage ------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"task_type": self.task_type, "task_names": self.task_names, "n": self.n,
                "scores": [s.tolist() for s in self.scores], "source": self.source, "info": self.info}

    @classmethod
    def from_json(cls, record: dict) -> "Calibration":
        return cls(record["task_type"], list(record["task_names"]), [np.asarray(s) for s in record["scores"]],
                   source=str(record.get("source", "")), info=dict(record.get("info") or {}))


def set_labels(sets: np.ndarray) -> list[str]:
    """Text of boolean prediction sets ``(n, 2)``: ``{0}``, ``{1}``, ``{0,1}`` or ``{}``."""
    return ["{" + ",".join(str(c) for c in (0, 1) if row[c]) + "}" for row in np.asarray(sets, dtype=bool)]


def calibration_file(checkpoint: str | os.PathLike) -> Path:
    """The calibration file that belongs to ``checkpoint`` (a file, or a folder that resolves to one)."""
    return resolve_checkpoint(checkpoint).parent / CALIBRATION_FILE


def _read(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeError, ValueError) as exc:
        raise CalibrationError(f"{path}: not a readable calibration file ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != _FORMAT or not isinstance(record.get("checkpoints"), dict):
        raise CalibrationError(f"{path}: not a calibration file of format {_FORMAT}")
    return record


def load_calibration(checkpoint: str | os.PathLike) -> Optional[Calibration]:
    """The calibration of ``checkpoint`` (file or model folder), or None when it has none."""
    model = resolve_checkpoint(checkpoint)
    path = model.parent / CALIBRATION_FILE
    if not path.is_file():
        return None
    entry = _read(path)["checkpoints"].get(model.name)
    if entry is None:
        return None
    try:
        return Calibration.from_json(entry)
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"{path}: the entry for {model.name} is malformed ({exc})") from None


def save_calibration(calibration: Calibration, checkpoint: str | os.PathLike) -> Path:
    """Store ``calibration`` for ``checkpoint`` in its folder's calibration file (other entries kept)."""
    model = Path(checkpoint)
    path = model.parent / CALIBRATION_FILE
    record = {"format": _FORMAT, "checkpoints": {}}
    if path.is_file():
        try:
            record = _read(path)
        except CalibrationError:
            pass  # an unreadable old file is replaced
    record["checkpoints"][model.name] = calibration.to_json()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)
    return path


def forget_calibration(checkpoint: str | os.PathLike) -> None:
    """Drop the stored calibration of ``checkpoint`` (its weights are about to change)."""
    model = Path(checkpoint)
    path = model.parent / CALIBRATION_FILE
    if not path.is_file():
        return
    try:
        record = _read(path)
    except CalibrationError:
        path.unlink()
        return
    if record["checkpoints"].pop(model.name, None) is not None:
        if record["checkpoints"]:
            path.write_text(json.dumps(record))
        else:
            path.unlink()
