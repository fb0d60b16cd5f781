"""Atom scores -> environment scores: each atom's score plus the mean score of the atoms around it.

Token-level methods score the tokens the model reads most: the carbonyl ``O`` and the ``N`` of an
amide, the two ``O`` of an ester, but rarely the carbonyl ``C`` that joins them, because a ``C``
token is everywhere.  A chemist reads the group.  The **environment score** of atom ``i`` within
radius ``R`` is::

    env[i] = s[i] + sum_{d=1..R} (1 / d) * mean{ s[j] : dist(i, j) == d }

with ``s`` the atom scores, ``dist`` the topological distance (bonds on the shortest path; atoms of
another fragment are at no distance), and an empty shell contributing nothing.  ``R = 0`` gives
``s`` back.  This is what an ECFP similarity map does by construction -- a fingerprint bit's weight
lands on every atom of its radius-2 environment -- done here to the model's own atom scores.  The
default ``R = 2`` (:data:`DEFAULT_ENVIRONMENT_RADIUS`) was chosen by the ground-truth table
(README, Attribution; ``benchmarks/attribution_groundtruth.py``).

Environment scores are for ranking and drawing atoms.  They are **not** additive: their sum is not
the output change, so substructure sums and completeness use the atom scores themselves.

Index space: both the input and the output are per **atom index** (RDKit's numbering of ``mol``).
No torch import.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from rdkit import Chem

__all__ = ["DEFAULT_ENVIRONMENT_RADIUS", "check_radius", "environment_scores", "shell_weights"]

#: the radius of :func:`environment_scores` that ``Attributor.attribute`` uses by default
DEFAULT_ENVIRONMENT_RADIUS = 2


def check_radius(radius) -> int:
    """``radius`` as an int >= 0, else :class:`ValueError`."""
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"environment radius must be an integer >= 0, got {radius!r}")
    return int(radius)


def shell_weights(mol: Chem.Mol, radius: int) -> np.ndarray:
    """``(n_atoms, n_atoms)`` matrix ``M`` with ``environment_scores = M @ atom_scores``.

    ``M[i, i] = 1``; for ``1 <= d <= radius``, ``M[i, j] = (1 / d) / n_d(i)`` for the ``n_d(i)``
    atoms ``j`` at topological distance ``d`` from ``i``; zero elsewhere.
    """
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"shell_weights needs an RDKit Mol, got {type(mol).__name__}")
    radius = check_radius(radius)
    n = mol.GetNumAtoms()
    weights = np.eye(n)
    if radius == 0 or n < 2:
        return weights
    distance = np.rint(Chem.GetDistanceMatrix(mol)).astype(np.int64)  # other fragments: a huge distance
    for d in range(1, radius + 1):
        shell = (distance == d).astype(np.float64)
        size = shell.sum(axis=1, keepdims=True)
        weights += np.divide(shell, size, out=np.zeros_like(shell), where=size > 0) / d
    return weights


def environment_scores(mol: Chem.Mol, atom_scores: Sequence[float],
                       radius: int = DEFAULT_ENVIRONMENT_RADIUS) -> np.ndarray:
    """Each atom's score plus ``1/d`` times the mean score of the atoms ``d`` bonds away, ``d = 1..radius``
    (module docstring).  ``atom_scores``: one per atom of ``mol`` (RDKit atom index)."""
    weights = shell_weights(mol, radius)
    scores = np.asarray(atom_scores, dtype=np.float64)
    if scores.shape != (mol.GetNumAtoms(),):
        raise ValueError(f"{scores.size} atom scores for a molecule of {mol.GetNumAtoms()} atoms")
    return weights @ scores
