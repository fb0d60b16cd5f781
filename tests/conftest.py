"""Shared pytest fixtures for the core-layer tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder: ``$BARTSMILES_DATA`` or ``<repo>/../shared/data``; skip if absent."""
    path = Path(os.environ.get("BARTSMILES_DATA") or REPO.parent / "shared" / "data")
    if not (path / "moleculenet").is_dir():
        pytest.skip(f"shared data folder not found at {path} (set BARTSMILES_DATA)")
    return path
