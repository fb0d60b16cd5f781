"""What an attribution returns: the :class:`Attribution` result of one quantity of one molecule.

Its errors live with every other error in :mod:`bartsmiles.errors`.  No torch import.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bartsmiles.core.chem import parse_smiles

from .substructures import substructure_table

__all__ = ["Attribution"]


@dataclass
class Attribution:
    """The attribution of one quantity of one molecule.

    * ``tokens`` / ``token_scores`` -- the tokenizer's tokens and their scores (specials excluded);
    * ``special_scores`` -- ``{"<s>": .., "</s>": ..}``;
    * ``atom_scores`` -- per RDKit atom (``Chem.MolFromSmiles(smiles)`` numbering);
      ``remainder`` -- the specials plus tokens with no atom (see :mod:`.mapping`);
    * ``output`` = F(input), ``baseline_output`` = F(baseline), ``delta`` = Captum's convergence
      delta, so ``total == output - baseline_output + delta`` and
      ``atom_scores.sum() + remainder == total``.
    """

    smiles: str
    target: int
    target_name: str
    quantity: str
    tokens: list
    token_scores: np.ndarray
    special_scores: dict
    atom_scores: np.ndarray
    remainder: float
    output: float
    baseline_output: float
    delta: float
    converged: bool
    baseline: str
    n_steps: int
    method: str
    alignment: Any = field(default=None, repr=False)
    token_rule: list = field(default_factory=list, repr=False)

    @property
    def total(self) -> float:
        """Sum of all position scores (tokens and specials)."""
        return float(np.sum(self.token_scores) + sum(self.special_scores.values()))

    @property
    def mol(self):
        return parse_smiles(self.smiles)

    def token_frame(self):
        rows = [{"position": 0, "token": "<s>", "score": self.special_scores["<s>"], "atoms": (), "rule": "remainder"}]
        for t, (tok, s) in enumerate(zip(self.tokens, self.token_scores)):
            atoms = tuple(self.alignment.atoms[t]) or tuple(self.alignment.joins[t])
            rows.append({"position": t + 1, "token": tok, "score": float(s), "atoms": atoms,
                         "rule": self.token_rule[t] if self.token_rule else ""})
        rows.append({"position": len(self.tokens) + 1, "token": "</s>", "score": self.special_scores["</s>"],
                     "atoms": (), "rule": "remainder"})
        return pd.DataFrame(rows)

    def atom_frame(self):
        mol = self.mol
        return pd.DataFrame({"atom": np.arange(mol.GetNumAtoms()),
                             "symbol": [a.GetSymbol() for a in mol.GetAtoms()],
                             "score": self.atom_scores})

    def substructures(self, **kwargs):
        """:func:`bartsmiles.attribution.substructures.substructure_table` of this molecule."""

        return substructure_table(self.mol, self.atom_scores, **kwargs)

    def to_dict(self) -> dict:
        return {"smiles": self.smiles, "target": self.target, "target_name": self.target_name,
                "quantity": self.quantity, "output": self.output, "baseline_output": self.baseline_output,
                "delta": self.delta, "converged": self.converged, "total": self.total,
                "baseline": self.baseline, "n_steps": self.n_steps, "method": self.method,
                "tokens": list(self.tokens), "token_scores": [float(x) for x in self.token_scores],
                "special_scores": {k: float(v) for k, v in self.special_scores.items()},
                "atom_scores": [float(x) for x in self.atom_scores], "remainder": self.remainder}
