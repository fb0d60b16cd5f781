"""Edit occlusion: score each atom by the drop in the output when the atom is edited out of the molecule.

Mask occlusion (:mod:`.occlusion`) hides an atom's token behind ``<mask>``, and a model pretrained
to denoise may read ``<mask>`` as "an atom goes here" and fill it in.  This method edits the
molecule itself and asks the model about the edited molecule: what if this atom were not there?
Per atom ``a`` (:func:`remove_atom`):

* a terminal atom (at most one heavy neighbour) is deleted, and hydrogens take its place;
* a heteroatom with two or more heavy neighbours becomes carbon (an amide N, a ring O);
* a carbon with exactly two heavy neighbours outside any ring is cut out, and its two neighbours
  are joined by a single bond;
* any other carbon (ring atoms, branch points) has no edit, and neither has an edit RDKit cannot
  sanitize: such an atom scores 0.

The atom's score is::

    score[a] = F(molecule) - F(edited molecule)        (atom index space)

so a positive score means the atom raises the attributed quantity.

**Repeated copies** (``joint_copies=True``, the default).  Where a molecule holds two or more
terminal heteroatoms of the same kind -- one element and charge, bonded the same way to the same
element, with the halogens counted as one element: two aromatic chlorines, an aryl F and an aryl
Br, the three fluorines of a CF3, the two oxygens of a sulfonyl or of two amide carbonyls, but not
a nitro group's ``=O`` and ``[O-]`` -- deleting one leaves the others
to carry the signal, so each alone scores near zero although together they decide the output.  For each such group ``G``
(:func:`repeated_terminal_groups`) the molecule is also run with all of ``G`` deleted at once
(:func:`remove_atoms`), and the joint drop's excess over the single drops is shared equally::

    score[a] += (F(molecule) - F(molecule without G) - sum(score[G])) / |G|      for a in G

so the group's scores add up to its joint drop.  It costs one more forward pass per group.

**Branch fill** (``branch_fill=True``, the default).  An atom without an edit that is not in a
ring is a branch point: the carbonyl carbon of an amide, ester or urea, the central carbon of a
CF3 or of a tert-butyl.  Its groups hang on it, so it is scored by what they are worth: the sum of the scores
of its heavy neighbours that have an edit (after the joint copies above)::

    score[b] = sum(score[n] for n in neighbours(b) if n has an edit)      b: a branch atom without an edit

(:func:`fill_branches`).  No forward pass of its own, and an estimate, not a measured drop:
deleting ``b`` would break the molecule apart.  Ring atoms without an edit keep 0 (a ring carbon
bearing a halogen is not part of the halide).

The edited molecules are read as the model reads any input (canonical SMILES for a canonical
model), so their atom numbering never matters.  There is no single baseline molecule: ``baseline_output`` is set to
``output``, so ``delta`` is the sum of the scores.  Not additive.  In the token table an atom token
carries its atom's score and every other token zero.

All originals and edited copies of all molecules are sorted by length and run, without
gradients, in forward passes of at most ``batch_size`` sequences and at most
:data:`~bartsmiles.attribution.inputs.TOKEN_BUDGET` padded tokens.  Each distinct edited molecule
runs once, so a molecule of ``n`` atoms costs at most ``n + 1`` forward passes of one sequence,
plus one per group of repeated copies, and fewer where symmetric atoms give the same edit (about
7.6 on average for MOSES molecules of 20.8 atoms).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from rdkit import Chem

from bartsmiles.core.chem import HALOGENS, atom_made_carbon, checked_atom_index, parse_smiles, sanitized_or_none
from bartsmiles.errors import BartSmilesError

from .inputs import Molecule, ScoreModel, length_batches, make_batch
from .result import MethodScores, atom_method_scores

__all__ = ["remove_atom", "remove_atoms", "repeated_terminal_groups", "fill_branches", "edit_occlusion"]


def _smiles(mol: Optional[Chem.Mol]) -> Optional[str]:
    """Canonical SMILES of an edited molecule that sanitized, ``None`` for one that did not."""
    return None if mol is None else Chem.MolToSmiles(mol)


def remove_atoms(mol: Chem.Mol, indices: Sequence[int]) -> Optional[str]:
    """SMILES of ``mol`` with the terminal atoms ``indices`` (RDKit atom indices, each with at most
    one heavy neighbour) deleted, hydrogens taking their places; ``None`` when nothing would be left
    or RDKit rejects the result.

    Raises :class:`TypeError` for a non-``Mol``, :class:`IndexError` for an atom ``mol`` lacks and
    :class:`ValueError` for an atom with two or more heavy neighbours or an empty ``indices``.
    """
    picked = sorted({checked_atom_index(mol, i) for i in indices}, reverse=True)
    if not picked:
        raise ValueError("no atoms to remove")
    inner = [i for i in picked if mol.GetAtomWithIdx(i).GetDegree() > 1]
    if inner:
        raise ValueError(f"atom {inner[-1]} has {mol.GetAtomWithIdx(inner[-1]).GetDegree()} heavy neighbours; "
                         "only terminal atoms are removed")
    if len(picked) == mol.GetNumAtoms():
        return None  # nothing would be left
    rw = Chem.RWMol(mol)
    for i in picked:  # highest index first, so the others keep their numbers
        rw.RemoveAtom(i)
    return _smiles(sanitized_or_none(rw))


def _terminal_kind(atom: Chem.Atom) -> tuple:
    """(element -- ``"halogen"`` for F, Cl, Br and I --, formal charge, neighbour's element, bond
    type) of a terminal atom; the last two ``None`` for an atom without neighbours (an ion)."""
    element = "halogen" if atom.GetAtomicNum() in HALOGENS else atom.GetAtomicNum()
    bonds = atom.GetBonds()
    if not bonds:
        return element, atom.GetFormalCharge(), None, None
    bond = bonds[0]
    return element, atom.GetFormalCharge(), bond.GetOtherAtom(atom).GetAtomicNum(), str(bond.GetBondType())


def repeated_terminal_groups(mol: Chem.Mol) -> list[list[int]]:
    """The terminal heteroatoms of ``mol`` (not carbon, at most one heavy neighbour) grouped by
    kind -- element (the halogens F, Cl, Br and I count as one), formal charge, the neighbour's
    element and the bond to it -- for each kind
    with two or more of them: ascending RDKit atom indices, groups in order of their first atom
    (module docstring, *repeated copies*)."""
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"mol must be an RDKit Mol, got {type(mol).__name__}")
    groups: dict[tuple, list[int]] = {}
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() not in (1, 6) and atom.GetDegree() <= 1:
            groups.setdefault(_terminal_kind(atom), []).append(atom.GetIdx())
    return sorted((g for g in groups.values() if len(g) >= 2), key=lambda g: g[0])


def remove_atom(mol: Chem.Mol, index: int) -> Optional[str]:
    """SMILES of ``mol`` with atom ``index`` (RDKit atom index) edited out, or ``None`` (module docstring).

    Raises :class:`TypeError` for a non-``Mol`` and :class:`IndexError` for an atom ``mol`` lacks.
    """
    atom = mol.GetAtomWithIdx(checked_atom_index(mol, index))
    neighbours = [n.GetIdx() for n in atom.GetNeighbors()]
    if len(neighbours) <= 1:
        return remove_atoms(mol, [atom.GetIdx()])
    if atom.GetAtomicNum() != 6:
        return _smiles(atom_made_carbon(mol, atom.GetIdx()))
    if len(neighbours) == 2 and not atom.IsInRing():  # outside a ring its two neighbours are not bonded
        rw = Chem.RWMol(mol)
        rw.AddBond(neighbours[0], neighbours[1], Chem.BondType.SINGLE)
        rw.RemoveAtom(atom.GetIdx())
        return _smiles(sanitized_or_none(rw))
    return None


def fill_branches(mol: Chem.Mol, scores: Sequence[float], edited: Sequence[bool]) -> np.ndarray:
    """``scores`` (atom index space) with each atom that has no edit (``edited[a]`` false) and is not
    in a ring set to the sum of the scores of its heavy neighbours that have one (module docstring,
    *branch fill*); the other atoms keep theirs.  A new array; ``scores`` is not changed.

    Raises :class:`TypeError` for a non-``Mol`` and :class:`ValueError` when ``scores`` or
    ``edited`` does not have one entry per atom of ``mol``.
    """
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"mol must be an RDKit Mol, got {type(mol).__name__}")
    n = mol.GetNumAtoms()
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (n,) or len(edited) != n:
        raise ValueError(f"scores and edited need one entry per atom ({n}); got {values.shape} and {len(edited)}")
    out = values.copy()
    for atom in mol.GetAtoms():
        a = atom.GetIdx()
        if edited[a] or atom.IsInRing():
            continue
        out[a] = sum(values[b.GetIdx()] for b in atom.GetNeighbors() if edited[b.GetIdx()])
    return out


def _forward(model: ScoreModel, sequences: Sequence[Sequence[int]], batch_size: int) -> np.ndarray:
    """``F`` of each id sequence (position space), without gradients, in length-sorted batches.

    ``no_grad``, not ``inference_mode``: fairseq's decoder caches its causal mask (see :mod:`.occlusion`)."""
    values = np.zeros(len(sequences), dtype=np.float64)
    with torch.no_grad():
        for idx in length_batches([len(s) for s in sequences], batch_size):
            batch = make_batch([sequences[i] for i in idx], model.pad, model.device)
            values[idx] = model.score(model.embed(batch.src), batch.src, batch.lengths, batch.prev).double().cpu().numpy()
    return values


def edit_occlusion(model: ScoreModel, molecules: Sequence[Molecule], *,
                   encode: Callable[[str], Sequence[int]], batch_size: int,
                   joint_copies: bool = True, branch_fill: bool = True) -> list[MethodScores]:
    """Edit-occlusion scores (atom index space) for each molecule, in input order (module docstring).

    ``encode``: the attributor's own SMILES -> ids encoder (:func:`.inputs.encode_smiles`), applied
    to the edited molecules; an edited molecule it rejects scores 0 like an atom without an edit
    (and a group of repeated copies it rejects keeps its single scores).  ``joint_copies``: also delete each group
    of repeated terminal heteroatoms at once and share the joint drop (module docstring).
    ``branch_fill``: score each branch atom without an edit by its edited neighbours
    (:func:`fill_branches`).
    """
    edits: list[tuple[int, tuple[int, ...], str]] = []  # (molecule, atoms, edited SMILES): one atom or a group
    parsed = [parse_smiles(mol.smiles) for mol in molecules]
    for m, rd in enumerate(parsed):
        edits += [(m, (a,), s) for a in range(rd.GetNumAtoms()) if (s := remove_atom(rd, a)) is not None]
        if joint_copies:
            edits += [(m, tuple(g), s) for g in repeated_terminal_groups(rd) if (s := remove_atoms(rd, g)) is not None]
    encoded: dict[str, Sequence[int]] = {}
    for smiles in sorted({s for _, _, s in edits}):
        try:
            encoded[smiles] = encode(smiles)
        except BartSmilesError:  # e.g. a token the vocabulary lacks: no score for that atom
            continue
    # each distinct edited molecule runs once, however many atoms give it (symmetric atoms, a CF3's F)
    distinct = sorted(encoded)
    values = _forward(model, [mol.ids for mol in molecules] + [encoded[s] for s in distinct], batch_size)
    outputs, edited = values[: len(molecules)], dict(zip(distinct, values[len(molecules):]))
    kept = [e for e in edits if e[2] in encoded]
    atoms = [np.zeros(mol.n_atoms) for mol in molecules]
    has_edit = [np.zeros(mol.n_atoms, dtype=bool) for mol in molecules]  # atoms with a single edit of their own
    for m, group, smiles in kept:
        if len(group) == 1:
            atoms[m][group[0]] = outputs[m] - edited[smiles]
            has_edit[m][group[0]] = True
    for m, group, smiles in kept:  # after every single drop is known
        if len(group) > 1:
            index = list(group)
            atoms[m][index] += ((outputs[m] - edited[smiles]) - atoms[m][index].sum()) / len(index)
    if branch_fill:
        atoms = [fill_branches(rd, a, e) for rd, a, e in zip(parsed, atoms, has_edit)]
    return [atom_method_scores(mol.alignment, atoms[m], output=outputs[m], baseline_output=outputs[m])
            for m, mol in enumerate(molecules)]
