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

The model is a fine-tuned ``smiles_property`` checkpoint (a ``.pt`` file), or a folder holding
``model.pt`` (an exported model / a saved estimator), ``checkpoint_avg.pt``,
``checkpoint_best.pt`` or ``checkpoint_last.pt`` -- the first found in that order.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["predict_table", "predict_rows", "resolve_checkpoint", "row_errors", "ERROR_COLUMN",
           "CHECKPOINT_NAMES"]

logger = logging.getLogger(__name__)

ERROR_COLUMN = "bartsmiles_error"
CHECKPOINT_NAMES = ("model.pt", "checkpoint_avg.pt", "checkpoint_best.pt", "checkpoint_last.pt")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint file of ``path`` (a file, or a folder: see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"no fine-tuned checkpoint in {path} (looked for {', '.join(CHECKPOINT_NAMES)})")
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    return path


def _load_predictor(model: Any):
    from .finetuning import PropertyPredictor

    if isinstance(model, PropertyPredictor):
        return model
    return PropertyPredictor(resolve_checkpoint(model))


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def row_errors(predictor, smiles: Sequence[Any], on_overflow: str = "error") -> list[str]:
    """Per input row, why it cannot be predicted ("" when it can)."""
    from bartsmiles.chem import InvalidSmilesError, parse_smiles
    from bartsmiles.tokenizer import TokenizationError
    from bartsmiles.vocab import SequenceTooLongError

    if on_overflow not in ("error", "truncate"):
        raise ValueError(f"on_overflow must be 'error' or 'truncate', got {on_overflow!r}")
    task = predictor.task
    limit = int(task.cfg.max_positions)
    tokenizer = None
    errors = []
    for value in smiles:
        text = _text(value)
        if not text:
            errors.append("empty SMILES")
            continue
        try:
            parse_smiles(text)
        except InvalidSmilesError as exc:
            errors.append(f"invalid SMILES: {exc.reason or 'unparsable'}")
            continue
        if tokenizer is None:
            from bartsmiles.tokenizer import SmilesTokenizer

            tokenizer = SmilesTokenizer()
        try:
            tokens = tokenizer.tokenize(text)
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

    ``model``: a checkpoint path / folder, or a loaded :class:`bartsmiles.finetuning.PropertyPredictor`.
    """
    predictor = _load_predictor(model)
    smiles = list(smiles)
    errors = row_errors(predictor, smiles, on_overflow=on_overflow)
    names = predictor.task_names
    out = np.full((len(smiles), len(names)), np.nan)
    ok = [i for i, e in enumerate(errors) if not e]
    if ok:
        out[ok] = predictor.predict([_text(smiles[i]) for i in ok], batch_size=batch_size)
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
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"input table not found: {path}")
        frame = pd.read_csv(path)
    if smiles_column not in frame.columns:
        raise KeyError(f"no column {smiles_column!r} in the input (columns: {[str(c) for c in frame.columns]})")
    preds, errors, names = predict_rows(model, frame[smiles_column].tolist(), batch_size=batch_size,
                                        on_overflow=on_overflow)
    columns = _output_names(names, [str(c) for c in frame.columns] + [error_column], prefix)
    for j, column in enumerate(columns):
        frame[column] = preds[:, j]
    frame[error_column] = errors
    return frame
