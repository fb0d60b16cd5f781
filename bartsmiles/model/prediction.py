"""Row-preserving prediction for tables: one output row per input row, always in input order.

>>> out = predict_table("runs/bbbp", "molecules.csv", smiles_column="smiles")
>>> out.columns  # the input columns, then one column per task, then "bartsmiles_error"

* A row whose SMILES cannot be used gets NaN in every prediction column and the reason in the
  error column: ``empty SMILES``, ``invalid SMILES: <RDKit's reason>``, ``cannot tokenize: ...``
  or ``too long: N tokens > M positions``.  Other rows have an empty error ("").  Rows never
  shift: the output has the input's index and length.
* Classification columns hold probabilities of the positive class; regression columns hold
  values in the original units (the target scaling stored in the checkpoint is undone).
* ``on_overflow="error"`` (default) treats a SMILES longer than the model's positions as an
  error row; ``"truncate"`` cuts it, as training did, and predicts.

The model is a fine-tuned ``smiles_property`` checkpoint: a ``.pt`` file, a model folder or a
run folder, resolved by :func:`bartsmiles.model.resolve.resolve_checkpoint`.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np
import pandas as pd

from bartsmiles.core.chem import parse_smiles
from bartsmiles.core.files import cell_text, read_csv
from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.errors import InvalidSmilesError, MissingColumnError, SequenceTooLongError, TokenizationError
from bartsmiles.model.predictor import PropertyPredictor
from bartsmiles.model.resolve import resolve_checkpoint

__all__ = ["predict_table", "predict_rows", "row_errors", "ERROR_COLUMN"]

logger = logging.getLogger(__name__)

ERROR_COLUMN = "bartsmiles_error"
def _load_predictor(model: Any):
    if isinstance(model, PropertyPredictor):
        return model
    return PropertyPredictor(resolve_checkpoint(model))


def row_errors(predictor, smiles: Sequence[Any], on_overflow: str = "error") -> list[str]:
    """Per input row, why it cannot be predicted ("" when it can)."""

    if on_overflow not in ("error", "truncate"):
        raise ValueError(f"on_overflow must be 'error' or 'truncate', got {on_overflow!r}")
    task = predictor.task
    limit = int(task.cfg.max_positions)
    tokenizer = None
    errors = []
    for value in smiles:
        text = cell_text(value)
        if not text:
            errors.append("empty SMILES")
            continue
        try:
            parse_smiles(text)
        except InvalidSmilesError as exc:
            errors.append(f"invalid SMILES: {exc.reason or 'unparsable'}")
            continue
        if tokenizer is None:
            tokenizer = SmilesTokenizer()
        try:
            tokens = tokenizer.tokenize(task.model_smiles([text])[0])
        except TokenizationError as exc:
            errors.append(f"cannot tokenize: {exc}")
            continue
        if on_overflow == "error":
            try:
                task.vocab.encode(tokens, max_positions=limit, on_overflow="error")
            except SequenceTooLongError:
                errors.append(f"too long: {len(tokens) + 2} tokens > {limit} positions")
                continue
        errors.append("")
    return errors


def predict_rows(model: Any, smiles: Sequence[Any], *, batch_size: int = 64,
                 on_overflow: str = "error") -> tuple[np.ndarray, list[str], list[str]]:
    """``(predictions (n, n_tasks), errors (n,), task_names)`` for ``smiles``, row for row.

    ``model``: a checkpoint path / folder, or a loaded :class:`bartsmiles.model.predictor.PropertyPredictor`.
    """
    if isinstance(smiles, str):
        raise TypeError("predict_rows takes a sequence of SMILES, not one string: wrap it in a list")
    predictor = _load_predictor(model)
    smiles = list(smiles)
    errors = row_errors(predictor, smiles, on_overflow=on_overflow)
    names = predictor.task_names
    out = np.full((len(smiles), len(names)), np.nan)
    ok = [i for i, e in enumerate(errors) if not e]
    if ok:
        out[ok] = predictor.predict([cell_text(smiles[i]) for i in ok], batch_size=batch_size)
    bad = len(smiles) - len(ok)
    if bad:
        rows = [i for i, e in enumerate(errors) if e]
        logger.warning("%d of %d row(s) cannot be predicted (NaN, reason in the error column): rows %s%s",
                       bad, len(smiles), rows[:20], " ..." if bad > 20 else "")
    return out, errors, names


def _output_names(names: Sequence[str], taken: Sequence[str], prefix: str) -> list[str]:
    out = []
    for name in names:
        column = f"{prefix}{name}"
        while column in taken or column in out:
            column = f"pred_{column}"
        out.append(column)
    return out


def predict_table(model: Any, source: str | os.PathLike | pd.DataFrame, smiles_column: str = "smiles", *,
                  batch_size: int = 64, on_overflow: str = "error", prefix: str = "",
                  error_column: str = ERROR_COLUMN) -> pd.DataFrame:
    """Predict every row of ``source`` (a CSV path or a DataFrame); returns a new DataFrame.

    The input columns are kept as they are; one column per task is added, named after the task
    (with ``prefix`` in front; ``pred_`` is prepended again while the name collides with an
    input column), then ``error_column``.  The index, length and row order are the input's.
    """
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
    else:
        frame = read_csv(source)
    if smiles_column not in frame.columns:
        where = "the input" if isinstance(source, pd.DataFrame) else str(source)
        raise MissingColumnError(f"no column {smiles_column!r} in {where} (columns: {[str(c) for c in frame.columns]})")
    preds, errors, names = predict_rows(model, frame[smiles_column].tolist(), batch_size=batch_size,
                                        on_overflow=on_overflow)
    columns = _output_names(names, [str(c) for c in frame.columns] + [error_column], prefix)
    for j, column in enumerate(columns):
        frame[column] = preds[:, j]
    frame[error_column] = errors
    return frame
