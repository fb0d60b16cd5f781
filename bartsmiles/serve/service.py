"""What the web page and the JSON API do, without the web: one model, loaded once, that predicts and explains.

:class:`ModelService` loads a fine-tuned checkpoint once (:class:`~bartsmiles.model.predictor.PropertyPredictor`)
and shares it with the :class:`~bartsmiles.attribution.Attributor` (the Attributor's default method),
so a request never loads weights.  Its answers are plain dicts and tables, ready for JSON or CSV:

* :meth:`ModelService.predict` -- predictions of a list of SMILES, row for row, with the conformal
  interval (regression) or prediction set (classification) when the model has a calibration
  (:func:`bartsmiles.model.uncertainty.load_calibration`); ``errors="reject"`` refuses the whole
  request when one SMILES is invalid or too long (the error names its index), ``"report"`` keeps
  the row with its reason, as ``bartsmiles predict`` does;
* :meth:`ModelService.predict_frame` -- the same for a table (an uploaded CSV), in the layout of
  ``bartsmiles predict --interval`` (:func:`bartsmiles.model.prediction.chunk_columns`);
* :meth:`ModelService.attribute` -- one molecule's atom attributions for one output, with their
  deletion check (``check``: the output's fall when the map's top 3 atoms are hidden, against
  random atoms; :mod:`bartsmiles.attribution.faithfulness`): the SVG
  drawing with its colour bar and the ranked substructure table.

Every refusal is a :mod:`bartsmiles.errors` class (the web layer turns it into HTTP 422 with the
message).  Model calls hold a lock: the model is shared by the server's worker threads.
"""
from __future__ import annotations

import io
import logging
import os
import threading
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from bartsmiles.attribution.attributor import Attributor
from bartsmiles.attribution.draw import draw_attribution
from bartsmiles.core.files import cell_text
from bartsmiles.errors import CalibrationError, DataError, InvalidSmilesError, MissingColumnError, ServeError
from bartsmiles.model.prediction import chunk_columns, row_errors
from bartsmiles.model.predictor import PropertyPredictor
from bartsmiles.model.resolve import resolve_checkpoint
from bartsmiles.model.uncertainty import Calibration, load_calibration

__all__ = ["ModelService", "ERROR_MODES"]

logger = logging.getLogger(__name__)

#: what :meth:`ModelService.predict` does with a SMILES it cannot predict
ERROR_MODES = ("reject", "report")
#: substructure-table columns sent to the page (``atoms`` as a list)
SUBSTRUCTURE_FIELDS = ("rank", "kind", "name", "pattern", "atoms", "n_atoms", "score", "mean_score")


def _number(value: float) -> Optional[float]:
    """A float for JSON: NaN and infinities become ``None``."""
    value = float(value)
    return value if np.isfinite(value) else None


class ModelService:
    """A fine-tuned model loaded once: predictions with intervals, attributions with drawings (module docstring)."""

    def __init__(self, model: str | os.PathLike, *, alpha: float = 0.1, max_molecules: int = 1000,
                 batch_size: int = 64):
        self.checkpoint = resolve_checkpoint(model)
        self.predictor = PropertyPredictor(self.checkpoint)
        self.attributor = Attributor(self.predictor)  # the same weights; the Attributor's default method
        self.alpha = float(alpha)
        self.max_molecules = int(max_molecules)
        self.batch_size = int(batch_size)
        self.tasks = self.predictor.task_names
        self.task_type = str(self.predictor.meta.get("task_type", "classification"))
        self.calibration, self.calibration_note = self._load_calibration()
        self._lock = threading.Lock()

    # -- intervals --------------------------------------------------------------------------------
    def _load_calibration(self) -> tuple[Optional[Calibration], str]:
        """The model's conformal calibration if it has one usable at ``alpha``, and a note saying why not."""
        try:
            calibration = load_calibration(self.checkpoint)
            if calibration is None:
                return None, f"no calibration stored beside {self.checkpoint.name}: predictions without intervals"
            calibration.quantile(self.alpha)  # too few points for this alpha is said now, not per request
        except CalibrationError as exc:
            logger.warning("intervals off: %s", exc)
            return None, f"intervals off: {exc}"
        return calibration, f"split-conformal, {calibration.n} calibration molecules per task"

    @property
    def level(self) -> Optional[int]:
        """The coverage of the intervals in percent (``None`` when the model has no calibration)."""
        return int(round(100 * (1.0 - self.alpha))) if self.calibration is not None else None

    def uncertainty(self, predictions: np.ndarray) -> list[dict]:
        """Per row, per task: ``{"lower", "upper"}`` (regression) or ``{"set": [labels]}`` (classification).

        Empty dicts when the model has no calibration.  This is where conformal calibration plugs
        into serving; everything else reads its output.
        """
        n = len(predictions)
        if self.calibration is None or n == 0:
            return [{} for _ in range(n)]
        if self.task_type == "regression":
            lower, upper = self.calibration.interval(predictions, alpha=self.alpha)
            return [{t: {"lower": _number(lower[i, j]), "upper": _number(upper[i, j])}
                     for j, t in enumerate(self.tasks) if np.isfinite(predictions[i, j])} for i in range(n)]
        sets = self.calibration.prediction_set(predictions, alpha=self.alpha)
        return [{t: {"set": [c for c in (0, 1) if sets[i, j, c]]} for j, t in enumerate(self.tasks)
                 if np.isfinite(predictions[i, j])} for i in range(n)]

    # -- what the API answers ----------------------------------------------------------------------
    def info(self) -> dict:
        return {"model": str(self.checkpoint), "tasks": list(self.tasks), "task_type": self.task_type,
                "attribution_method": self.attributor.method, "interval_level": self.level,
                "intervals": self.calibration_note, "max_molecules": self.max_molecules,
                "max_positions": int(self.predictor.task.cfg.max_positions)}

    def _check_count(self, n: int, what: str) -> None:
        if n == 0:
            raise ServeError(f"no molecules in the {what}")
        if n > self.max_molecules:
            raise ServeError(f"too many molecules in one request: {n} {what} rows > {self.max_molecules} "
                             f"(the server's --max-molecules)")

    def predict(self, smiles: Sequence[Any], errors: str = "reject") -> dict:
        """Predictions (and intervals) of ``smiles``, one row each, in input order (module docstring)."""
        if errors not in ERROR_MODES:
            raise ServeError(f"errors must be one of {ERROR_MODES}, got {errors!r}")
        smiles = [cell_text(s) for s in smiles]
        self._check_count(len(smiles), "SMILES")
        with self._lock:
            reasons = row_errors(self.predictor, smiles)
            bad = [i for i, reason in enumerate(reasons) if reason]
            if bad and errors == "reject":
                i = bad[0]
                more = f" (and {len(bad) - 1} more invalid SMILES)" if len(bad) > 1 else ""
                raise InvalidSmilesError(smiles[i], index=i, reason=reasons[i],
                                         message=f"SMILES at index {i}: {reasons[i]}: {smiles[i]!r}{more}")
            values = np.full((len(smiles), len(self.tasks)), np.nan)
            ok = [i for i, reason in enumerate(reasons) if not reason]
            if ok:
                values[ok] = self.predictor.predict([smiles[i] for i in ok], batch_size=self.batch_size)
        spread = self.uncertainty(values)
        rows = [{"index": i, "smiles": s, "error": reasons[i],
                 "predictions": {t: _number(values[i, j]) for j, t in enumerate(self.tasks)},
                 "uncertainty": spread[i]} for i, s in enumerate(smiles)]
        return {"tasks": list(self.tasks), "task_type": self.task_type, "interval_level": self.level,
                "n_errors": len(bad), "rows": rows}

    def read_upload(self, data: bytes, filename: str = "upload.csv") -> pd.DataFrame:
        """An uploaded CSV as text columns; errors name the file (and the line where pandas says it)."""
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise DataError(f"{filename}: not UTF-8 text (byte {exc.start}, line {line}); save the file as UTF-8") from None
        try:
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise DataError(f"{filename} is empty (no header and no rows)") from None
        except pd.errors.ParserError as exc:
            raise DataError(f"{filename}: not a well-formed CSV: {str(exc).strip().splitlines()[-1]}") from None

    def predict_frame(self, frame: pd.DataFrame, smiles_column: str = "smiles",
                      filename: str = "upload.csv") -> pd.DataFrame:
        """``bartsmiles predict``'s table for ``frame``: the input columns, one per task, the conformal
        columns when the model has a calibration (``<task>_lower``/``<task>_upper`` or ``<task>_set``,
        as ``--interval`` writes them), then the error column."""
        if smiles_column not in frame.columns:
            raise MissingColumnError(f"no column {smiles_column!r} in {filename} (columns: {[str(c) for c in frame.columns]})")
        self._check_count(len(frame), "CSV")
        with self._lock:
            columns = chunk_columns(self.predictor, frame[smiles_column].tolist(), taken=frame.columns,
                                    batch_size=self.batch_size, calibration=self.calibration, alpha=self.alpha)
        out = frame.copy()
        for column, values in columns.items():
            out[column] = values
        return out

    def attribute(self, smiles: Any, target: int | str = 0) -> dict:
        """One molecule's attribution for output ``target`` (index or task name): scores, SVG, substructures."""
        text = cell_text(smiles)
        with self._lock:
            [reason] = row_errors(self.predictor, [text])
            if reason:
                raise InvalidSmilesError(text, index=0, reason=reason, message=f"{reason}: {text!r}")
            [a] = self.attributor.attribute(text, target=target)
            [check] = self.attributor.deletion_check([a])  # is the picture what the model reads?
            prediction = self.predictor.predict([text], batch_size=1)
        table = a.substructures()
        records = [{k: (list(map(int, row[k])) if k == "atoms" else row[k]) for k in SUBSTRUCTURE_FIELDS}
                   for row in table.to_dict("records")]
        for row in records:
            row["rank"], row["n_atoms"] = int(row["rank"]), int(row["n_atoms"])
            row["score"], row["mean_score"] = _number(row["score"]), _number(row["mean_score"])
        svg = draw_attribution(a, fmt="svg")
        svg = svg[svg.index("<svg"):]  # the XML declaration cannot stand inside an HTML page
        atoms = a.atom_frame()
        return {"smiles": a.smiles, "target": a.target, "target_name": a.target_name, "quantity": a.quantity,
                "method": a.attribution_method, "variant": a.method,
                "prediction": {t: _number(prediction[0, j]) for j, t in enumerate(self.tasks)},
                "uncertainty": self.uncertainty(prediction)[0],
                "output": _number(a.output), "baseline_output": _number(a.baseline_output),
                "delta": _number(a.delta), "converged": a.converged,
                "atoms": [{"index": int(r.atom), "symbol": str(r.symbol), "score": _number(r.score),
                           "environment_score": _number(r.environment_score)} for r in atoms.itertuples()],
                "environment_radius": a.environment_radius,
                "check": {"atoms": list(check.atoms), "top_drop": _number(check.top_drop),
                          "random_drop": _number(check.random_drop), "gain": _number(check.gain),
                          "rank": _number(check.rank), "n_random": len(check.random_drops)},
                "svg": svg, "substructures": records}
