"""Edit occlusion plus the gradient: each atom's drop when it is edited out, plus its gradient x input.

Edit occlusion (:mod:`.edit_occlusion`) asks "what if this atom were not there?", one edited
molecule at a time.  It is blind where it has no edit -- a ring carbon, a branch point such as the
carbonyl carbon of an amide, ester or urea scores 0 -- and where another copy of a group carries
the signal alone (two amides: deleting one leaves the other).  The gradient (:mod:`.gradient_x_input`,
taken at ``alpha`` of the way from a zero baseline) sees every token at once, but a confident
decoder head saturates it: a halogen or a nitrile the model relies on can get almost nothing.  This
method adds the two, in the same units (the attributed output, a logit by default)::

    score[a] = edit_drop[a] + gxi[a]          (atom index space; gxi mapped from tokens to atoms)

where ``edit_drop`` is edit occlusion's atom score: with ``branch_fill`` (the default) a branch atom
outside rings, which has no edit, carries the sum of its edited neighbours' drops
(:func:`.edit_occlusion.fill_branches`).

The token table is the sum of the two token tables (an atom token carries its edit drop, every
token its gradient score).  Not additive, like both parts.  Cost: edit occlusion's forward passes
plus one forward and backward pass per batch of molecules for the gradient (the outputs come from
edit occlusion, so the gradient part skips its own two output passes).  Chosen by the ground-truth
tables (README, Attribution).  No model state of its own: the attributor passes both score models.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .edit_occlusion import edit_occlusion
from .gradient_x_input import gradient_x_input
from .inputs import Molecule, ScoreModel
from .mapping import map_token_scores
from .result import MethodScores

__all__ = ["edit_gradient", "add_scores"]


def add_scores(mol: Molecule, edits: MethodScores, grads: MethodScores) -> MethodScores:
    """One molecule's edit-occlusion scores plus its gradient scores (token and atom index spaces);
    the outputs are edit occlusion's (``baseline_output == output``: there is no baseline molecule)."""
    if edits.atom_scores is None:
        raise ValueError("edit occlusion scores carry atom scores; got token scores only")
    specials = [float(v) for v in grads.special_scores.values()]
    mapped = map_token_scores(mol.alignment, grads.token_scores, mol.n_atoms, special_scores=specials)
    return MethodScores(token_scores=np.asarray(edits.token_scores) + np.asarray(grads.token_scores),
                        special_scores=dict(grads.special_scores), output=edits.output,
                        baseline_output=edits.baseline_output,
                        atom_scores=np.asarray(edits.atom_scores, dtype=np.float64) + mapped.atom_scores)


def edit_gradient(edit_model: ScoreModel, gradient_model: ScoreModel, molecules: Sequence[Molecule], *,
                  encode: Callable[[str], tuple[int, ...]], batch_size: int, gradient_batch_size: int,
                  joint_copies: bool = True, branch_fill: bool = True, alpha: float,
                  replace_specials: bool = False) -> list[MethodScores]:
    """Edit occlusion (``edit_model``, no gradients; ``joint_copies`` and ``branch_fill`` as there)
    plus gradient x input from a zero baseline at ``alpha`` (``gradient_model``) for each molecule,
    in input order (module docstring).
    ``batch_size``: sequences per edit-occlusion pass; ``gradient_batch_size``: molecules per
    gradient pass."""
    edits = edit_occlusion(edit_model, molecules, encode=encode, batch_size=batch_size, joint_copies=joint_copies,
                           branch_fill=branch_fill)
    grads = gradient_x_input(gradient_model, molecules, baseline_id=None, batch_size=gradient_batch_size,
                             replace_specials=replace_specials, alpha=alpha, outputs=False)
    return [add_scores(mol, e, g) for mol, e, g in zip(molecules, edits, grads)]
