"""Reading input tables and checking output paths, with errors that name the file.

* :func:`read_csv` reads a CSV (plain or compressed) into a DataFrame.  A missing file, an empty
  file, text that is not UTF-8 and a malformed row are each one :class:`~bartsmiles.errors.DataError`
  (or ``FileNotFoundError``) naming the file, and the line where there is one.
* :func:`check_writable` is called *before* long work: it refuses an output whose folder does not
  exist and cannot be made, or that cannot be written, so that nothing computed is lost.

No torch, no fairseq.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pandas as pd

from bartsmiles.errors import DataError

__all__ = ["read_csv", "check_writable", "check_utf8", "cell_text"]


def cell_text(value: object) -> str:
    """The text of a table cell holding a SMILES: ``""`` for a missing value, else ``str(value).strip()``.

    Missing means ``None``, a float NaN of any width, ``pd.NA`` (nullable string columns) and
    ``pd.NaT``, so that an empty cell is reported as empty, never as the SMILES ``"<NA>"``.
    """
    if value is None:
        return ""
    if not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value):
        return ""
    return str(value).strip()


def check_utf8(path: str | os.PathLike) -> None:
    """Refuse a text file that is not UTF-8, naming the file, the line and the byte offset."""
    path = Path(path)
    if path.suffix.lower() in (".gz", ".bz2", ".xz", ".zip", ".zst"):
        return  # compressed: pandas decodes and reports; the message is caught by read_csv
    line = 1
    offset = 0
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: line {line} is not UTF-8 text (byte {offset + exc.start}: "
                                f"{raw[exc.start:exc.start + 1]!r}); save the file as UTF-8") from None
            offset += len(raw)
            line += 1


def read_csv(path: str | os.PathLike, **kwargs) -> pd.DataFrame:
    """A CSV file as a DataFrame; every failure names the file (and the line where known)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table file not found: {path}")
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"table {path} is empty (no header and no rows)") from None
    except pd.errors.ParserError as exc:
        found = re.search(r"line (\d+)", str(exc))
        where = f" at line {found.group(1)}" if found else ""
        raise DataError(f"{path}: not a well-formed CSV{where}: {str(exc).strip().splitlines()[-1]}") from None
    except UnicodeDecodeError as exc:
        check_utf8(path)  # names the line (plain files)
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8") from None
    except (csv.Error, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as a table ({type(exc).__name__}: {exc})") from None


def check_writable(path: str | os.PathLike, *, make_folder: bool = False) -> Path:
    """Make sure ``path`` can be written, before any work is done; returns it.

    The folder must exist, unless ``make_folder`` (for result folders a command owns, such as a
    benchmark's), when it is created.  Raises :class:`~bartsmiles.errors.DataError` naming the
    path when the folder is missing or cannot be made, or the file cannot be written.  A file
    that already exists is left untouched.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        if not make_folder:
            raise DataError(f"cannot write {path}: the folder {folder} does not exist")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot write {path}: its folder {folder} cannot be made ({exc.strerror or exc})") from None
    if path.is_dir():
        raise DataError(f"cannot write {path}: it is a folder")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise DataError(f"cannot write {path}: permission denied")
        return path
    if not os.access(folder, os.W_OK):
        raise DataError(f"cannot write {path}: the folder {folder} is not writable")
    return path
