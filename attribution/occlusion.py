"""Mask occlusion: score each atom by the drop in the output when its token is masked.

For atom ``a`` the occluded input replaces the atom's token(s) -- with ``attached=True`` also the
tokens attached to it (its bonds, branch parentheses, ring-closure digits, a removed ``[H]``:
the tokens whose :attr:`~bartsmiles.core.tokenizer.TokenAlignment.joins` name it) -- by
``<mask>``, the corruption BARTSmiles was pretrained on (its denoising encoder reads ``<mask>``
while the decoder reads the real SMILES).  The replacement happens where the other methods
perturb, at the encoder's input; ``occlude_decoder=True`` masks the decoder's input too, so the
whole model reads the occluded SMILES.  The atom's score is

    score[a] = F(input) - F(input with a's tokens masked)        (atom index space)

so a positive score means the atom raises the attributed quantity.  ``baseline_output`` is
``F`` with every molecule token masked.  Occlusion is not additive (masking two atoms is not the
sum of masking each, and with ``attached=True`` a bond token is masked with both its atoms):
``delta = sum(scores) - (output - baseline_output)`` reports the gap.  In the token table an
atom token carries its atom's score and every other token zero.

All occluded copies of all molecules (plus each original and its fully masked baseline) are
sorted by length and run, without gradients, in forward passes of at most ``batch_size``
sequences and at most :data:`~bartsmiles.attribution.inputs.TOKEN_BUDGET` padded tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .inputs import Molecule, ScoreModel, length_batches, make_batch, pad_sequences
from .mapping import token_atom_matrix
from .result import MethodScores, atom_method_scores

__all__ = ["occlusion_groups", "occluded_ids", "mask_occlusion"]


@dataclass(frozen=True)
class _Copy:
    """One sequence to run: molecule ``molecule`` with token indices ``masked`` replaced.

    ``atom`` is the atom it scores; -1 for the original, -2 for the all-masked baseline.
    """

    molecule: int
    atom: int
    masked: tuple[int, ...]


def occlusion_groups(alignment, n_atoms: int, attached: bool = False) -> list[tuple[int, ...]]:
    """Per atom index: the token indices masked to occlude that atom.

    An atom's own token(s) (``alignment.atoms``), and with ``attached`` every token that joins it
    (``alignment.joins``: bonds, branch parentheses, ring-closure digits, a removed ``[H]``).
    """
    token_atom_matrix(alignment, n_atoms)  # validates the alignment against the molecule
    groups: list[set[int]] = [set() for _ in range(n_atoms)]
    for t in range(len(alignment.tokens)):
        for a in alignment.atoms[t]:
            groups[a].add(t)
        if attached:
            for a in alignment.joins[t]:
                groups[a].add(t)
    return [tuple(sorted(g)) for g in groups]


def _copies(molecules: Sequence[Molecule], attached: bool) -> list[_Copy]:
    """Every sequence to run: per molecule the original, the all-masked baseline and one per atom."""
    out: list[_Copy] = []
    for m, mol in enumerate(molecules):
        out.append(_Copy(m, -1, ()))
        out.append(_Copy(m, -2, tuple(range(mol.n_tokens))))
        out += [_Copy(m, a, g) for a, g in enumerate(occlusion_groups(mol.alignment, mol.n_atoms, attached))]
    return out


def occluded_ids(mol: Molecule, masked: Sequence[int], mask_id: int) -> tuple[int, ...]:
    """``mol.ids`` (position space) with the tokens ``masked`` (token index space) set to ``mask_id``."""
    ids = list(mol.ids)
    for t in masked:
        ids[t + 1] = mask_id
    return tuple(ids)


def _run_copies(model: ScoreModel, molecules: Sequence[Molecule], copies: Sequence[_Copy], *, mask_id: int,
                occlude_decoder: bool, batch_size: int) -> np.ndarray:
    """``F`` of every copy (same order as ``copies``), in no-grad passes of at most ``batch_size``
    sequences and :data:`~.inputs.TOKEN_BUDGET` padded tokens.

    ``no_grad``, not ``inference_mode``: fairseq's decoder caches its causal mask across calls, and a
    mask made in inference mode breaks a later gradient method in the same process."""
    values = np.zeros(len(copies), dtype=np.float64)
    with torch.no_grad():
        for idx in length_batches([len(molecules[c.molecule].ids) for c in copies], batch_size):
            real = [molecules[copies[i].molecule].ids for i in idx]
            occluded = [occluded_ids(molecules[copies[i].molecule], copies[i].masked, mask_id) for i in idx]
            batch = make_batch(real, model.pad, model.device, decoder_sequences=occluded if occlude_decoder else None)
            emb = model.embed(pad_sequences(occluded, model.pad).to(model.device))
            out = model.score(emb, batch.src, batch.lengths, batch.prev)
            values[idx] = out.double().cpu().numpy()
    return values


def mask_occlusion(model: ScoreModel, molecules: Sequence[Molecule], *, mask_id: int, attached: bool,
                   occlude_decoder: bool, batch_size: int) -> list[MethodScores]:
    """Occlusion scores (atom index space) for each molecule, in input order (module docstring)."""
    copies = _copies(molecules, attached)
    values = _run_copies(model, molecules, copies, mask_id=mask_id, occlude_decoder=occlude_decoder,
                         batch_size=batch_size)
    output = {c.molecule: v for c, v in zip(copies, values) if c.atom == -1}
    masked_all = {c.molecule: v for c, v in zip(copies, values) if c.atom == -2}
    atoms: list[np.ndarray] = [np.zeros(mol.n_atoms) for mol in molecules]
    for c, v in zip(copies, values):
        if c.atom >= 0 and c.masked:
            atoms[c.molecule][c.atom] = output[c.molecule] - v
    return [atom_method_scores(mol.alignment, atoms[m], output=output[m], baseline_output=masked_all[m])
            for m, mol in enumerate(molecules)]
