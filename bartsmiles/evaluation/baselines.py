"""The ECFP4 + random-forest peer of PROTOCOL.md.

* :func:`ecfp4` -- RDKit Morgan fingerprints, radius 2, 2048 bits (no chirality, no feature
  invariants: RDKit's defaults), as a ``(n, 2048)`` uint8 matrix.
* :class:`ForestPeer` -- one scikit-learn forest per task
  (``RandomForestClassifier`` / ``RandomForestRegressor``, ``n_estimators=500``,
  ``random_state=seed``, every other setting scikit-learn's default), each fitted on the
  training rows that have a label for that task.

  - Classification predicts the probability of class 1 (``predict_proba`` column of class
    ``1.0``). A task whose labelled training rows are all one class gets that class's
    probability as a constant (1.0 or 0.0); one with no labelled training rows gets 0.5.
    Such a constant scores an AUC of 0.5 where the test part has both classes.
  - Regression predicts in the dataset's own units (forests need no target scaling). A
    regression task without any labelled training row is an error.

* :func:`run_ecfp4_rf` -- one protocol run: featurize, fit on train only, predict the test
  rows, score with :func:`bartsmiles.core.metrics.score`.

``n_jobs`` only changes how many cores fit the trees; the forest (and so every number) is the
same for any ``n_jobs`` because scikit-learn draws each tree's seed up front.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from bartsmiles.core.chem import parse_smiles
from bartsmiles.core.metrics import default_metric, prc_auc, rmse, roc_auc
from bartsmiles.data.registry import get_spec

__all__ = ["ECFP4_RADIUS", "ECFP4_BITS", "ecfp4", "ForestPeer", "run_ecfp4_rf"]

logger = logging.getLogger(__name__)

ECFP4_RADIUS = 2
ECFP4_BITS = 2048


def ecfp4(smiles: Sequence[str], radius: int = ECFP4_RADIUS, n_bits: int = ECFP4_BITS) -> np.ndarray:
    """Morgan bit vectors of ``smiles`` as a ``(n, n_bits)`` uint8 array, in input order.

    Raises :class:`bartsmiles.errors.InvalidSmilesError` naming the index of a SMILES RDKit
    cannot parse (datasets loaded by :func:`bartsmiles.data.datasets.load_dataset` have none).
    """
    if isinstance(smiles, str):
        raise TypeError("ecfp4 takes a sequence of SMILES, not one string: wrap it in a list")
    # lazy: RDKit is optional at import time (the command line must load on GPU images without it)
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    row = np.zeros((n_bits,), dtype=np.uint8)
    for i, smi in enumerate(smiles):
        mol = parse_smiles(smi, row=i)
        DataStructs.ConvertToNumpyArray(generator.GetFingerprint(mol), row)
        out[i] = row
    return out


@dataclass
class ForestPeer:
    """One random forest per task, each fitted on the rows labelled for that task."""

    task_type: str
    seed: int = 0
    n_estimators: int = 500
    n_jobs: int = 1
    forests: list[Any] = field(default_factory=list, repr=False)
    #: per task: None (a fitted forest) or the constant it predicts, with the reason
    constants: list[tuple[float, str] | None] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.task_type not in ("classification", "regression"):
            raise ValueError(f"task_type must be 'classification' or 'regression', got {self.task_type!r}")

    def _new_forest(self):
        cls = RandomForestClassifier if self.task_type == "classification" else RandomForestRegressor
        return cls(n_estimators=self.n_estimators, random_state=self.seed, n_jobs=self.n_jobs)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "ForestPeer":
        """Fit on features ``X`` (n, d) and labels ``Y`` (n,) or (n, tasks), NaN = missing."""
        X = np.asarray(X)
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but labels have shape {Y.shape}")
        self.forests, self.constants = [], []
        for j in range(Y.shape[1]):
            mask = ~np.isnan(Y[:, j])
            y = Y[mask, j]
            if self.task_type == "classification":
                classes = np.unique(y)
                if classes.size == 0:
                    logger.warning("task %d has no labelled training row: predicting 0.5", j)
                    self.forests.append(None)
                    self.constants.append((0.5, "no labelled training row"))
                    continue
                if classes.size == 1:
                    value = float(classes[0])
                    logger.warning("task %d: every labelled training row is class %g: predicting %g", j, value, value)
                    self.forests.append(None)
                    self.constants.append((value, f"single-class training labels ({value:g})"))
                    continue
            elif y.size == 0:
                raise ValueError(f"regression task {j} has no labelled training row")
            forest = self._new_forest().fit(X[mask], y)
            self.forests.append(forest)
            self.constants.append(None)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(n, tasks)``: probability of class 1 (classification) or the predicted value."""
        if not self.forests:
            raise RuntimeError("ForestPeer.predict called before fit")
        X = np.asarray(X)
        out = np.empty((X.shape[0], len(self.forests)), dtype=np.float64)
        for j, (forest, constant) in enumerate(zip(self.forests, self.constants)):
            if forest is None:
                out[:, j] = constant[0]
            elif self.task_type == "classification":
                proba = forest.predict_proba(X)
                col = int(np.flatnonzero(forest.classes_ == 1.0)[0])
                out[:, j] = proba[:, col]
            else:
                out[:, j] = forest.predict(X)
        return out


def run_ecfp4_rf(dataset, split, seed: int, *, metric: str | None = None, n_estimators: int = 500,
                 n_jobs: int = 1) -> dict[str, Any]:
    """Fit the peer on ``split.train`` of ``dataset`` (a MolDataset) and score ``split.test``.

    Returns ``{"value", "per_task", "metric", "constant_tasks", "sizes"}``; ``per_task`` is the
    per-task ROC/PRC-AUC (``None`` = not scorable) for classification, ``None`` for regression.
    """

    if metric is None:
        try:
            metric = get_spec(dataset.name).metric
        except KeyError:
            metric = default_metric(dataset.task_type)
    train = np.asarray(split.train, dtype=np.int64)
    test = np.asarray(split.test, dtype=np.int64)
    if test.size == 0:
        raise ValueError(f"{dataset.name}: the split has no test rows")
    X = ecfp4(dataset.smiles)
    peer = ForestPeer(dataset.task_type, seed=seed, n_estimators=n_estimators, n_jobs=n_jobs)
    peer.fit(X[train], dataset.labels[train])
    pred = peer.predict(X[test])
    y_test = dataset.labels[test]
    per_task: list[float | None] | None = None
    if metric == "roc_auc":
        value, per_task = roc_auc(y_test, pred)
    elif metric == "prc_auc":
        value, per_task = prc_auc(y_test, pred)
    elif metric == "rmse":
        value = rmse(y_test, pred)
    else:
        raise ValueError(f"unknown metric {metric!r}")
    constant = {dataset.task_names[j]: c[1] for j, c in enumerate(peer.constants) if c is not None}
    return {"value": float(value), "per_task": per_task, "metric": metric, "constant_tasks": constant,
            "sizes": {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)}}
