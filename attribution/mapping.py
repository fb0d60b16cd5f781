"""Token scores -> atom scores, through the tokenizer's exact atom alignment.

The rule (one token at a time; ``alignment`` is :meth:`bartsmiles.core.tokenizer.SmilesTokenizer.align`):

1. **atom token** (``C``, ``[nH+]``, ``Cl``; a SentencePiece piece covering several atoms): its
   score is shared equally among the atoms it stands for (``alignment.atoms[t]``).
2. **structural token** -- a bond (``=``, ``#``, ``/``), a ring-closure digit (opening and
   closing), a branch parenthesis, or an explicit ``[H]`` that RDKit removes: its score is shared
   equally among the atoms it joins (``alignment.joins[t]``: the two bonded atoms, the two ring
   partners, the branch anchor and the first branch atom, the heavy neighbour of the ``[H]``).
3. **everything else** -- a token that stands for no atom and joins none (the ``.`` between
   fragments, an unmatched token) -- and the special tokens ``<s>`` / ``</s>`` go to the
   **remainder**.

Every token's score therefore lands exactly once, and::

    atom_scores.sum() + remainder == token_scores.sum() + special scores

(the completeness the tests check).  The original BARTSmiles spread a token's score over its
characters and matched characters to atoms, which misplaces ring digits, brackets and stereo
marks; this mapping uses the parser's own atom numbering instead (RDKit atom indices of
``Chem.MolFromSmiles(smiles)``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["AtomMapping", "token_atom_matrix", "map_token_scores"]


@dataclass(frozen=True)
class AtomMapping:
    """Result of :func:`map_token_scores`.

    * ``atom_scores`` -- ``(n_atoms,)``, indexed by RDKit atom index.
    * ``remainder`` -- the part of the total that belongs to no atom (specials, ``.``).
    * ``rule`` -- per token: ``"atom"``, ``"join"`` or ``"remainder"`` (how its score was placed).
    """

    atom_scores: np.ndarray
    remainder: float
    rule: list[str]


def token_atom_matrix(alignment, n_atoms: int) -> tuple[np.ndarray, list[str]]:
    """``(n_tokens, n_atoms)`` weights ``W`` with ``atom_scores = token_scores @ W``.

    Each row sums to 1 (the token's score goes to atoms) or to 0 (it goes to the remainder);
    the second value names the rule used per token (see the module docstring).
    """
    if any(m not in (0, -1) for m in getattr(alignment, "molecule", [0])) or ">" in alignment.tokens:
        raise ValueError("reaction SMILES are not supported by the atom mapping (one molecule, '.' salts allowed)")
    n_tokens = len(alignment.tokens)
    weights = np.zeros((n_tokens, n_atoms), dtype=np.float64)
    rules: list[str] = []
    for t in range(n_tokens):
        members = tuple(alignment.atoms[t]) or tuple(alignment.joins[t])
        rule = "atom" if alignment.atoms[t] else ("join" if alignment.joins[t] else "remainder")
        if members:
            bad = [a for a in members if not 0 <= a < n_atoms]
            if bad:
                raise ValueError(f"token {t} ({alignment.tokens[t]!r}) maps to atom(s) {bad} outside 0..{n_atoms - 1}")
            share = 1.0 / len(members)
            for a in members:
                weights[t, a] += share
        rules.append(rule)
    return weights, rules


def map_token_scores(alignment, token_scores: Sequence[float], n_atoms: int,
                     special_scores: Sequence[float] = ()) -> AtomMapping:
    """Atom scores and remainder for ``token_scores`` (one per token of ``alignment``).

    ``special_scores`` (e.g. the ``<s>`` and ``</s>`` scores) are added to the remainder.
    """
    scores = np.asarray(token_scores, dtype=np.float64)
    if scores.shape != (len(alignment.tokens),):
        raise ValueError(f"{scores.shape[0] if scores.ndim else 0} token scores for {len(alignment.tokens)} tokens")
    weights, rules = token_atom_matrix(alignment, n_atoms)
    atom_scores = scores @ weights
    unplaced = scores * (1.0 - weights.sum(axis=1))
    remainder = float(unplaced.sum() + np.sum(np.asarray(special_scores, dtype=np.float64)))
    return AtomMapping(atom_scores=atom_scores, remainder=remainder, rule=rules)
