"""RDKit 2D descriptors of molecules: the targets of the optional descriptor pretraining loss.

The set (:data:`DESCRIPTOR_NAMES`, 65 values) is chosen for speed: every value comes from RDKit's
C++ ``rdMolDescriptors`` (about 0.7 ms per drug-like molecule on one core, most of it Crippen's
atom contributions), so a 1.7M-molecule corpus takes minutes on a laptop. It covers size
(weight, heavy atoms, Labute ASA), lipophilicity and refractivity (Crippen logP, MR), polarity
(TPSA, H-bond donors and acceptors), flexibility and shape (rotatable bonds, kappa, chi), rings
and stereo counts, and the partitioned surface areas ``PEOE_VSA`` / ``SlogP_VSA`` / ``SMR_VSA``
that describe how charge, logP and refractivity spread over the surface.

Descriptors belong to the molecule, not to a spelling: any SMILES of the same molecule gives
the same row, so they survive randomized-SMILES augmentation.

A SMILES that RDKit cannot parse gives a row of NaN (never an exception inside a worker);
callers count and report those rows. Part of the core layer: numpy and RDKit only.
"""
from __future__ import annotations

import multiprocessing
from typing import Callable, Iterable, Sequence

import numpy as np

from bartsmiles.core.chem import parse_smiles
from bartsmiles.core.encoding import resolve_n_jobs
from bartsmiles.errors import InvalidSmilesError

try:
    from rdkit.Chem import rdMolDescriptors as _rd
except ImportError:  # RDKit is optional at import time (GPU images lack it); parse_smiles says so on use
    _rd = None

__all__ = ["DESCRIPTOR_NAMES", "descriptor_row", "descriptor_table"]

_SCALARS: tuple[tuple[str, Callable], ...] = (
    ("ExactMolWt", lambda m: _rd.CalcExactMolWt(m)),
    ("HeavyAtomCount", lambda m: m.GetNumHeavyAtoms()),
    ("FormalCharge", lambda m: sum(atom.GetFormalCharge() for atom in m.GetAtoms())),
    ("TPSA", lambda m: _rd.CalcTPSA(m)),
    ("NumHBD", lambda m: _rd.CalcNumHBD(m)),
    ("NumHBA", lambda m: _rd.CalcNumHBA(m)),
    ("NumRotatableBonds", lambda m: _rd.CalcNumRotatableBonds(m)),
    ("NumRings", lambda m: _rd.CalcNumRings(m)),
    ("NumAromaticRings", lambda m: _rd.CalcNumAromaticRings(m)),
    ("NumAliphaticRings", lambda m: _rd.CalcNumAliphaticRings(m)),
    ("NumSaturatedRings", lambda m: _rd.CalcNumSaturatedRings(m)),
    ("NumHeterocycles", lambda m: _rd.CalcNumHeterocycles(m)),
    ("NumHeteroatoms", lambda m: _rd.CalcNumHeteroatoms(m)),
    ("NumAmideBonds", lambda m: _rd.CalcNumAmideBonds(m)),
    ("NumAtomStereoCenters", lambda m: _rd.CalcNumAtomStereoCenters(m)),
    ("NumSpiroAtoms", lambda m: _rd.CalcNumSpiroAtoms(m)),
    ("NumBridgeheadAtoms", lambda m: _rd.CalcNumBridgeheadAtoms(m)),
    ("FractionCSP3", lambda m: _rd.CalcFractionCSP3(m)),
    ("LabuteASA", lambda m: _rd.CalcLabuteASA(m)),
    ("Chi0v", lambda m: _rd.CalcChi0v(m)),
    ("Chi1v", lambda m: _rd.CalcChi1v(m)),
    ("Chi2v", lambda m: _rd.CalcChi2v(m)),
    ("Chi3v", lambda m: _rd.CalcChi3v(m)),
    ("Kappa1", lambda m: _rd.CalcKappa1(m)),
    ("Kappa2", lambda m: _rd.CalcKappa2(m)),
    ("Kappa3", lambda m: _rd.CalcKappa3(m)),
    ("HallKierAlpha", lambda m: _rd.CalcHallKierAlpha(m)),
)
_N_PEOE, _N_SLOGP, _N_SMR = 14, 12, 10

#: descriptor names, in column order
DESCRIPTOR_NAMES: tuple[str, ...] = (
    "MolLogP", "MolMR",
    *(name for name, _ in _SCALARS),
    *(f"PEOE_VSA{i}" for i in range(1, _N_PEOE + 1)),
    *(f"SlogP_VSA{i}" for i in range(1, _N_SLOGP + 1)),
    *(f"SMR_VSA{i}" for i in range(1, _N_SMR + 1)),
)


def descriptor_row(smiles: str) -> np.ndarray:
    """The :data:`DESCRIPTOR_NAMES` values of one molecule, as float32.

    ``smiles`` must be a ``str`` (``TypeError`` otherwise). An unparsable or empty SMILES gives
    a row of NaN: the caller decides whether that is an error (see :func:`descriptor_table`).
    """
    if not isinstance(smiles, str):
        raise TypeError(f"smiles must be a str, got {type(smiles).__name__}")
    row = np.full(len(DESCRIPTOR_NAMES), np.nan, dtype=np.float32)
    if not smiles.strip():
        return row
    try:
        mol = parse_smiles(smiles)
    except InvalidSmilesError:
        return row
    logp, mr = _rd.CalcCrippenDescriptors(mol)
    values = [logp, mr, *(fn(mol) for _, fn in _SCALARS),
              *_rd.PEOE_VSA_(mol), *_rd.SlogP_VSA_(mol), *_rd.SMR_VSA_(mol)]
    row[:] = np.asarray(values, dtype=np.float64)  # float64 first: an overflow becomes inf, masked later
    return row


def _rows(chunk: Sequence[str]) -> np.ndarray:
    return np.stack([descriptor_row(s) for s in chunk]) if chunk else np.empty((0, len(DESCRIPTOR_NAMES)), np.float32)


def descriptor_table(smiles: Iterable[str], *, n_jobs: int = 0, chunk_size: int = 2000,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Descriptors of many molecules, ``(n, len(DESCRIPTOR_NAMES))`` float32, in input order.

    Computed in ``n_jobs`` processes (0: all cores) over chunks of ``chunk_size`` SMILES;
    ``progress(k)`` is called with the size of each finished chunk. Rows of unparsable SMILES
    are NaN (count them with ``np.isnan(table).all(axis=1)``).
    """
    items = list(smiles)
    chunks = [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]
    jobs = resolve_n_jobs(n_jobs)
    parts: list[np.ndarray] = []
    if jobs == 1 or len(chunks) <= 1:
        for chunk in chunks:
            parts.append(_rows(chunk))
            if progress:
                progress(len(chunk))
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for part in pool.imap(_rows, chunks):
                parts.append(part)
                if progress:
                    progress(len(part))
    if not parts:
        return np.empty((0, len(DESCRIPTOR_NAMES)), np.float32)
    return np.concatenate(parts)
