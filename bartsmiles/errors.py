"""Every error bartsmiles raises, defined once.

All of them derive from :class:`BartSmilesError`, so ``except BartSmilesError`` catches anything
the package raises on purpose.  Each one also derives from the built-in exception that fits it
(``ValueError`` for bad input, ``FileNotFoundError`` for a missing file, ...), so code written
against the built-ins keeps working.

The command lines turn a :class:`BartSmilesError` (and a missing or unreadable file) into one line
on stderr and exit status 2 (:func:`run_handler`, used by ``bartsmiles`` and
``bartsmiles-attribute``).

Index spaces named by these errors:

* ``index``: the position of an item in the sequence given to the call (input order);
* ``row``: the 0-based data row of a table (CSV line ``row + 2``); for a table read by a call,
  ``row`` and ``index`` are the same number.

Only the standard library: this module sits below every other one.
"""
from __future__ import annotations

import os
import pickle
import sys
from typing import Any, Callable, Optional, Sequence

__all__ = [
    "BartSmilesError",
    "InvalidSmilesError", "SmilesTooLongError", "TokenizationError", "SequenceTooLongError",
    "DataError", "MissingColumnError", "SplitFileError", "ChecksumError", "DownloadError",
    "PropertyDataError", "Seq2SeqDataError",
    "CheckpointError", "UnsafeCheckpointError", "ExportError", "MissingExtraError", "DeviceError", "CalibrationError",
    "TrainingSetupError", "FinetuneError", "Seq2SeqError",
    "AttributionError", "TargetError", "ConvergenceError", "ConvergenceWarning",
    "ServeError",
    "USER_ERRORS", "run_handler",
]


class BartSmilesError(Exception):
    """Base class of every error bartsmiles raises on purpose."""


# ----------------------------------------------------------------------------- molecules and tokens


class InvalidSmilesError(BartSmilesError, ValueError):
    """A SMILES that cannot be used: RDKit cannot parse it, it is empty, or it cannot be tokenized.

    Attributes:
        smiles: the offending value (``""`` for an empty cell).
        index: its position in the input given to the call, when known.
        row: the same position, under the name used for tables (0-based data row).
        reason: a short explanation (RDKit's, the tokenizer's, or ours).
    """

    def __init__(self, smiles: Any, *, index: Optional[int] = None, row: Optional[int] = None,
                 reason: Optional[str] = None, message: Optional[str] = None) -> None:
        position = index if index is not None else row
        self.smiles = smiles
        self.index = position
        self.row = position
        self.reason = reason
        if message is None:
            where = (f" in row {row}" if row is not None else f" at index {index}" if index is not None else "")
            why = f": {reason}" if reason else ""
            message = f"invalid SMILES {smiles!r}{where}{why}"
        super().__init__(message)

    def __reduce__(self):  # picklable across worker processes
        return (_rebuild, (type(self), self.__dict__.copy(), str(self)))


class SmilesTooLongError(InvalidSmilesError):
    """A SMILES that needs ``length`` positions (``<s>`` and ``</s>`` included), over the model's ``limit``."""

    def __init__(self, smiles: Any, *, index: Optional[int], length: int, limit: int, hint: str = "") -> None:
        message = (f"SMILES at index {index} needs {length} positions (<s> and </s> included) but the "
                   f"model takes at most {limit}{'; ' + hint if hint else ''}: {smiles!r}")
        super().__init__(smiles, index=index, reason=f"too long: {length} tokens > {limit} positions",
                         message=message)
        self.length = length
        self.limit = limit


class TokenizationError(BartSmilesError, ValueError):
    """A SMILES contains a character no token can start with.

    Attributes: ``smiles`` (the input), ``position`` (character index of the first character that
    could not be tokenized) and ``char`` (that character).
    """

    def __init__(self, message: str, smiles: Optional[str] = None,
                 position: Optional[int] = None, char: Optional[str] = None) -> None:
        super().__init__(message)
        self.smiles = smiles
        self.position = position
        self.char = char

    def __reduce__(self):
        return (type(self), (str(self), self.smiles, self.position, self.char))


class SequenceTooLongError(BartSmilesError, ValueError):
    """An encoded sequence (bos/eos included) is longer than ``max_positions``."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"sequence of {length} ids (bos/eos included) exceeds max_positions={limit}")
        self.length = length
        self.limit = limit

    def __reduce__(self):
        return (type(self), (self.length, self.limit))


# ------------------------------------------------------------------------------------------- data


class DataError(BartSmilesError, ValueError):
    """A data file or table that cannot be used as given (the message names the file, row or column)."""


class MissingColumnError(BartSmilesError, KeyError):
    """A table lacks a required column (the message names it and lists the existing ones)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SplitFileError(DataError):
    """A split file is malformed: not JSON, wrong fields, non-integer or overlapping indices."""


class ChecksumError(DataError):
    """A downloaded file does not have the expected sha256."""


class DownloadError(BartSmilesError, FileNotFoundError):
    """A data file was found nowhere and could not be downloaded."""


class PropertyDataError(DataError):
    """Property data that cannot be trained on as given (the message says why and where)."""


class Seq2SeqDataError(DataError):
    """Reaction or SMILES pairs that cannot be used as given (the message names the file and lines)."""


# ------------------------------------------------------------------------------------ checkpoints


class CheckpointError(BartSmilesError, ValueError):
    """A file that is not a usable checkpoint of the kind asked for (the message names the file)."""


class UnsafeCheckpointError(BartSmilesError, pickle.UnpicklingError):
    """A checkpoint asks the unpickler for a global that is not on the allowlist.

    ``path`` is the file and ``refused`` the fully qualified names of the refused globals
    (e.g. ``["posix.system"]``). Nothing from the file was executed.
    """

    def __init__(self, path: str, refused: Sequence[str], allowed: Sequence[str] = (), detail: str = "") -> None:
        names = ", ".join(refused) if refused else "unknown"
        message = (f"refusing to load checkpoint {path}: it needs the global(s) {names}, which are "
                   f"not on the allowlist ({', '.join(allowed) or 'none'}). Nothing from the file was run. "
                   f"Only load checkpoints from sources you trust.")
        if detail:
            message += f" [torch: {detail.splitlines()[0]}]"
        super().__init__(message)
        self.path = path
        self.refused = list(refused)


class ExportError(BartSmilesError, ValueError):
    """A model that cannot be exported to the asked format, or an export whose self-check failed.

    The message names the model file and what does not map (a layout transformers' BART lacks, a
    tokenizer without an equivalent) or the largest difference found by the self-check.
    """


class MissingExtraError(BartSmilesError, ModuleNotFoundError):
    """An optional dependency is not installed; the message gives the pip command that installs it.

    Attributes: ``name`` (the module that could not be imported, as ``ModuleNotFoundError`` has it),
    ``extra`` (the ``setup.cfg`` extra that brings it) and ``install`` (the pip command).
    """

    def __init__(self, name: str, extra: str, packages: Sequence[str], purpose: str = "", reason: str = "") -> None:
        self.extra = extra
        self.install = f'pip install "bartsmiles[{extra}]"  (or: pip install {" ".join(packages)})'
        why = f" ({reason})" if reason else ""
        super().__init__(f"{purpose or 'this'} needs the optional package {name!r}, which cannot be imported{why}: "
                         f"{self.install}", name=name)

    def __reduce__(self):
        return (_rebuild, (type(self), self.__dict__.copy(), str(self)))


class DeviceError(BartSmilesError, ValueError):
    """A torch device that is not a device name, or that this machine does not have (``"cuda"``
    without a GPU, say)."""


class CalibrationError(BartSmilesError, ValueError):
    """Conformal calibration that cannot give what was asked: a model saved without it, a
    calibration file that cannot be read, an ``alpha`` outside (0, 1), or too few calibration
    points for that ``alpha`` (the message says how many it needs)."""


# --------------------------------------------------------------------------------------- training


class TrainingSetupError(BartSmilesError, RuntimeError):
    """A training configuration that fairseq would silently mishandle."""


class FinetuneError(BartSmilesError, ValueError):
    """A fine-tuning setup that cannot work (missing file, unusable labels or split)."""


class Seq2SeqError(BartSmilesError, ValueError):
    """A seq2seq setup or call that cannot work (missing file, empty data, bad option)."""


# ------------------------------------------------------------------------------------ attribution


class AttributionError(BartSmilesError, ValueError):
    """An attribution request that cannot be carried out (the message says why)."""


class TargetError(AttributionError, IndexError):
    """A target (output or neuron index) the model does not have."""


class ConvergenceError(BartSmilesError, RuntimeError):
    """The convergence delta of integrated gradients is above the tolerance (raise ``n_steps``)."""


class ConvergenceWarning(UserWarning):
    """The convergence delta of integrated gradients is above the tolerance."""


# ---------------------------------------------------------------------------------- serving


class ServeError(BartSmilesError, ValueError):
    """A request to ``bartsmiles serve`` that it refuses (too many molecules in one request), or a
    setting of it out of range (the message names the option and the limit)."""


# ------------------------------------------------------------------------------ command lines

#: Exceptions that are the user's input or environment, not a bug: one line and exit status 2
#: (ImportError: an optional dependency such as RDKit that this machine lacks).
USER_ERRORS: tuple[type[BaseException], ...] = (
    BartSmilesError, OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError, UnicodeError, ImportError,
)


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line, whatever the message held


def run_handler(prog: str, func: Callable[[], Optional[int]]) -> int:
    """Run ``func``; a failure becomes one line on stderr (exit 2 for user errors, 1 for bugs)."""
    try:
        return int(func() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (rerun the same command to resume where it saves progress)", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if os.environ.get("BARTSMILES_DEBUG"):
            raise
        print(f"{prog}: error: {_message(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, with a way to see more
        if os.environ.get("BARTSMILES_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {_message(exc)} (rerun with BARTSMILES_DEBUG=1 "
              "for the traceback, and please report it)", file=sys.stderr)
        return 1


def _rebuild(cls, state: dict, message: str):
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error
