"""Row-preserving prediction for tables: one output row per input row, always in input order.

In memory (a table that fits, the estimators, the web server)::

>>> out = predict_table("runs/bbbp", "molecules.csv", smiles_column="smiles")
>>> out.columns  # the input columns, then one column per task, then "bartsmiles_error"

Streamed (any size; ``bartsmiles predict``)::

>>> predict_file("runs/bbbp", "molecules.csv.gz", "predicted.csv", PredictConfig(chunk_size=10_000))

* A row whose SMILES cannot be used gets NaN in every prediction column and the reason in the
  error column: ``empty SMILES``, ``invalid SMILES: <RDKit's reason>``, ``cannot tokenize: ...``
  or ``too long: N tokens > M positions``.  Other rows have an empty error ("").  Rows never
  shift: the output has the input's index and length.
* Classification columns hold probabilities of the positive class; regression columns hold
  values in the original units (the target scaling stored in the checkpoint is undone).
* ``on_overflow="error"`` (default) treats a SMILES longer than the model's positions as an
  error row; ``"truncate"`` cuts it, as training did, and predicts.

:func:`predict_file` reads a CSV (any pandas compression) or a ``.smi``/``.txt`` file (optionally
``.gz``) in chunks of ``chunk_size`` rows, so memory is bounded whatever the input size.  Each
chunk is sorted by length and cut into batches (less padding), predicted, and appended to the
output in input order at once.  A sidecar ``<output>.progress.json`` records the chunks and bytes
written; a run that is killed and started again with the same command truncates any half-written
chunk and continues after the last complete one (nothing finished is recomputed).  ``workers``
processes each load the model once; chunks are still written in input order.

:func:`predict_partition` is the same per-chunk work as a function of a pandas DataFrame, for
engines that go beyond one machine, e.g. Dask: ``ddf.map_partitions(predict_partition, model)``
(the model is loaded once per worker process).

The model is a fine-tuned ``smiles_property`` checkpoint: a ``.pt`` file, a model folder or a
run folder, resolved by :func:`bartsmiles.model.resolve.resolve_checkpoint`.
"""
from __future__ import annotations

import csv
import gzip
import itertools
import json
import logging
import os
import re
import warnings
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from bartsmiles.core.chem import model_spelling, parse_smiles
from bartsmiles.core.files import cell_text, check_utf8, read_csv
from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.errors import (
    CalibrationError,
    DataError,
    InvalidSmilesError,
    MissingColumnError,
    SequenceTooLongError,
    TokenizationError,
)
from bartsmiles.model.predictor import PropertyPredictor
from bartsmiles.model.resolve import resolve_checkpoint
from bartsmiles.model.uncertainty import CALIBRATION_FILE, Calibration, load_calibration, set_labels

__all__ = ["predict_table", "predict_rows", "row_errors", "ERROR_COLUMN", "PredictConfig", "predict_file",
           "predict_partition", "chunk_columns", "read_chunks", "progress_file"]

logger = logging.getLogger(__name__)

ERROR_COLUMN = "bartsmiles_error"
#: the columns of a ``.smi``/``.txt`` input: the first field of a line, and the rest of it
SMI_COLUMNS = ("smiles", "name")
_SMI_SUFFIXES = (".smi", ".txt", ".smiles")
_PROGRESS_FORMAT = 1


def _load_predictor(model: Any):
    if isinstance(model, PropertyPredictor):
        return model
    return PropertyPredictor(resolve_checkpoint(model))


# ----------------------------------------------------------------------------- rows -> predictions
def _prepare(predictor, smiles: Sequence[Any], on_overflow: str) -> tuple[list[str], list[list[int] | None]]:
    """Per input row: why it cannot be predicted ("" when it can), and its token ids (None when not).

    One pass per molecule: parse once, rewrite to the form the model reads (canonical or as
    written, :attr:`~bartsmiles.tasks.property.SmilesPropertyTask.smiles_form`), tokenize, encode.
    """
    if on_overflow not in ("error", "truncate"):
        raise ValueError(f"on_overflow must be 'error' or 'truncate', got {on_overflow!r}")
    task = predictor.task
    limit = int(task.cfg.max_positions)
    canonical = task.smiles_form == "canonical"
    tokenizer = None
    errors: list[str] = []
    ids: list[list[int] | None] = []
    for value in smiles:
        text = cell_text(value)
        if not text:
            errors.append("empty SMILES")
            ids.append(None)
            continue
        try:
            mol = parse_smiles(text)
        except InvalidSmilesError as exc:
            errors.append(f"invalid SMILES: {exc.reason or 'unparsable'}")
            ids.append(None)
            continue
        if tokenizer is None:
            tokenizer = SmilesTokenizer()
        try:
            tokens = tokenizer.tokenize(model_spelling(text, mol) if canonical else text)
        except TokenizationError as exc:
            errors.append(f"cannot tokenize: {exc}")
            ids.append(None)
            continue
        try:
            ids.append(task.vocab.encode(tokens, max_positions=limit, on_overflow=on_overflow))
        except SequenceTooLongError:
            errors.append(f"too long: {len(tokens) + 2} tokens > {limit} positions")
            ids.append(None)
            continue
        errors.append("")
    return errors, ids


def row_errors(predictor, smiles: Sequence[Any], on_overflow: str = "error") -> list[str]:
    """Per input row, why it cannot be predicted ("" when it can)."""
    return _prepare(predictor, smiles, on_overflow)[0]


def _predict(predictor, smiles: Sequence[Any], batch_size: int, on_overflow: str) -> tuple[np.ndarray, list[str]]:
    errors, ids = _prepare(predictor, smiles, on_overflow)
    out = np.full((len(errors), len(predictor.task_names)), np.nan)
    ok = [i for i, e in enumerate(errors) if not e]
    if ok:
        out[ok] = predictor.predict_ids([ids[i] for i in ok], batch_size=batch_size)
    return out, errors


def predict_rows(model: Any, smiles: Sequence[Any], *, batch_size: int = 64,
                 on_overflow: str = "error") -> tuple[np.ndarray, list[str], list[str]]:
    """``(predictions (n, n_tasks), errors (n,), task_names)`` for ``smiles``, row for row.

    ``model``: a checkpoint path / folder, or a loaded :class:`bartsmiles.model.predictor.PropertyPredictor`.
    """
    if isinstance(smiles, str):
        raise TypeError("predict_rows takes a sequence of SMILES, not one string: wrap it in a list")
    predictor = _load_predictor(model)
    smiles = list(smiles)
    out, errors = _predict(predictor, smiles, batch_size, on_overflow)
    rows = [i for i, e in enumerate(errors) if e]
    if rows:
        logger.warning("%d of %d row(s) cannot be predicted (NaN, reason in the error column): rows %s%s",
                       len(rows), len(smiles), rows[:20], " ..." if len(rows) > 20 else "")
    return out, errors, predictor.task_names


def _output_names(names: Sequence[str], taken: Sequence[str], prefix: str) -> list[str]:
    out = []
    for name in names:
        column = f"{prefix}{name}"
        while column in taken or column in out:
            column = f"pred_{column}"
        out.append(column)
    return out


def chunk_columns(predictor, smiles: Sequence[Any], *, taken: Sequence[str] = (), batch_size: int = 64,
                  on_overflow: str = "error", prefix: str = "", error_column: str = ERROR_COLUMN,
                  calibration: Calibration | None = None, alpha: float = 0.1) -> dict[str, Any]:
    """The output columns for one chunk of rows, in order: one per task, then ``error_column``.

    With a ``calibration`` (:mod:`bartsmiles.model.uncertainty`), conformal columns at level
    ``1 - alpha`` come before ``error_column``: ``<task>_lower`` and ``<task>_upper`` per regression
    task, ``<task>_set`` (``{0}``, ``{1}``, ``{0,1}`` or ``{}``; empty for a row that cannot be
    predicted) per classification task.

    Every path goes through here (:func:`predict_table`, :func:`predict_file`, its worker
    processes, :func:`predict_partition`), so a new output column is added in this one place.
    A task column is named after the task (``prefix`` in front; ``pred_`` prepended again while it
    collides with a name in ``taken``, the input's columns).
    """
    preds, errors = _predict(predictor, smiles, batch_size, on_overflow)
    names = _output_names(predictor.task_names, [*map(str, taken), error_column], prefix)
    columns: dict[str, Any] = {name: preds[:, j] for j, name in enumerate(names)}
    if calibration is not None and calibration.task_type == "regression":
        lower, upper = calibration.interval(preds, alpha)
        for j, name in enumerate(names):
            columns[f"{name}_lower"], columns[f"{name}_upper"] = lower[:, j], upper[:, j]
    elif calibration is not None:
        sets = calibration.prediction_set(preds, alpha)
        for j, name in enumerate(names):
            columns[f"{name}_set"] = [text if not np.isnan(p) else None
                                      for text, p in zip(set_labels(sets[:, j]), preds[:, j])]
    columns[error_column] = errors
    return columns


def predict_table(model: Any, source: str | os.PathLike | pd.DataFrame, smiles_column: str = "smiles", *,
                  batch_size: int = 64, on_overflow: str = "error", prefix: str = "",
                  error_column: str = ERROR_COLUMN) -> pd.DataFrame:
    """Predict every row of ``source`` (a CSV path or a DataFrame), in memory; returns a new DataFrame.

    The input columns are kept as they are; one column per task is added, named after the task
    (with ``prefix`` in front; ``pred_`` is prepended again while the name collides with an
    input column), then ``error_column``.  The index, length and row order are the input's.
    For a file of any size use :func:`predict_file`.
    """
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
    else:
        frame = read_csv(source)
    if smiles_column not in frame.columns:
        where = "the input" if isinstance(source, pd.DataFrame) else str(source)
        raise MissingColumnError(f"no column {smiles_column!r} in {where} (columns: {[str(c) for c in frame.columns]})")
    predictor = _load_predictor(model)
    smiles = frame[smiles_column].tolist()
    columns = chunk_columns(predictor, smiles, taken=frame.columns, batch_size=batch_size, on_overflow=on_overflow,
                            prefix=prefix, error_column=error_column)
    bad = sum(1 for e in columns[error_column] if e)
    if bad:
        logger.warning("%d of %d row(s) cannot be predicted (NaN, reason in the %s column)", bad, len(frame),
                       error_column)
    for column, values in columns.items():
        frame[column] = values
    return frame


# ------------------------------------------------------------------------------------- streaming
@dataclass
class PredictConfig:
    """Settings of streamed prediction (:func:`predict_file`, ``bartsmiles predict``)."""

    smiles_column: str = field(default="smiles", metadata={
        "help": "SMILES column of a CSV input (a .smi/.txt input has no header: its columns are smiles, the "
                "first field of a line, and name, the rest of the line)"})
    batch_size: int = field(default=64, metadata={
        "help": "molecules per forward pass; each chunk is sorted by length before it is cut into batches"})
    on_overflow: str = field(default="error", metadata={
        "help": "SMILES longer than the model's positions: an error row (error) or cut and predicted (truncate)",
        "choices": ("error", "truncate")})
    chunk_size: int = field(default=10_000, metadata={
        "help": "rows read, predicted and written at a time; memory is bounded by it whatever the input size, "
                "and a killed run resumes after the last complete chunk"})
    workers: int = field(default=1, metadata={
        "help": "processes, each loading the model once (and using its share of the CPU threads); chunks are "
                "still written in input order"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar (rows/s) on stderr"})
    interval: float = field(default=0.0, metadata={
        "help": "conformal uncertainty at this level, e.g. 0.9: adds <task>_lower/<task>_upper (regression) or "
                "<task>_set (classification), calibrated on the model's validation split (guaranteed for molecules "
                "like the validation ones, not for new scaffolds: README, Uncertainty); 0: none"})

    def __post_init__(self) -> None:
        for name in ("batch_size", "chunk_size", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a whole number >= 1, got {value!r}")
        if self.on_overflow not in ("error", "truncate"):
            raise ValueError(f"on-overflow must be 'error' or 'truncate', got {self.on_overflow!r}")
        if not 0.0 <= self.interval < 1.0:
            raise ValueError(f"interval must be a level in (0, 1), e.g. 0.9 (0: none), got {self.interval!r}")


def _compression(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst", ".zip"):
        if name.endswith(suffix):
            return suffix
    return ""


def _is_smi(path: Path) -> bool:
    name = path.name.lower()
    name = name[: len(name) - len(_compression(path))]
    return name.endswith(_SMI_SUFFIXES)


def _read_error(path: Path, exc: BaseException) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        check_utf8(path)  # names the line (plain files)
        return DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8")
    if isinstance(exc, pd.errors.ParserError):
        found = re.search(r"line (\d+)", str(exc))
        where = f" at line {found.group(1)}" if found else ""
        return DataError(f"{path}: not a well-formed CSV{where}: {str(exc).strip().splitlines()[-1]}")
    kind = f" ({_compression(path)[1:]})" if _compression(path) else ""
    return DataError(f"{path}: cannot be read{kind}: {exc or type(exc).__name__}")


def _smi_chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    opener = gzip.open if _compression(path) == ".gz" else open
    rows: list[tuple[str, str]] = []
    line = 0
    try:
        with opener(path, "rb") as handle:  # bytes, decoded line by line: an error names its line
            for line, raw in enumerate(handle, start=1):
                fields = raw.decode("utf-8").strip().split(None, 1)
                if not fields:
                    continue  # a blank line is no row
                rows.append((fields[0], fields[1] if len(fields) > 1 else ""))
                if len(rows) == chunk_size:
                    yield pd.DataFrame(rows, columns=list(SMI_COLUMNS), dtype=str)
                    rows = []
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: line {line} is not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
    except (OSError, EOFError, ValueError) as exc:
        raise _read_error(path, exc) from None
    yield pd.DataFrame(rows, columns=list(SMI_COLUMNS), dtype=str)


def _csv_chunks(path: Path, smiles_column: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    try:
        # every column as text: values are written back exactly as read, and a column's type
        # cannot change from one chunk to the next
        reader = pd.read_csv(path, chunksize=chunk_size, dtype=str)
        with reader:
            first = True
            for chunk in reader:
                if first and smiles_column not in chunk.columns:
                    raise MissingColumnError(f"no column {smiles_column!r} in {path} "
                                             f"(columns: {[str(c) for c in chunk.columns]})")
                first = False
                yield chunk
    except pd.errors.EmptyDataError:
        raise DataError(f"table {path} is empty (no header and no rows)") from None
    except MissingColumnError:
        raise
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error, OSError, EOFError) as exc:
        raise _read_error(path, exc) from None


def read_chunks(path: str | os.PathLike, smiles_column: str = "smiles", chunk_size: int = 10_000
                ) -> Iterator[pd.DataFrame]:
    """The rows of a CSV (any compression pandas infers) or a ``.smi``/``.txt`` file, ``chunk_size`` at a time.

    Every CSV column is read as text.  A ``.smi`` file gives the columns ``smiles`` and ``name``
    (blank lines are skipped).  A missing file, a missing column, a damaged archive or text that
    is not UTF-8 is one error naming the file.  At least one (maybe empty) chunk is yielded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    if _is_smi(path):
        yield from _smi_chunks(path, chunk_size)
    else:
        yield from _csv_chunks(path, smiles_column, chunk_size)


def progress_file(output: str | os.PathLike) -> Path:
    """The sidecar recording how far :func:`predict_file` got: ``<output>.progress.json``."""
    return Path(str(output) + ".progress.json")


def _stat(path: Path) -> dict[str, Any]:
    info = path.stat()
    return {"path": str(path.resolve()), "size": info.st_size, "mtime_ns": info.st_mtime_ns}


class _Output:
    """The output file, appended one chunk at a time; plain CSV or, for ``.gz``, one gzip member per chunk."""

    def __init__(self, path: Path, keep_bytes: int):
        self.path = path
        self.gzip = path.name.lower().endswith(".gz")
        if keep_bytes:
            self.handle = open(path, "r+b")
            self.handle.truncate(keep_bytes)  # drops a chunk half written when the run was killed
            self.handle.seek(keep_bytes)
        else:
            self.handle = open(path, "wb")

    def write(self, frame: pd.DataFrame, header: bool) -> int:
        data = frame.to_csv(index=False, header=header, lineterminator="\n").encode("utf-8")
        if self.gzip:
            data = gzip.compress(data, mtime=0)  # concatenated members read back as one stream
        self.handle.write(data)
        self.handle.flush()
        os.fsync(self.handle.fileno())
        return self.handle.tell()

    def close(self) -> None:
        self.handle.close()


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def _resume_point(sidecar: Path, output: Path, fingerprint: dict) -> dict | None:
    """The progress record to continue from, or None to start afresh (reason logged)."""
    if not sidecar.is_file():
        return None
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        logger.warning("%s cannot be read; starting %s afresh", sidecar, output)
        return None
    if record.get("fingerprint") != fingerprint:
        logger.warning("%s was written for another input, model or setting; starting %s afresh", sidecar, output)
        return None
    if not output.is_file() or output.stat().st_size < int(record.get("bytes", 0)):
        logger.warning("%s is shorter than its progress record says; starting it afresh", output)
        return None
    return record


# worker processes: the model is loaded once per process (and per checkpoint)
_PREDICTORS: dict[str, PropertyPredictor] = {}


def _cached_predictor(model: Any) -> PropertyPredictor:
    if isinstance(model, PropertyPredictor):
        return model
    path = str(resolve_checkpoint(model))
    if path not in _PREDICTORS:
        _PREDICTORS.clear()  # one model per process
        _PREDICTORS[path] = PropertyPredictor(path)
    return _PREDICTORS[path]


def _init_worker(checkpoint: str, threads: int) -> None:
    torch.set_num_threads(threads)
    _cached_predictor(checkpoint)


def _worker_columns(checkpoint: str, smiles: list, kwargs: dict) -> dict[str, Any]:
    return chunk_columns(_cached_predictor(checkpoint), smiles, **kwargs)


def _interval_calibration(checkpoint: Path | None, level: float) -> Calibration:
    """The calibration ``--interval`` needs, checked for ``level`` before any row is read."""
    calibration = load_calibration(checkpoint) if checkpoint is not None else None
    if calibration is None:
        raise CalibrationError(
            f"{checkpoint or 'the model in memory'} has no conformal calibration (no entry for it in "
            f"{CALIBRATION_FILE} beside it; fine-tuning writes one for checkpoint_best.pt and an estimator's save() "
            f"for model.pt): predict without --interval, or use a model that has one")
    calibration.quantile(1.0 - level)  # too few calibration points for this level: the error, now
    return calibration


def predict_file(model: Any, input: str | os.PathLike, output: str | os.PathLike,
                 config: PredictConfig | None = None) -> dict[str, Any]:
    """Stream ``input`` through the model into ``output`` (CSV; ``.gz`` compressed), ``chunk_size`` rows at a time.

    The output has the input's columns (as text, unchanged), one column per task and
    ``bartsmiles_error``, one row per input row in input order (see the module notes).  Started
    again after a kill, it continues after the last complete chunk (``<output>.progress.json``,
    removed when the run completes).  Returns ``{"output", "n", "n_errors"}`` (+ ``"resumed_rows"``
    when it continued a run).
    """
    cfg = config or PredictConfig()
    input, output = Path(input), Path(output)
    if not input.is_file():
        raise FileNotFoundError(f"input file not found: {input}")
    checkpoint = resolve_checkpoint(model) if not isinstance(model, PropertyPredictor) else None
    smiles_column = SMI_COLUMNS[0] if _is_smi(input) else cfg.smiles_column
    fingerprint = {"format": _PROGRESS_FORMAT, "input": _stat(input),
                   "model": _stat(checkpoint) if checkpoint else "in memory",
                   "smiles_column": smiles_column, "chunk_size": cfg.chunk_size, "on_overflow": cfg.on_overflow,
                   **({"interval": cfg.interval} if cfg.interval else {})}
    interval = _interval_calibration(checkpoint, cfg.interval) if cfg.interval else None  # before any work
    sidecar = progress_file(output)
    record = _resume_point(sidecar, output, fingerprint)
    done_chunks = int(record["chunks"]) if record else 0
    done_rows = int(record["rows"]) if record else 0
    n_errors = int(record["n_errors"]) if record else 0
    if record:
        logger.info("resuming %s after %d complete chunk(s) (%d rows)", output, done_chunks, done_rows)

    chunks = read_chunks(input, smiles_column, cfg.chunk_size)
    first = next(chunks)  # a missing column or unreadable text fails here, before the model is loaded
    kwargs = {"batch_size": cfg.batch_size, "on_overflow": cfg.on_overflow}
    if cfg.interval:
        kwargs.update(calibration=interval, alpha=1.0 - cfg.interval)
    pool = None
    if cfg.workers > 1:
        if checkpoint is None:
            raise ValueError("workers > 1 needs a checkpoint path, not a loaded model")
        threads = max(1, torch.get_num_threads() // cfg.workers)
        pool = ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                   initargs=(str(checkpoint), threads))
    predictor = None if pool else _cached_predictor(model)

    writer = _Output(output, int(record["bytes"]) if record else 0)
    pending: deque = deque()
    bar = tqdm(desc="predicting", unit="mol", initial=done_rows, disable=not cfg.progress, dynamic_ncols=True)
    index = 0
    quiet = warnings.catch_warnings()
    quiet.__enter__()
    # torch repeats this for fairseq's attention masks on every batch; harmless, and it tears the bar
    warnings.filterwarnings("ignore", message=r"Support for mismatched key_padding_mask and attn_mask is deprecated")

    def finish(chunk: pd.DataFrame, columns: dict[str, Any]) -> None:
        nonlocal done_chunks, done_rows, n_errors
        frame = chunk.reset_index(drop=True).assign(**columns)
        size = writer.write(frame, header=done_chunks == 0)
        done_chunks += 1
        done_rows += len(frame)
        n_errors += sum(1 for e in columns[ERROR_COLUMN] if e)
        _write_json_atomic(sidecar, {"fingerprint": fingerprint, "chunks": done_chunks, "rows": done_rows,
                                     "bytes": size, "n_errors": n_errors})
        bar.update(len(frame))

    try:
        for chunk in itertools.chain([first], chunks):
            index += 1
            if index <= done_chunks:
                continue  # written by the run that was stopped
            if index > 1 and chunk.empty:
                continue  # only the first chunk may be empty (a header-only input)
            smiles = chunk[smiles_column].tolist()
            call = dict(kwargs, taken=list(chunk.columns))
            if pool is None:
                finish(chunk, chunk_columns(predictor, smiles, **call))
                continue
            pending.append((chunk, pool.submit(_worker_columns, str(checkpoint), smiles, call)))
            while len(pending) > 2 * cfg.workers or (pending and pending[0][1].done()):
                chunk_done, future = pending.popleft()
                finish(chunk_done, future.result())
        while pending:
            chunk_done, future = pending.popleft()
            finish(chunk_done, future.result())
    finally:
        quiet.__exit__(None, None, None)
        bar.close()
        writer.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    sidecar.unlink(missing_ok=True)
    if n_errors:
        logger.warning("%d of %d row(s) cannot be predicted (NaN, reason in the %s column of %s)", n_errors,
                       done_rows, ERROR_COLUMN, output)
    summary: dict[str, Any] = {"output": str(output), "n": done_rows, "n_errors": n_errors}
    if record:
        summary["resumed_rows"] = int(record["rows"])
    return summary


def predict_partition(frame: pd.DataFrame, model: Any, smiles_column: str = "smiles", *, batch_size: int = 64,
                      on_overflow: str = "error") -> pd.DataFrame:
    """One partition (a pandas DataFrame) with the output columns added, for ``map_partitions`` of an engine.

    The model is loaded once per process and kept (a second checkpoint replaces it), so a Dask
    worker loads it on its first partition only::

        import dask.dataframe as dd
        ddf = dd.read_csv("molecules-*.csv", dtype=str)
        meta = predict_partition(ddf._meta, "runs/bbbp")          # the output's columns and types
        ddf.map_partitions(predict_partition, "runs/bbbp", meta=meta).to_csv("predicted-*.csv", index=False)

    Rows keep their index and order; bad rows get NaN and a reason, as everywhere.
    """
    if smiles_column not in frame.columns:
        raise MissingColumnError(f"no column {smiles_column!r} in the partition (columns: "
                                 f"{[str(c) for c in frame.columns]})")
    predictor = _cached_predictor(model)
    columns = chunk_columns(predictor, frame[smiles_column].tolist(), taken=frame.columns, batch_size=batch_size,
                            on_overflow=on_overflow)
    columns[ERROR_COLUMN] = pd.Series(columns[ERROR_COLUMN], index=frame.index, dtype=object)
    return frame.assign(**{k: (np.asarray(v) if k != ERROR_COLUMN else v) for k, v in columns.items()})
