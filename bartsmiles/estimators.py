"""scikit-learn estimators that fine-tune BARTSmiles: :class:`BartSmilesClassifier`, :class:`BartSmilesRegressor`.

>>> clf = BartSmilesClassifier(epochs=10, average_last=4).fit(smiles, y)
>>> clf.predict_proba(new_smiles)[:, 1]          # single task: sklearn's (n, 2) convention
>>> clf.save("my_model"); BartSmilesClassifier.load("my_model").predict(new_smiles)

``fit`` writes the molecules to a CSV plus a split file and calls
:func:`bartsmiles.training.finetuning.finetune` -- the same ``fairseq-train`` code path as
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
    as in :class:`~bartsmiles.training.finetuning.FinetuneConfig`; ``seed`` also seeds the internal
    validation split.
``pos_weight`` (classifier)
    ``"none"``, ``"auto"`` (n_neg / n_pos per task) or a number.
``average_last``
    ``k > 0``: predict with the average of ``k`` consecutive epoch checkpoints ending at the best
    validation epoch (:func:`bartsmiles.model.averaging.average_last_epochs`; the paper uses 4). All
    epoch checkpoints are then kept on disk during fit. ``0``: the best checkpoint.
``grid``
    ``None`` or a dict with lists under ``"lr"`` and/or ``"dropout"``: one fine-tuning run per
    combination, selected on the validation metric (:func:`bartsmiles.training.grid.grid_search`);
    ``best_params_`` and ``grid_results_`` record the outcome.
``valid_fraction``
    size of the internal validation split when ``fit`` gets no ``valid=`` (default 0.1). The split
    is random, seeded with ``seed``; for classification it is stratified on the first task's
    labels so that the validation ROC-AUC is defined.
``keep_smiles_as_written``
    ``False`` (default): SMILES are rewritten to RDKit's canonical isomeric form before training and
    prediction, so that how a SMILES was written cannot carry the label. ``True``: read as given.
``head_input``
    ``"decoder_eos"`` (default, the BART recipe): the head reads the decoder's final ``</s>`` state.
    ``"encoder_mean"``: it reads the mean-pooled encoder output and the decoder is never run, so
    fitting and prediction cost about half as much (:mod:`bartsmiles.tasks.property_head`).
``randomize_smiles``
    randomized-SMILES augmentation, as ``FinetuneConfig.randomize_smiles``: per epoch each training
    molecule is read as a random SMILES with this probability (default ``0.0``: off). Validation and
    prediction read the canonical form. Models meant to be explained gain from ``0.5``: their
    attributions find a rule's atoms more often (README, Attribution).
``work_dir``
    folder for the runs (one ``fit-*`` subfolder per fit). ``None``: a temporary folder that is
    deleted when the estimator is garbage-collected -- use :meth:`save` to keep a model.
``cpu``
    ``True``/``False`` to force; ``None``: CPU exactly when no GPU is visible.
``progress``
    ``False`` silences fairseq's training log.
``n_models``
    ``k > 1``: a deep ensemble of ``k`` fine-tunes with seeds ``seed .. seed + k - 1`` on the same
    validation split (a ``grid`` is searched for the first member; the others use its best
    settings). ``predict``/``predict_proba`` average the members; ``return_std=True`` also gives
    their standard deviation. ``k`` times the training time and ``k`` times the prediction time.

Calibrated uncertainty (split-conformal, :mod:`bartsmiles.model.uncertainty`): after training,
``fit`` scores the model (the ensemble mean) on the validation molecules and keeps the scores
(``calibration_``). :meth:`BartSmilesRegressor.predict_interval` (``alpha=0.1``: 90 %) returns
``(lower, upper)`` and :meth:`BartSmilesClassifier.predict_set` the plausible labels. The
coverage holds for molecules exchangeable with the validation ones -- with the internal random
split, new molecules from the training distribution; not guaranteed for new scaffolds (README,
Uncertainty). A validation split of ``n`` molecules supports ``alpha >= 1 / (n + 1)``.

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
convention; RMSE is in ``valid_score_`` when the metric is rmse). ``save`` keeps every member and
the calibration.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import warnings
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_is_fitted

from bartsmiles.core.chem import parse_smiles
from bartsmiles.core.files import cell_text
from bartsmiles.core.metrics import roc_auc
from bartsmiles.core.splits import Split
from bartsmiles.errors import CalibrationError, InvalidSmilesError
from bartsmiles.model.averaging import average_last_epochs
from bartsmiles.model.checkpoint import export_model, safe_load
from bartsmiles.model.prediction import predict_rows
from bartsmiles.model.predictor import PropertyPredictor
from bartsmiles.model.resolve import resolve_checkpoint, shipped_model_dir
from bartsmiles.model.uncertainty import Calibration, save_calibration
from bartsmiles.training.finetuning import FinetuneConfig, finetune
from bartsmiles.training.grid import grid_search

__all__ = ["BartSmilesClassifier", "BartSmilesRegressor", "ESTIMATOR_FILE"]

logger = logging.getLogger(__name__)

ESTIMATOR_FILE = "estimator.json"
MEMBER_FOLDER = "member{}"  # members 1..k-1 of a saved ensemble; member 0 is the folder's model.pt
_GRID_KEYS = ("lr", "dropout")


# ----------------------------------------------------------------------------- input helpers


def _smiles_list(X: Any, what: str = "smiles") -> list:
    """The SMILES of ``X`` as a list of raw values (see :mod:`bartsmiles.estimators`)."""
    if isinstance(X, pd.DataFrame):
        if X.shape[1] == 1:
            return X.iloc[:, 0].tolist()
        matches = [c for c in X.columns if str(c).lower() == "smiles"]
        if len(matches) == 1:
            return X[matches[0]].tolist()
        raise ValueError(f"{what}: a DataFrame needs a single column or a column named 'smiles' "
                         f"(columns: {[str(c) for c in X.columns]})")
    if isinstance(X, pd.Series):
        return X.tolist()
    if isinstance(X, str):
        raise TypeError(f"{what}: expected a sequence of SMILES, got a single string; wrap it in a list")
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D sequence of SMILES, got shape {arr.shape}")
    return arr.tolist()


def _check_smiles(smiles: list) -> tuple[list[int], list[tuple[int, str, str]]]:
    """(indices of parsable rows, [(row, smiles, reason)] of the others)."""

    ok, bad = [], []
    for i, value in enumerate(smiles):
        text = cell_text(value)
        try:
            parse_smiles(text)
        except InvalidSmilesError as exc:
            bad.append((i, text, exc.reason or "unparsable"))
            continue
        ok.append(i)
    return ok, bad


def _task_names(y: Any, n_tasks: int) -> list[str]:
    if isinstance(y, pd.DataFrame):
        names = [str(c) for c in y.columns]
    elif isinstance(y, pd.Series) and y.name is not None:
        names = [str(y.name)]
    else:
        names = ["y"] if n_tasks == 1 else [f"task{j}" for j in range(n_tasks)]
    usable = (len(set(names)) == len(names)
              and all(n and "," not in n and n.strip() == n and n.lower() != "smiles" for n in names))
    return names if usable else (["y"] if n_tasks == 1 else [f"task{j}" for j in range(n_tasks)])


def _as_float(values: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.asarray(pd.DataFrame(values).apply(pd.to_numeric, errors="raise"), dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: labels must be numeric ({exc})") from None


def _silenced(progress: bool):
    @contextmanager
    def quiet():
        if progress:
            yield
            return
        names = ("fairseq", "fairseq_cli", "bartsmiles", "hydra")
        saved = {n: logging.getLogger(n).level for n in names}
        for n in names:
            logging.getLogger(n).setLevel(logging.WARNING)
        try:
            yield
        finally:
            for n, level in saved.items():
                logging.getLogger(n).setLevel(level)
    return quiet()


def _validation_split(Y: np.ndarray, classification: bool, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, valid) row indices: random, seeded; stratified on the first task for classification."""
    n = len(Y)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    if classification:
        key = np.where(np.isnan(Y[:, 0]), 2.0, Y[:, 0])
        valid: list[int] = []
        for value in np.unique(key):
            members = rng.permutation(np.flatnonzero(key == value))
            take = int(round(fraction * len(members)))
            if value != 2.0 and len(members) >= 2:
                take = min(max(take, 1), len(members) - 1)
            valid.extend(int(i) for i in members[:take])
    else:
        n_valid = max(1, int(round(fraction * n)))
        valid = [int(i) for i in rng.permutation(n)[:n_valid]]
    valid_set = set(valid)
    train = [i for i in range(n) if i not in valid_set]
    if not train or not valid:
        raise ValueError(f"{n} molecule(s) are too few for a train/validation split; pass valid=(smiles, y)")
    return train, sorted(valid)


# ----------------------------------------------------------------------------- the shared machinery


class _BartSmilesEstimator(BaseEstimator):
    """Shared fit/predict machinery; subclasses set ``_task_type`` and the label handling."""

    _task_type = ""

    # -- labels (overridden) -------------------------------------------------------------
    def _encode_labels(self, y: Any, refit: bool = True) -> np.ndarray:
        raise NotImplementedError

    def _labels_2d(self, y: Any) -> tuple[np.ndarray, bool]:
        values = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else np.asarray(y, dtype=object)
        one_d = values.ndim == 1
        if one_d:
            values = values.reshape(-1, 1)
        if values.ndim != 2:
            raise ValueError(f"y must be 1-D or 2-D, got shape {values.shape}")
        return values, one_d

    # -- pretrained model --------------------------------------------------------------------
    def _pretrained_path(self) -> str:
        if self.pretrained is None:
            shipped = shipped_model_dir() / "model.pt"
            if shipped.is_file():
                return str(shipped)
            logger.warning("no shipped pretrained model (%s): fine-tuning a randomly initialized %s",
                           shipped, self.arch)
            return ""
        if not self.pretrained:
            return ""
        return str(resolve_checkpoint(self.pretrained))

    def _run_dir(self) -> Path:
        if self.work_dir is None:
            folder = tempfile.mkdtemp(prefix="bartsmiles-fit-")
            weakref.finalize(self, shutil.rmtree, folder, True)
            return Path(folder)
        Path(self.work_dir).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="fit-", dir=self.work_dir))

    def _finetune_config(self, csv: Path, split: Path, save_dir: Path, names: list[str]):
        pretrained = self._pretrained_path()
        pos_weight = getattr(self, "pos_weight", None)
        return FinetuneConfig(
            data=str(csv), pretrained=pretrained, arch="" if pretrained else self.arch, save_dir=str(save_dir),
            smiles_column="smiles", target_columns=tuple(names), task_type=self._task_type, split=str(split),
            epochs=int(self.epochs), batch_size=int(self.batch_size), lr=float(self.lr), dropout=float(self.dropout),
            seed=int(self.seed), pos_weight="none" if pos_weight is None else str(pos_weight),
            keep_last_epochs=-1 if self.average_last else 1, cpu=self.cpu, score_test=False,
            progress=bool(self.progress), keep_smiles_as_written=bool(self.keep_smiles_as_written),
            head_input=str(self.head_input), randomize_smiles=float(self.randomize_smiles),
        )

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, smiles: Any, y: Any, valid: Optional[tuple[Any, Any]] = None):
        """Fine-tune on ``smiles``/``y``; ``valid=(smiles_v, y_v)`` replaces the internal split."""

        n_members = self._n_members()
        X = _smiles_list(smiles)
        Y = self._encode_labels(y)
        if len(X) != len(Y):
            raise ValueError(f"smiles and y have different lengths ({len(X)} and {len(Y)})")
        names = _task_names(y, Y.shape[1])
        ok, bad = _check_smiles(X)
        self.invalid_rows_ = bad
        if bad:
            warnings.warn(f"fit: {len(bad)} invalid SMILES dropped: rows {[r for r, _, _ in bad][:50]}"
                          f"{' ...' if len(bad) > 50 else ''}", UserWarning, stacklevel=2)
        train_smiles, train_y = [cell_text(X[i]) for i in ok], Y[ok]
        if valid is not None:
            Xv = _smiles_list(valid[0], "valid smiles")
            Yv = self._encode_labels(valid[1], refit=False)
            if len(Xv) != len(Yv) or Yv.shape[1] != Y.shape[1]:
                raise ValueError(f"valid: {len(Xv)} SMILES, labels of shape {Yv.shape}; expected "
                                 f"{Y.shape[1]} task(s) per SMILES")
            ok_v, bad_v = _check_smiles(Xv)
            if bad_v:
                warnings.warn(f"fit: {len(bad_v)} invalid validation SMILES dropped: rows "
                              f"{[r for r, _, _ in bad_v][:50]}", UserWarning, stacklevel=2)
            all_smiles = train_smiles + [cell_text(Xv[i]) for i in ok_v]
            all_y = np.concatenate([train_y, Yv[ok_v]])
            train_idx, valid_idx = list(range(len(train_smiles))), list(range(len(train_smiles), len(all_smiles)))
        else:
            all_smiles, all_y = train_smiles, train_y
            train_idx, valid_idx = _validation_split(all_y, self._task_type == "classification",
                                                     float(self.valid_fraction), int(self.seed))
        run_dir = self._run_dir()
        csv, split = run_dir / "data.csv", run_dir / "split.json"
        frame = pd.DataFrame(all_y, columns=names)
        frame.insert(0, "smiles", all_smiles)
        frame.to_csv(csv, index=False)
        Split(train=train_idx, valid=valid_idx, test=[], kind="random", seed=int(self.seed)).save(split)
        cfg = self._finetune_config(csv, split, run_dir / "run", names)

        self.best_params_ = {"lr": float(self.lr), "dropout": float(self.dropout)}
        self.grid_results_ = None
        with _silenced(self.progress):
            if self.grid:
                unknown = sorted(set(self.grid) - set(_GRID_KEYS))
                if unknown:
                    raise ValueError(f"grid keys must be among {_GRID_KEYS}, got {unknown}")
                best_cfg, table = grid_search(cfg, self.grid.get("lr", [self.lr]),
                                              self.grid.get("dropout", [self.dropout]))
                row = next(r for r in table if r["best"])
                self.grid_results_ = table
                self.best_params_ = {"lr": best_cfg.lr, "dropout": best_cfg.dropout}
                save_dir, checkpoint, self.metric_, self.valid_score_ = (
                    best_cfg.save_dir, row["best_checkpoint"], row["metric"], row["valid"])
            else:
                best_cfg = cfg
                result = finetune(cfg)
                save_dir, checkpoint, self.metric_, self.valid_score_ = (
                    result.save_dir, result.best_checkpoint, result.metric, result.best_valid_metric)
            if self.average_last:
                checkpoint = str(average_last_epochs(save_dir, int(self.average_last), around="best"))
            checkpoints, self.valid_scores_ = [str(checkpoint)], [self.valid_score_]
            for i in range(1, n_members):  # the other members: same split and settings, seed + i
                member = finetune(dataclasses.replace(best_cfg, seed=int(self.seed) + i,
                                                      save_dir=str(run_dir / f"run{i}")))
                checkpoint = member.best_checkpoint
                if self.average_last:
                    checkpoint = average_last_epochs(member.save_dir, int(self.average_last), around="best")
                checkpoints.append(str(checkpoint))
                self.valid_scores_.append(member.best_valid_metric)
        self.checkpoints_ = checkpoints
        self.checkpoint_ = checkpoints[0]
        self.run_dir_ = str(run_dir)
        self.task_names_ = names
        self.n_tasks_ = len(names)
        self._predictors = None
        self._calibrate([all_smiles[i] for i in valid_idx], all_y[valid_idx])
        return self

    def _n_members(self) -> int:
        k = self.n_models
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"n_models must be an integer >= 1, got {k!r}")
        return int(k)

    def _calibrate(self, smiles: list, labels: np.ndarray) -> None:
        """Split-conformal calibration on the validation molecules: of the ensemble mean
        (``calibration_``, used by predict_interval/predict_set) and of each member alone
        (``member_calibrations_``, stored beside each member's model.pt by :meth:`save`)."""
        members, _ = self._member_predict(smiles, warn=False)
        self.member_calibrations_ = [Calibration.from_predictions(m, labels, self._task_type, self.task_names_,
                                                                  source="validation split of fit")
                                     for m in members]
        self.calibration_ = Calibration.from_predictions(members.mean(axis=0), labels, self._task_type,
                                                         self.task_names_,
                                                         source=f"validation split of fit, mean of {len(members)} member(s)")

    # -- predict -----------------------------------------------------------------------------
    def _member_checkpoints(self) -> list[str]:
        check_is_fitted(self, "checkpoint_")
        return list(getattr(self, "checkpoints_", None) or [self.checkpoint_])

    def _get_predictors(self) -> list:
        if getattr(self, "_predictors", None) is None:
            self._predictors = [PropertyPredictor(c) for c in self._member_checkpoints()]
        return self._predictors

    def _get_predictor(self):
        """The first member's predictor (what ``NeuronAttributor`` explains; ``Attributor`` explains
        every member's mean through :meth:`_get_predictors`)."""
        return self._get_predictors()[0]

    def _member_predict(self, smiles: Any, warn: bool = True) -> tuple[np.ndarray, list[str]]:
        """(k, n, n_tasks): each member's probabilities / values, NaN for invalid rows; the per-row errors."""
        X = _smiles_list(smiles)
        members, errors = [], []
        for predictor in self._get_predictors():
            preds, errors, _ = predict_rows(predictor, X, on_overflow="truncate")
            members.append(preds)
        bad = [i for i, e in enumerate(errors) if e]
        if bad and warn:
            warnings.warn(f"{len(bad)} SMILES cannot be predicted (NaN): rows {bad[:50]}"
                          f"{' ...' if len(bad) > 50 else ''}", UserWarning, stacklevel=4)
        return np.stack(members), errors

    def _raw_predict(self, smiles: Any, return_std: bool = False):
        """(n, n_tasks) probabilities / values (the members' mean), NaN for invalid rows; the per-row
        errors; with ``return_std`` also the members' standard deviation (n, n_tasks)."""
        members, errors = self._member_predict(smiles)
        mean = members.mean(axis=0)
        if return_std:
            return mean, errors, members.std(axis=0)
        return mean, errors

    def _calibration(self) -> Calibration:
        check_is_fitted(self, "checkpoint_")
        calibration = getattr(self, "calibration_", None)
        if calibration is None:
            raise CalibrationError("this model has no conformal calibration (it was saved by a version without "
                                   "it): fit it again")
        return calibration

    def predict_frame(self, df: pd.DataFrame | Sequence[str], smiles_column: str = "smiles") -> pd.DataFrame:
        """A DataFrame with ``df``'s index, one column per task (probability of the positive class,
        or the value) and ``error`` ("" or why the row has NaN; named ``bartsmiles_error`` when a
        task is called ``error``)."""
        if isinstance(df, pd.DataFrame):
            if smiles_column not in df.columns:
                raise KeyError(f"no column {smiles_column!r} in the DataFrame (columns: {list(df.columns)})")
            smiles, index = df[smiles_column], df.index
        else:
            smiles = df
            index = df.index if isinstance(df, pd.Series) else None
        preds, errors = self._raw_predict(smiles)
        out = pd.DataFrame(preds, columns=self.task_names_, index=index)
        out["error" if "error" not in self.task_names_ else "bartsmiles_error"] = errors
        return out

    # -- persistence -------------------------------------------------------------------------
    def _fitted_state(self) -> dict:
        calibration = getattr(self, "calibration_", None)
        return {"task_names_": self.task_names_, "n_tasks_": self.n_tasks_, "metric_": self.metric_,
                "valid_score_": self.valid_score_, "best_params_": self.best_params_,
                "grid_results_": self.grid_results_,
                "valid_scores_": list(getattr(self, "valid_scores_", [self.valid_score_])),
                "n_members_": len(self._member_checkpoints()),
                "calibration_": None if calibration is None else calibration.to_json(),
                "invalid_rows_": [list(r) for r in getattr(self, "invalid_rows_", [])]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fine-tuned model (``PATH/model.pt`` + ``dict.txt``) and ``PATH/estimator.json``.

        An ensemble keeps member 0 there and member ``i`` in ``PATH/member<i>/``; beside each
        ``model.pt`` a ``conformal.json`` holds that member's own calibration (what ``bartsmiles
        predict --interval`` uses), and ``estimator.json`` the ensemble mean's."""

        folder = Path(path)
        member_calibrations = getattr(self, "member_calibrations_", None)
        for i, checkpoint in enumerate(self._member_checkpoints()):
            target = folder if i == 0 else folder / MEMBER_FOLDER.format(i)
            meta = safe_load(checkpoint).get("task_state", {}).get("bartsmiles", {})
            scaling = ({"mean": meta["target_mean"], "std": meta["target_std"]}
                       if meta.get("target_mean") is not None else None)
            exported = export_model(checkpoint, target, fp16=False,
                                    extra_metadata={"label_names": list(self.task_names_), "task_type": self._task_type,
                                                    "target_scaling": scaling})
            if member_calibrations:
                save_calibration(member_calibrations[i], Path(exported))
        record = {"class": type(self).__name__, "params": self.get_params(deep=False),
                  "fitted": self._fitted_state()}
        (folder / ESTIMATOR_FILE).write_text(json.dumps(record, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike):
        """An estimator saved with :meth:`save`, ready to predict (and to refit)."""
        folder = Path(path)
        record = json.loads((folder / ESTIMATOR_FILE).read_text())
        if record.get("class") != cls.__name__:
            raise ValueError(f"{folder} holds a {record.get('class')}, not a {cls.__name__}")
        known = cls._get_param_names()
        est = cls(**{k: v for k, v in record["params"].items() if k in known})
        fitted = record["fitted"]
        for key, value in fitted.items():
            setattr(est, key, value)
        est.invalid_rows_ = [tuple(r) for r in fitted.get("invalid_rows_", [])]
        est._restore_fitted(fitted)
        n_members = int(fitted.get("n_members_", 1))
        est.checkpoints_ = [str(folder / "model.pt")] + [str(folder / MEMBER_FOLDER.format(i) / "model.pt")
                                                          for i in range(1, n_members)]
        missing = [c for c in est.checkpoints_ if not Path(c).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: the saved model lacks {missing[0]}")
        est.checkpoint_ = est.checkpoints_[0]
        est.calibration_ = Calibration.from_json(fitted["calibration_"]) if fitted.get("calibration_") else None
        est.member_calibrations_ = None
        est.run_dir_ = None
        est._predictors = None
        return est

    def _restore_fitted(self, fitted: dict) -> None:
        pass

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_predictors"] = None  # reloaded from checkpoints_ on demand
        return state


# ----------------------------------------------------------------------------- the estimators
class BartSmilesClassifier(ClassifierMixin, _BartSmilesEstimator):
    """Fine-tuned BARTSmiles classifier (one or several binary tasks); see the module docstring."""

    _task_type = "classification"

    def __init__(self, pretrained=None, arch="bartsmiles_small", epochs=10, batch_size=16, lr=3e-5, dropout=0.1,
                 seed=1, pos_weight="none", average_last=0, grid=None, valid_fraction=0.1, work_dir=None,
                 cpu=None, progress=True, keep_smiles_as_written=False, n_models=1, head_input="decoder_eos",
                 randomize_smiles=0.0):
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
        self.keep_smiles_as_written = keep_smiles_as_written
        self.n_models = n_models
        self.head_input = head_input
        self.randomize_smiles = randomize_smiles

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

    def predict_proba(self, smiles: Any, return_std: bool = False):
        """Single task: ``(n, 2)`` = [P(classes_[0]), P(classes_[1])]; several: ``(n, n_tasks)`` P(1). NaN rows for invalid SMILES.

        With ``n_models > 1`` the members' mean; ``return_std=True`` also returns the members'
        standard deviation of P(classes_[1]) (``(n,)`` for one task, else ``(n, n_tasks)``; 0 for one member).
        """
        preds, _, std = self._raw_predict(smiles, return_std=True)
        proba = np.column_stack([1.0 - preds[:, 0], preds[:, 0]]) if self.n_tasks_ == 1 else preds
        if return_std:
            return proba, (std[:, 0] if self.n_tasks_ == 1 else std)
        return proba

    def predict(self, smiles: Any, return_std: bool = False):
        """Class labels (threshold 0.5 on the members' mean). Single task: ``(n,)`` of ``classes_`` values
        (NaN, or None for non-numeric classes, where the SMILES is invalid); several tasks: ``(n, n_tasks)``
        of 0/1/NaN.  ``return_std=True``: also the members' standard deviation, as in :meth:`predict_proba`."""
        proba, std = self.predict_proba(smiles, return_std=True)
        labels = self._labels_of(proba)
        return (labels, std) if return_std else labels

    def _labels_of(self, proba: np.ndarray) -> np.ndarray:
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

    def predict_set(self, smiles: Any, alpha: float = 0.1) -> np.ndarray:
        """Split-conformal prediction sets at level ``1 - alpha``, calibrated on the validation split.

        Single task: boolean ``(n, 2)``, column ``c`` true when ``classes_[c]`` is plausible; several
        tasks: ``(n, n_tasks, 2)`` for labels 0 and 1.  A set holds the true label with probability at
        least ``1 - alpha`` for molecules exchangeable with the validation ones (README, Uncertainty).
        Invalid SMILES get an empty set.
        """
        calibration = self._calibration()
        preds, _ = self._raw_predict(smiles)
        sets = calibration.prediction_set(preds, alpha)
        return sets[:, 0, :] if self.n_tasks_ == 1 else sets

    def score(self, smiles: Any, y: Any, sample_weight=None) -> float:
        """Mean ROC-AUC over the tasks (masked; rows with invalid SMILES left out)."""

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
                 seed=1, average_last=0, grid=None, valid_fraction=0.1, work_dir=None, cpu=None, progress=True,
                 keep_smiles_as_written=False, n_models=1, head_input="decoder_eos", randomize_smiles=0.0):
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
        self.keep_smiles_as_written = keep_smiles_as_written
        self.n_models = n_models
        self.head_input = head_input
        self.randomize_smiles = randomize_smiles

    def _encode_labels(self, y: Any, refit: bool = True) -> np.ndarray:
        values, _ = self._labels_2d(y)
        out = _as_float(values, "y")
        if np.isinf(out).any():
            raise ValueError("y contains infinite values")
        return out

    def predict(self, smiles: Any, return_std: bool = False):
        """Values in the original units: ``(n,)`` for one target, ``(n, n_tasks)`` otherwise; NaN for invalid SMILES.

        With ``n_models > 1`` the members' mean; ``return_std=True`` returns ``(mean, std)``, the
        std being the members' spread (same shape; 0 for a single model).
        """
        preds, _, std = self._raw_predict(smiles, return_std=True)
        if self.n_tasks_ == 1:
            preds, std = preds[:, 0], std[:, 0]
        return (preds, std) if return_std else preds

    def predict_interval(self, smiles: Any, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)``: split-conformal intervals at level ``1 - alpha`` around :meth:`predict`,
        calibrated on the validation split (absolute residuals, original units). Shapes as :meth:`predict`;
        NaN for invalid SMILES. The label lies inside with probability at least ``1 - alpha`` for molecules
        exchangeable with the validation ones (README, Uncertainty)."""
        calibration = self._calibration()
        preds, _ = self._raw_predict(smiles)
        lower, upper = calibration.interval(preds, alpha)
        return (lower[:, 0], upper[:, 0]) if self.n_tasks_ == 1 else (lower, upper)

    def score(self, smiles: Any, y: Any, sample_weight=None) -> float:
        """Mean R² over the targets (masked; rows with invalid SMILES left out)."""

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
