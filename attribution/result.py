"""What an attribution returns: the :class:`Attribution` result of one quantity of one molecule.

:class:`MethodScores` is what one attribution method (integrated gradients, mask occlusion,
gradient x input, Shapley sampling, edit occlusion) computes for one molecule before the atom mapping; the
attributor turns it into an :class:`Attribution`, the one result type every method returns.

Its errors live with every other error in :mod:`bartsmiles.errors`.  No torch import.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from bartsmiles.core.chem import parse_smiles

from .substructures import substructure_table

__all__ = ["Attribution", "MethodScores", "atom_method_scores", "mean_scores"]


@dataclass
class MethodScores:
    """One molecule's scores from one attribution method, before they are mapped to atoms.

    * ``token_scores`` -- ``(n_tokens,)``, **token index** space (specials excluded);
    * ``special_scores`` -- ``{"<s>": .., "</s>": ..}``;
    * ``output`` = F(input), ``baseline_output`` = F(baseline) (every molecule token replaced);
    * ``delta`` -- the method's own completeness error (Captum's for integrated gradients);
      ``None``: the attributor computes ``sum(scores) - (output - baseline_output)``;
    * ``atom_scores`` -- ``(n_atoms,)``, **atom index** space, when the method scores atoms
      itself (occlusion, Shapley over atom groups); ``None``: mapped from ``token_scores``
      through :func:`bartsmiles.attribution.mapping.map_token_scores`.
    """

    token_scores: np.ndarray
    special_scores: dict
    output: float
    baseline_output: float
    delta: Optional[float] = None
    atom_scores: Optional[np.ndarray] = None


def atom_method_scores(alignment, atom_scores: np.ndarray, *, output: float, baseline_output: float) -> MethodScores:
    """:class:`MethodScores` of a method that scores atoms itself (the occlusions): ``atom_scores``
    (atom index space) as given, and in the token table (token index space) each token of exactly
    one atom carries that atom's score, every other token and both specials zero."""
    tokens = np.zeros(len(alignment.tokens))
    for t, members in enumerate(alignment.atoms):
        if len(members) == 1:
            tokens[t] = atom_scores[members[0]]
    return MethodScores(token_scores=tokens, special_scores={"<s>": 0.0, "</s>": 0.0}, output=float(output),
                        baseline_output=float(baseline_output), atom_scores=np.asarray(atom_scores, dtype=np.float64))


def mean_scores(runs: Sequence[MethodScores]) -> MethodScores:
    """One molecule's scores from several models of an ensemble (one method, the same molecule),
    averaged field by field: token, special and atom scores, outputs and ``delta``.

    Every method here is linear in the attributed function, so this is exactly the attribution of
    the members' mean output: an edit's drop, a gradient, a path integral and a Shapley value (the
    same permutations) of a mean are the mean of the members' (each member's input embeddings are
    its own input; the members' functions are separate, so the joint path or mask of the mean is
    each member's own).  Completeness carries over: the mean of sums is the sum of means."""
    if not runs:
        raise ValueError("mean_scores needs the scores of at least one model")
    n = len(runs)
    atoms = [r.atom_scores for r in runs]
    deltas = [r.delta for r in runs]
    if any(a is None for a in atoms) != all(a is None for a in atoms) or \
            any(d is None for d in deltas) != all(d is None for d in deltas):
        raise ValueError("mean_scores: the runs come from different methods (atom scores or delta missing in some)")
    return MethodScores(
        token_scores=np.mean([np.asarray(r.token_scores, dtype=np.float64) for r in runs], axis=0),
        special_scores={k: float(np.mean([r.special_scores[k] for r in runs])) for k in runs[0].special_scores},
        output=float(np.mean([r.output for r in runs])),
        baseline_output=float(np.mean([r.baseline_output for r in runs])),
        delta=None if deltas[0] is None else float(sum(deltas) / n),
        atom_scores=None if atoms[0] is None else np.mean([np.asarray(a, dtype=np.float64) for a in atoms], axis=0))


@dataclass
class Attribution:
    """The attribution of one quantity of one molecule.

    * ``tokens`` / ``token_scores`` -- the tokenizer's tokens and their scores (specials excluded);
    * ``special_scores`` -- ``{"<s>": .., "</s>": ..}``;
    * ``atom_scores`` -- per RDKit atom (``Chem.MolFromSmiles(smiles)`` numbering);
      ``remainder`` -- the specials plus tokens with no atom (see :mod:`.mapping`);
    * ``environment_scores`` -- per RDKit atom, its score plus the mean score of the atoms 1 to
      ``environment_radius`` bonds away, weighted ``1/d`` (:mod:`.environment`; equal to
      ``atom_scores`` for radius 0).  What the drawings show; not additive, so substructure sums
      and the completeness identity below use ``atom_scores``;
    * ``output`` = F(input), ``baseline_output`` = F(baseline), ``delta`` = the completeness
      error (Captum's convergence delta for integrated gradients), so
      ``total == output - baseline_output + delta`` and ``atom_scores.sum() + remainder == total``;
    * ``attribution_method`` -- ``"ig"``, ``"mask_occlusion"``, ``"edit_occlusion"``, ``"gradient_x_input"`` or
      ``"shapley"``; ``method`` is its variant (Captum's integration rule for IG, ``"atom"`` /
      ``"atom+attached"`` for occlusion, ``"sampling"`` / ``"ablation"`` for Shapley) and
      ``n_steps`` its number of evaluations per feature (IG steps, Shapley permutations, else 1);
    * ``converged`` -- for the additive methods (IG, Shapley sampling) whether ``|delta|`` is
      within the tolerance; ``None`` for the others, whose scores need not add up to
      ``output - baseline_output`` (``delta`` then reports the gap).
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
    converged: Optional[bool]
    baseline: str
    n_steps: int
    method: str
    alignment: Any = field(default=None, repr=False)
    token_rule: list = field(default_factory=list, repr=False)
    attribution_method: str = "ig"
    environment_scores: Optional[np.ndarray] = None
    environment_radius: int = 0

    def __post_init__(self):
        if self.environment_scores is None:  # radius 0: the atom scores themselves
            self.environment_scores = np.asarray(self.atom_scores, dtype=np.float64)

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
                             "score": self.atom_scores, "environment_score": self.environment_scores})

    def substructures(self, **kwargs):
        """:func:`bartsmiles.attribution.substructures.substructure_table` of this molecule."""

        return substructure_table(self.mol, self.atom_scores, **kwargs)

    @classmethod
    def from_dict(cls, record: dict, alignment) -> "Attribution":
        """The attribution :meth:`to_dict` wrote, given the molecule's token alignment (which it
        does not store: :func:`bartsmiles.attribution.inputs.prepare_molecules` of ``record["smiles"]``
        gives it back) and the rules of ``record["token_rule"]`` where present."""
        return cls(smiles=record["smiles"], target=int(record["target"]), target_name=record["target_name"],
                   quantity=record["quantity"], tokens=list(record["tokens"]),
                   token_scores=np.asarray(record["token_scores"], dtype=np.float64),
                   special_scores={k: float(v) for k, v in record["special_scores"].items()},
                   atom_scores=np.asarray(record["atom_scores"], dtype=np.float64), remainder=float(record["remainder"]),
                   output=float(record["output"]), baseline_output=float(record["baseline_output"]),
                   delta=float(record["delta"]), converged=record["converged"], baseline=record["baseline"],
                   n_steps=int(record["n_steps"]), method=record["method"], alignment=alignment,
                   token_rule=list(record.get("token_rule", [])), attribution_method=record["attribution_method"],
                   environment_scores=np.asarray(record["environment_scores"], dtype=np.float64),
                   environment_radius=int(record["environment_radius"]))

    def to_dict(self) -> dict:
        return {"smiles": self.smiles, "attribution_method": self.attribution_method, "target": self.target,
                "target_name": self.target_name, "quantity": self.quantity, "output": self.output,
                "baseline_output": self.baseline_output, "delta": self.delta, "converged": self.converged, "total": self.total,
                "baseline": self.baseline, "n_steps": self.n_steps, "method": self.method,
                "tokens": list(self.tokens), "token_scores": [float(x) for x in self.token_scores],
                "special_scores": {k: float(v) for k, v in self.special_scores.items()},
                "atom_scores": [float(x) for x in self.atom_scores], "remainder": self.remainder,
                "environment_radius": self.environment_radius,
                "environment_scores": [float(x) for x in self.environment_scores],
                "token_rule": list(self.token_rule)}
