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

so a positive score means the atom raises the attributed quantity.  The edited molecules are
read as the model reads any input (canonical SMILES for a canonical model), so their atom
numbering never matters.  There is no single baseline molecule: ``baseline_output`` is set to
``output``, so ``delta`` is the sum of the scores.  Not additive.  In the token table an atom token
carries its atom's score and every other token zero.

All originals and edited copies of all molecules are sorted by length and run, without
gradients, in forward passes of at most ``batch_size`` sequences and at most
:data:`~bartsmiles.attribution.inputs.TOKEN_BUDGET` padded tokens.  A molecule of ``n`` atoms
costs up to ``n + 1`` forward passes of one sequence, like mask occlusion.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from rdkit import Chem

from bartsmiles.core.chem import parse_smiles, quiet_rdkit
from bartsmiles.errors import BartSmilesError

from .inputs import Molecule, ScoreModel, length_batches, make_batch
from .result import MethodScores, atom_method_scores

__all__ = ["remove_atom", "edit_occlusion"]


def _sanitized(rw: Chem.RWMol) -> Optional[str]:
    """Canonical SMILES of ``rw`` after sanitization, or ``None`` when RDKit rejects it."""
    mol = rw.GetMol()
    try:
        with quiet_rdkit():
            Chem.SanitizeMol(mol)
            return Chem.MolToSmiles(mol)
    except Exception:  # noqa: BLE001 - RDKit raises several types for an impossible edit
        return None


def remove_atom(mol: Chem.Mol, index: int) -> Optional[str]:
    """SMILES of ``mol`` with atom ``index`` (RDKit atom index) edited out, or ``None`` (module docstring).

    Raises :class:`TypeError` for a non-``Mol`` and :class:`IndexError` for an atom ``mol`` lacks.
    """
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"mol must be an RDKit Mol, got {type(mol).__name__}")
    if not 0 <= int(index) < mol.GetNumAtoms():
        raise IndexError(f"atom {index} is out of range for a molecule of {mol.GetNumAtoms()} atoms")
    atom = mol.GetAtomWithIdx(int(index))
    neighbours = [n.GetIdx() for n in atom.GetNeighbors()]
    rw = Chem.RWMol(mol)
    if len(neighbours) <= 1:
        if mol.GetNumAtoms() == 1:
            return None  # nothing would be left
        rw.RemoveAtom(atom.GetIdx())
        return _sanitized(rw)
    if atom.GetAtomicNum() != 6:
        edited = rw.GetAtomWithIdx(atom.GetIdx())
        edited.SetAtomicNum(6)
        edited.SetFormalCharge(0)
        edited.SetNumExplicitHs(0)
        edited.SetNoImplicit(False)
        return _sanitized(rw)
    if len(neighbours) == 2 and not atom.IsInRing():  # outside a ring its two neighbours are not bonded
        rw.AddBond(neighbours[0], neighbours[1], Chem.BondType.SINGLE)
        rw.RemoveAtom(atom.GetIdx())
        return _sanitized(rw)
    return None


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
                   prepare: Callable[[list[str]], list[Molecule]], batch_size: int) -> list[MethodScores]:
    """Edit-occlusion scores (atom index space) for each molecule, in input order (module docstring).

    ``prepare``: the attributor's own SMILES -> :class:`Molecule` encoder, applied to the edited
    molecules; an edited molecule it rejects scores 0 like an atom without an edit.
    """
    edits: list[tuple[int, int, str]] = []  # (molecule, atom, edited SMILES)
    for m, mol in enumerate(molecules):
        rd = parse_smiles(mol.smiles)
        edits += [(m, a, s) for a in range(mol.n_atoms) if (s := remove_atom(rd, a)) is not None]
    encoded: dict[str, Molecule] = {}
    for smiles in sorted({s for _, _, s in edits}):
        try:
            encoded[smiles] = prepare([smiles])[0]
        except BartSmilesError:  # e.g. a token the vocabulary lacks: no score for that atom
            continue
    kept = [e for e in edits if e[2] in encoded]
    values = _forward(model, [mol.ids for mol in molecules] + [encoded[s].ids for _, _, s in kept], batch_size)
    outputs, edited = values[: len(molecules)], values[len(molecules):]
    atoms = [np.zeros(mol.n_atoms) for mol in molecules]
    for (m, a, _), v in zip(kept, edited):
        atoms[m][a] = outputs[m] - v
    return [atom_method_scores(mol.alignment, atoms[m], output=outputs[m], baseline_output=outputs[m])
            for m, mol in enumerate(molecules)]
