"""Download a registered data file and verify it before it is stored.

The file is fetched to a temporary name inside the target folder, checked against the sha256 of
what the URL serves, optionally taken out of an archive (a wheel or sdist) and transformed
(line endings, blank lines, gzip), checked again against the sum of the stored form, and only
then renamed into place.  A failed check raises :class:`ChecksumError` and leaves nothing behind.

Core module: no torch, no fairseq.
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from bartsmiles.errors import ChecksumError

logger = logging.getLogger(__name__)

_TRANSFORMS = ("crlf_to_lf", "drop_blank_lines", "gzip")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract_member(archive: Path, member: str, out: Path, url: str) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            if member not in names:
                raise FileNotFoundError(f"{member!r} is not in the archive downloaded from {url}")
            with zf.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return
    with tarfile.open(archive) as tf:  # sdists put everything under one top folder
        hits = [m for m in tf.getmembers() if m.isfile() and (m.name == member or m.name.split("/", 1)[-1] == member)]
        if len(hits) != 1:
            raise FileNotFoundError(f"{member!r} is not (exactly once) in the archive downloaded from {url}")
        src = tf.extractfile(hits[0])
        assert src is not None
        with src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)


def _apply_transform(step: str, path: Path) -> None:
    data = path.read_bytes()
    if step == "crlf_to_lf":
        data = data.replace(b"\r\n", b"\n")
    elif step == "drop_blank_lines":
        data = b"".join(line for line in data.splitlines(keepends=True) if line.strip(b"\r\n"))
    elif step == "gzip":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.write_bytes(data)


def download_verified(spec: Any, target: Path) -> None:
    """Fetch ``spec.url``, verify, transform, verify, and atomically place at ``target``.

    ``spec`` is a registry entry (:class:`bartsmiles.data.registry.DatasetSpec`; typed loosely so
    that this module stays below the registry).
    """
    if not spec.url:
        raise FileNotFoundError(f"dataset {spec.name!r} has no download url; place {spec.filename} in a data folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []

    def temp(suffix: str) -> Path:
        fd, name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=suffix, dir=target.parent)
        os.close(fd)
        temps.append(Path(name))
        return temps[-1]

    try:
        fetched = temp(".part")
        logger.info("downloading %s (%s) from %s", spec.name, spec.filename, spec.url)
        with urllib.request.urlopen(spec.url, timeout=60) as resp, open(fetched, "wb") as out:
            shutil.copyfileobj(resp, out)
        expected = spec.url_sha256 or spec.sha256
        actual = sha256_file(fetched)
        if actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {spec.filename} (dataset {spec.name!r}) downloaded from {spec.url}: "
                f"expected sha256 {expected}, got {actual}; the download was deleted"
            )
        result = fetched
        if spec.archive_member:
            result = temp(".member")
            _extract_member(fetched, spec.archive_member, result, spec.url)
        for step in spec.transform:
            _apply_transform(step, result)
        if "gzip" in spec.transform:  # our gzip bytes differ from the stored file's: compare content
            with gzip.open(result, "rb") as fh:
                got = hashlib.sha256(fh.read()).hexdigest()
            want, what = spec.content_sha256 or "", "decompressed-content sha256"
        else:
            got, want, what = sha256_file(result), spec.sha256, "sha256"
        if got != want:
            raise ChecksumError(
                f"checksum mismatch for {spec.filename} (dataset {spec.name!r}) built from {spec.url}: "
                f"expected {what} {want}, got {got}; nothing was stored"
            )
        os.replace(result, target)
    finally:
        for path in temps:
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- loading
