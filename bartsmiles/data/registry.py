"""Dataset registry and file location/download: which data files exist and where they are.

Registry
--------
The known data files are described as data in ``bartsmiles/resources/datasets.json``
(no per-dataset code branches). Each entry becomes a frozen :class:`DatasetSpec`:

``filename`` / ``subdir``
    The file is stored as ``<data root>/<subdir>/<filename>`` (``subdir`` may be empty).
``smiles_column``, ``targets``, ``task_type``, ``metric``
    As in ``PROTOCOL.md``. ``targets`` is a list of column names, or
    ``{"all_except": [...]}`` meaning every column of the file except those; such
    entries get ``targets == ()`` and ``targets_exclude`` set, and the real column list
    is resolved when the file is read (:func:`resolve_targets`): 617 for toxcast, 27
    for sider. Entries that are not property-prediction sets (MOSES pretraining,
    USPTO-50k reactions) have ``task_type`` ``"pretraining"``/``"retrosynthesis"`` and
    ``metric`` ``"none"``; :func:`locate` handles them, :func:`load_dataset` refuses them.
``sha256``
    Sum of the file **exactly as stored** in the shared data folder (SOURCES.md).
``url``, ``url_sha256``, ``archive_member``, ``transform``, ``content_sha256``
    Where the public origin serves the data, and how to get from those bytes to the
    stored file. ``url_sha256`` is the sum of what ``url`` serves (the whole archive
    when ``archive_member`` names a file inside a wheel/zip or sdist/tar).
    ``transform`` lists edits applied after download, in order: ``crlf_to_lf``,
    ``drop_blank_lines``, ``gzip``. ``content_sha256`` is the sum of the decompressed
    content of a ``.gz`` file (equal to ``sha256`` for plain files).

Honesty about checksums: for bace and tox21 the shared copy was gzipped locally and
for HIV it was also edited (line endings, blank lines), so upstream serves different
bytes than ``sha256`` describes. The downloader therefore checks the download
against ``url_sha256``, applies ``transform``, and then checks the result: against
``sha256`` when no re-compression happened (byte-identical copies), otherwise the
decompressed content against ``content_sha256`` (Python's gzip output is not
byte-identical to ``gzip -n -9``, so a downloaded ``.gz`` has its own file sum).

Location and download
---------------------
:func:`locate` searches, in order, an explicit ``data_dir``, ``$BARTSMILES_DATA`` and
the cache (:func:`default_cache_dir`); in each root both ``<root>/<filename>`` and
``<root>/<subdir>/<filename>``. Failing that it downloads into
``<cache>/<subdir>/<filename>`` through a temporary file in the same folder that is
renamed into place only after every check passed; on any failure nothing is left.

No torch, no fairseq. :mod:`bartsmiles.data.datasets` loads the files it locates.
"""
from __future__ import annotations

import json
import os
import urllib.error
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from bartsmiles.data.download import _TRANSFORMS, download_verified
from bartsmiles.errors import DownloadError

__all__ = [
    "DatasetSpec",
    "registry",
    "get_spec",
    "resolve_targets",
    "default_cache_dir",
    "locate",
]

_REGISTRY_PATH = Path(__file__).with_name("resources") / "datasets.json"
PROPERTY_TASKS = ("classification", "regression")


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry; see the module docstring for the meaning of each field."""

    name: str
    filename: str
    smiles_column: str
    targets: tuple[str, ...]
    task_type: str
    metric: str
    url: str
    sha256: str
    description: str
    subdir: str = ""
    targets_exclude: tuple[str, ...] | None = None
    url_sha256: str | None = None
    content_sha256: str | None = None
    archive_member: str | None = None
    transform: tuple[str, ...] = ()
    file_format: str = "csv"
    note: str = ""

    @property
    def is_property_dataset(self) -> bool:
        """True for classification/regression sets that :func:`load_dataset` can load."""
        return self.task_type in PROPERTY_TASKS


def _spec_from_json(name: str, entry: dict[str, Any]) -> DatasetSpec:
    where = f"{_REGISTRY_PATH}: entry {name!r}"
    try:
        raw_targets = entry["targets"]
        if isinstance(raw_targets, dict):
            targets: tuple[str, ...] = ()
            exclude: tuple[str, ...] | None = tuple(raw_targets["all_except"])
        else:
            targets, exclude = tuple(raw_targets), None
        transform = tuple(entry.get("transform") or ())
        unknown = [t for t in transform if t not in _TRANSFORMS]
        if unknown:
            raise ValueError(f"{where}: unknown transform step(s) {unknown}; known: {list(_TRANSFORMS)}")
        return DatasetSpec(
            name=name,
            filename=entry["filename"],
            smiles_column=entry["smiles_column"],
            targets=targets,
            task_type=entry["task_type"],
            metric=entry["metric"],
            url=entry["url"],
            sha256=entry["sha256"],
            description=entry.get("description", ""),
            subdir=entry.get("subdir", "") or "",
            targets_exclude=exclude,
            url_sha256=entry.get("url_sha256"),
            content_sha256=entry.get("content_sha256"),
            archive_member=entry.get("archive_member"),
            transform=transform,
            file_format=entry.get("file_format", "csv"),
            note=entry.get("note", ""),
        )
    except KeyError as exc:
        raise ValueError(f"{where} lacks the required field {exc.args[0]!r}") from None


@lru_cache(maxsize=1)
def _load_registry() -> dict[str, DatasetSpec]:
    with open(_REGISTRY_PATH, encoding="utf-8") as fh:
        data = json.load(fh)
    return {name: _spec_from_json(name, entry) for name, entry in data["datasets"].items()}


def registry() -> dict[str, DatasetSpec]:
    """All registered data files, by name (a fresh dict; the specs are immutable)."""
    return dict(_load_registry())


def get_spec(name: str) -> DatasetSpec:
    """The spec called ``name``. Unknown names raise KeyError listing the known ones."""
    specs = _load_registry()
    if name not in specs:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(specs))}")
    return specs[name]


def resolve_targets(spec: DatasetSpec, columns: Sequence[str]) -> list[str]:
    """The target column names of ``spec`` for a file whose header is ``columns``."""
    if spec.targets_exclude is None:
        return list(spec.targets)
    excluded = set(spec.targets_exclude)
    return [c for c in columns if c not in excluded]


# --------------------------------------------------------------------------- location


def default_cache_dir() -> Path:
    """``$BARTSMILES_CACHE``, else ``$XDG_CACHE_HOME/bartsmiles``, else ``~/.cache/bartsmiles``."""
    if os.environ.get("BARTSMILES_CACHE"):
        return Path(os.environ["BARTSMILES_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "bartsmiles"
    return Path.home() / ".cache" / "bartsmiles"


def _candidates(root: Path, spec: DatasetSpec) -> list[Path]:
    paths = [root / spec.filename]
    if spec.subdir:
        paths.append(root / spec.subdir / spec.filename)
    return paths


def locate(
    name_or_spec: str | DatasetSpec,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Path:
    """Path of the file of ``name_or_spec``, downloading it into the cache if needed.

    Raises:
        FileNotFoundError: not found and ``download=False`` (lists every place searched).
        ChecksumError: a download did not match its checksum (nothing is left behind).
    """
    spec = get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(Path(data_dir))
    if os.environ.get("BARTSMILES_DATA"):
        roots.append(Path(os.environ["BARTSMILES_DATA"]))
    roots.append(cache)
    searched: list[Path] = []
    for root in roots:
        for path in _candidates(root, spec):
            searched.append(path)
            if path.is_file():
                return path
    if not download:
        listing = "\n  ".join(str(p) for p in searched)
        raise FileNotFoundError(
            f"data file {spec.filename!r} of dataset {spec.name!r} not found (download=False); "
            f"searched:\n  {listing}"
        )
    target = cache / spec.subdir / spec.filename if spec.subdir else cache / spec.filename
    try:
        download_verified(spec, target)
    except urllib.error.URLError as exc:  # HTTPError included
        listing = "\n  ".join(str(p) for p in searched)
        raise DownloadError(
            f"dataset {spec.name!r}: {spec.filename} is not in any data folder and downloading it from "
            f"{spec.url} failed ({getattr(exc, 'reason', exc)}). Put the file in a folder and pass it as "
            f"data_dir (--data-dir), or set $BARTSMILES_DATA. Searched:\n  {listing}"
        ) from exc
    return target
