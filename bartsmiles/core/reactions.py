"""Root-aligned SMILES for reactions: write a product from a chosen atom, and its reactants so that they follow it.

A retrosynthesis model reads a product and writes its reactants. When both are canonical SMILES,
the same atoms are usually spelled in a different order on the two sides, and the model must
learn that reordering as well as the chemistry. Root alignment (the idea of R-SMILES, Zhong et al.,
Chem. Sci. 2022) removes most of it: the product is written starting from a root atom, and each
reactant is written starting from the atom that maps to the earliest-written product atom it
contains, with the reactants ordered by that position. Source and target then share most of
their spelling, and different roots give different, equally aligned views of one reaction
(augmentation for training and for test-time ranking).

Input is an **atom-mapped** reaction (atom-map numbers on the product atoms and on the reactant
atoms they come from; :mod:`bartsmiles.data.atom_mapping` computes them). The output SMILES carry
no atom maps.

Index spaces
------------
* **atom index**: RDKit's atom numbering of the product as parsed (``Chem.MolFromSmiles``), maps
  and all; roots are given in it (``root=-1`` means RDKit's canonical start).
* **output position**: the rank of an atom in the written product SMILES
  (RDKit's ``_smilesAtomOutputOrder``).
* **map number**: the atom-map number of the input reaction; it links product and reactant atoms.

This module is part of the core layer: RDKit (through :mod:`bartsmiles.core.chem`) and numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bartsmiles.core.chem import parse_smiles
from bartsmiles.errors import InvalidSmilesError, Seq2SeqDataError

try:
    from rdkit import Chem
except ImportError:  # RDKit is optional at import (GPU images lack it); parse_smiles then says so in one line
    Chem = None

__all__ = [
    "AlignedPair",
    "align_reaction",
    "edit_distance",
    "product_roots",
    "rooted_views",
    "split_mapped_reaction",
]


@dataclass(frozen=True)
class AlignedPair:
    """One root-aligned view of a reaction: ``product`` and ``reactants`` (``'.'``-joined), no maps.

    ``root`` is the product atom index the product SMILES starts from (``-1``: canonical);
    ``aligned`` counts the reactant molecules that contain a mapped product atom (the others, such
    as reagents, are written canonically, after them).
    """

    product: str
    reactants: str
    root: int
    aligned: int


def split_mapped_reaction(reaction: str) -> tuple[str, str]:
    """``(reactants, product)`` of an atom-mapped ``"reactants>>product"`` or ``"reactants>agents>product"``.

    Agents written between the arrows are appended to the reactants. Raises
    :class:`~bartsmiles.errors.Seq2SeqDataError` for text that is not a reaction with one product side.
    """
    parts = str(reaction).strip().split(">")
    if len(parts) != 3 or not parts[0].strip() or not parts[2].strip():
        raise Seq2SeqDataError(f"not a reaction 'reactants>>product': {reaction!r}")
    reactants = ".".join(p for p in (parts[0].strip(), parts[1].strip()) if p)
    return reactants, parts[2].strip()


def _plain(mol: "Chem.Mol") -> "Chem.Mol":
    """A copy of ``mol`` without atom-map numbers (same atom indices)."""
    out = Chem.Mol(mol)
    for atom in out.GetAtoms():
        atom.SetAtomMapNum(0)
    return out


def _rooted(mol: "Chem.Mol", root: int) -> tuple[str, list[int]]:
    """SMILES of ``mol`` (maps removed) starting at atom ``root`` (-1: canonical), and the atom output order."""
    plain = _plain(mol)
    smiles = Chem.MolToSmiles(plain, rootedAtAtom=int(root), canonical=True)
    order = [int(i) for i in plain.GetProp("_smilesAtomOutputOrder").strip("[],").split(",") if i.strip()]
    return smiles, order


def _follow(fragment: "Chem.Mol", ranked: list) -> str:
    """SMILES of a reactant ``fragment`` written to follow the product: from the atom of the lowest
    product output position, branches and ring closures taken in product order where they can be.

    RDKit writes a non-canonical SMILES in atom-index order wherever the graph leaves a choice, so
    the atoms are renumbered by product output position first (``ranked[i]``, ``None`` for atoms
    not in the product, which go last in canonical order).
    """
    plain = _plain(fragment)
    canonical_rank = list(Chem.CanonicalRankAtoms(plain, breakTies=True))
    big = len(ranked) + 1
    key = [(r if r is not None else big + canonical_rank[i]) for i, r in enumerate(ranked)]
    order = sorted(range(len(key)), key=key.__getitem__)
    renumbered = Chem.RenumberAtoms(plain, order)
    return Chem.MolToSmiles(renumbered, rootedAtAtom=0, canonical=False)


def _parse_mapped(smiles: str, what: str) -> "Chem.Mol":
    try:
        return parse_smiles(smiles)
    except InvalidSmilesError as exc:
        raise Seq2SeqDataError(f"{what}: {exc}") from None


def align_reaction(reactants: str, product: str, root: int = -1) -> AlignedPair:
    """The root-aligned view of the mapped reaction ``reactants >> product`` starting at product atom ``root``.

    The product is written from ``root`` (RDKit's canonical ranks break ties between branches).
    Each reactant molecule that contains atoms mapped to the product is written from its atom
    mapped to the earliest-written product atom, and the reactants are ordered by that position;
    reactant molecules without such atoms follow in canonical order. The reactants are the same
    molecules as the input's (only their spelling changes); maps are removed from the output.
    """
    product_mol = _parse_mapped(product, "product")
    reactant_mol = _parse_mapped(reactants, "reactants")
    n = product_mol.GetNumAtoms()
    if not -1 <= int(root) < n:
        raise Seq2SeqDataError(f"root {root} is not an atom of the product ({n} atoms)")
    product_smiles, order = _rooted(product_mol, root)
    position = {}
    for rank, index in enumerate(order):
        number = product_mol.GetAtomWithIdx(index).GetAtomMapNum()
        if number:
            position[number] = rank
    aligned, rest = [], []
    for fragment in Chem.GetMolFrags(reactant_mol, asMols=True, sanitizeFrags=False):
        ranked = [position.get(a.GetAtomMapNum()) for a in fragment.GetAtoms()]
        if any(r is not None for r in ranked):
            aligned.append((min(r for r in ranked if r is not None), _follow(fragment, ranked)))
        else:
            rest.append(_rooted(fragment, -1)[0])
    written = [s for _, s in sorted(aligned)] + sorted(rest)
    return AlignedPair(product=product_smiles, reactants=".".join(written), root=int(root), aligned=len(aligned))


def product_roots(n_atoms: int, k: int, seed: int = 0) -> list[int]:
    """``k`` product roots for ``k`` views: the canonical start (-1) first, then distinct atoms in a seeded order.

    With ``k > n_atoms + 1`` the atoms repeat (the same views again), so that every reaction
    contributes ``k`` pairs and the augmentation keeps the data's proportions.
    """
    if n_atoms < 1 or k < 1:
        raise ValueError(f"need n_atoms >= 1 and k >= 1, got {n_atoms} and {k}")
    atoms = [int(i) for i in np.random.default_rng(seed).permutation(n_atoms)]
    roots = [-1] + atoms
    return [roots[i % len(roots)] for i in range(k)]


def rooted_views(smiles: str, k: int, seed: int = 0) -> list[str]:
    """``k`` spellings of the (unmapped) ``smiles``, each started from a different root (see :func:`product_roots`).

    This is the test-time counterpart of :func:`align_reaction`: a product written from the roots
    a root-aligned model was trained on. A ``'.'``-separated input is rooted on its first molecule.
    """
    mol = parse_smiles(smiles)
    first = Chem.GetMolFrags(mol)[0]
    views = []
    for root in product_roots(len(first), k, seed):
        views.append(Chem.MolToSmiles(mol, rootedAtAtom=-1 if root < 0 else int(first[root]), canonical=True))
    return views


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences (strings, or token lists)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]
