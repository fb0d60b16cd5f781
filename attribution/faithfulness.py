"""The deletion check: does hiding the atoms a map ranks first move the model more than hiding as many atoms at random?

A map can look chemical and still not be what the model reads.  Without a ground truth, the
model itself can say so: hide the ``k`` atoms the map ranks first and see how far the attributed
output falls, then hide ``k`` atoms drawn at random (``n_random`` draws) and compare::

    top_drop    = F(molecule) - F(molecule with the k top-ranked atoms hidden)
    random_drop = mean over draws of  F(molecule) - F(molecule with k random atoms hidden)
    gain        = top_drop - random_drop
    rank        = share of the random draws whose drop is below top_drop (ties count half)

A faithful map has a clearly positive ``gain`` and a ``rank`` near 1; a map that points at atoms
the model does not use has ``gain`` near 0 and ``rank`` near 0.5, however good the picture looks.
(This is the "comprehensiveness" of rationale benchmarks, with a random reference added, because
hiding any atoms at all can move a model.)

**Hiding** an atom is :mod:`.occlusion`'s ``<mask>`` with ``attached=True``: the atom's own
token(s) and the bond, branch and ring-closure tokens that join it, replaced by ``<mask>`` (the
corruption the model was pretrained to read; :func:`.occlusion.occlusion_groups`) in what both
the encoder and the decoder read, so that no part of the model sees the hidden atoms.  All ``k``
atoms of a set are hidden together, in one sequence.  The ranking is the map's environment scores
by default (what the drawings show) or its atom scores; ties in it are broken by atom index.

Index spaces: atoms are RDKit atom indices of the SMILES the model read
(``Attribution.smiles``); the token indices hidden are those of ``Attribution.tokens``.

``k`` defaults to 3 (about one functional group), and is at most the number of atoms (then the
top and random sets are the same, and ``gain`` is 0).  The random draws of a molecule are seeded
by ``seed`` and its SMILES, so a molecule's check does not depend on what else is in the batch.
Cost: ``1 + 1 + n_random`` forward passes per molecule, without gradients, batched across molecules.
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from .inputs import Molecule, ScoreModel, length_batches, make_batch
from .occlusion import occluded_ids, occlusion_groups

__all__ = ["DEFAULT_CHECK_ATOMS", "DEFAULT_CHECK_DRAWS", "DeletionCheck", "top_atoms", "hidden_outputs", "random_sets",
           "check_atom_sets", "make_checks"]

#: atoms hidden by default (about one functional group)
DEFAULT_CHECK_ATOMS = 3
#: random atom sets drawn per molecule by default
DEFAULT_CHECK_DRAWS = 8


@dataclass(frozen=True)
class DeletionCheck:
    """One molecule's deletion check (module docstring): ``atoms`` are the ``k`` top-ranked atoms
    (RDKit atom indices, best first); ``output`` the attributed quantity of the whole molecule;
    ``top_drop`` its fall when ``atoms`` are hidden; ``random_drops`` its fall for each random set."""

    smiles: str
    atoms: tuple[int, ...]
    output: float
    top_drop: float
    random_drops: tuple[float, ...]

    @property
    def k(self) -> int:
        """The number of atoms hidden in each set."""
        return len(self.atoms)

    @property
    def random_drop(self) -> float:
        """The mean fall over the random sets."""
        return float(np.mean(self.random_drops)) if self.random_drops else 0.0

    @property
    def gain(self) -> float:
        """``top_drop - random_drop``: how much more the top-ranked atoms matter than random ones."""
        return self.top_drop - self.random_drop

    @property
    def rank(self) -> float:
        """Share of the random sets whose drop is below ``top_drop`` (ties count half); 0.5 for none."""
        if not self.random_drops:
            return 0.5
        drops = np.asarray(self.random_drops)
        return float(np.mean((drops < self.top_drop) + 0.5 * (drops == self.top_drop)))

    def to_dict(self) -> dict:
        """JSON-ready fields plus ``k``, ``random_drop``, ``gain`` and ``rank``."""
        out = asdict(self)
        out.update(atoms=list(self.atoms), random_drops=list(self.random_drops), k=self.k,
                   random_drop=self.random_drop, gain=self.gain, rank=self.rank)
        return out

    @classmethod
    def from_dict(cls, record: dict) -> "DeletionCheck":
        """The check :meth:`to_dict` wrote (its derived fields are recomputed, not read)."""
        return cls(smiles=str(record["smiles"]), atoms=tuple(int(a) for a in record["atoms"]),
                   output=float(record["output"]), top_drop=float(record["top_drop"]),
                   random_drops=tuple(float(v) for v in record["random_drops"]))


def top_atoms(scores: Sequence[float], k: int) -> tuple[int, ...]:
    """The ``k`` atoms with the highest ``scores`` (atom index space), best first; ties by atom index.

    Raises :class:`ValueError` for ``k < 1`` or more atoms than ``scores`` has."""
    values = np.asarray(scores, dtype=np.float64)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= values.size:
        raise ValueError(f"k must be an integer in 1..{values.size} (the atoms), got {k!r}")
    order = np.lexsort((np.arange(values.size), -values))  # by score, descending; then by index
    return tuple(int(a) for a in order[:k])


def hidden_outputs(model: ScoreModel, molecules: Sequence[Molecule], atom_sets: Sequence[Sequence[Sequence[int]]],
                   *, mask_id: int, batch_size: int) -> list[np.ndarray]:
    """Per molecule, ``F`` of the molecule itself and then of it with each of its atom sets hidden
    (``atom_sets[m]``: a list of atom-index sets; an empty set is the molecule itself), in no-grad
    passes of at most ``batch_size`` sequences: an array of ``1 + len(atom_sets[m])`` values.

    Raises :class:`ValueError` when ``atom_sets`` does not have one entry per molecule or names an
    atom a molecule lacks."""
    if len(atom_sets) != len(molecules):
        raise ValueError(f"{len(atom_sets)} lists of atom sets for {len(molecules)} molecules")
    sequences: list[tuple[int, ...]] = []
    for mol, sets in zip(molecules, atom_sets):
        groups = occlusion_groups(mol.alignment, mol.n_atoms, attached=True)
        sequences.append(tuple(mol.ids))
        for atoms in sets:
            bad = [a for a in atoms if not 0 <= int(a) < mol.n_atoms]
            if bad:
                raise ValueError(f"atom {bad[0]} is not in {mol.smiles!r} ({mol.n_atoms} atoms)")
            sequences.append(occluded_ids(mol, sorted({t for a in atoms for t in groups[int(a)]}), mask_id))
    values = np.zeros(len(sequences), dtype=np.float64)
    with torch.no_grad():  # not inference_mode: fairseq caches its decoder mask (see .occlusion)
        for idx in length_batches([len(s) for s in sequences], batch_size):
            batch = make_batch([sequences[i] for i in idx], model.pad, model.device)  # encoder and decoder alike
            values[idx] = model.score(model.embed(batch.src), batch.src, batch.lengths, batch.prev).double().cpu().numpy()
    out, start = [], 0
    for sets in atom_sets:
        out.append(values[start: start + 1 + len(sets)])
        start += 1 + len(sets)
    return out


def random_sets(smiles: str, n_atoms: int, k: int, n_random: int, seed: int) -> list[tuple[int, ...]]:
    """``n_random`` sets of ``k`` distinct atoms of ``n_atoms``, seeded by ``seed`` and ``smiles``."""
    rng = np.random.default_rng([int(seed), zlib.crc32(smiles.encode())])
    return [tuple(int(a) for a in rng.choice(n_atoms, k, replace=False)) for _ in range(n_random)]


def check_atom_sets(molecules: Sequence[Molecule], scores: Sequence[Sequence[float]], *, k: Optional[int] = None,
                    n_random: int = DEFAULT_CHECK_DRAWS, seed: int = 0) -> list[list[tuple[int, ...]]]:
    """Per molecule, the atom sets the deletion check hides (module docstring): first the ``k`` atoms
    ``scores[m]`` (atom index space) ranks highest, then ``n_random`` random sets of as many atoms.
    ``k``: default :data:`DEFAULT_CHECK_ATOMS`, at most the molecule's atoms.

    Raises :class:`ValueError` for ``k < 1``, ``n_random < 1`` or scores without one entry per atom."""
    k = DEFAULT_CHECK_ATOMS if k is None else k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (atoms hidden) must be an integer >= 1, got {k!r}")
    if isinstance(n_random, bool) or not isinstance(n_random, (int, np.integer)) or n_random < 1:
        raise ValueError(f"n_random (random atom sets) must be an integer >= 1, got {n_random!r}")
    if len(scores) != len(molecules):
        raise ValueError(f"{len(scores)} score vectors for {len(molecules)} molecules")
    sets = []
    for mol, s in zip(molecules, scores):
        if np.asarray(s).shape != (mol.n_atoms,):
            raise ValueError(f"{np.asarray(s).size} atom scores for {mol.smiles!r} ({mol.n_atoms} atoms)")
        size = min(int(k), mol.n_atoms)
        sets.append([top_atoms(s, size), *random_sets(mol.smiles, mol.n_atoms, size, n_random, seed)])
    return sets


def make_checks(molecules: Sequence[Molecule], sets: Sequence[Sequence[tuple[int, ...]]],
                values: Sequence[np.ndarray]) -> list[DeletionCheck]:
    """The :class:`DeletionCheck` of each molecule from its :func:`check_atom_sets` and the
    :func:`hidden_outputs` of those sets (the molecule's own output first)."""
    return [DeletionCheck(smiles=mol.smiles, atoms=tuple(s[0]), output=float(v[0]),
                          top_drop=float(v[0] - v[1]), random_drops=tuple(float(v[0] - x) for x in v[2:]))
            for mol, s, v in zip(molecules, sets, values)]
