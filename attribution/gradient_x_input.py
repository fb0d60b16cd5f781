"""Gradient x input at the encoder's input token embeddings: one backward pass per batch.

For the attributed scalar ``F(E)`` (see :mod:`bartsmiles.attribution.integrated_gradients`) the
score of position ``p`` is ``sum_d dF/dX[p, d] * (E[p, d] - B[p, d])`` with the gradient taken at
``X = B + alpha * (E - B)``.  The default baseline (``baselines="zero"``) is ``B = 0`` at the
molecule's tokens.  ``alpha = 1`` is plain gradient x input, the first-order Taylor term of
``F(E) - F(B)``.  ``alpha < 1`` is integrated gradients with a single step at ``alpha`` of the
straight path (``alpha = 0.5``: the midpoint rule): a confident model is often **saturated** at its
input -- the gradient there is tiny and can point the wrong way -- and is not, part of the way
along the path.  The default, :data:`DEFAULT_ALPHA` = 0.5, was chosen by the ground-truth tables
(README, Attribution).  On models fine-tuned with the defaults (10 epochs) even the zero baseline
can be scored as confidently as the input (aromatic halide: median logit 7.0 at the baseline, 7.2
at the input), and most of the output's change happens before 0.6 of the path: 0.75, chosen
before such models were scored, lost to 0.5 on them.  A token baseline (``"pad"``, ``"mask"``,
``"eos"``) gives gradient x (input - baseline) instead.  ``<s>`` and ``</s>`` keep their real embeddings in
``B`` -- so their score is zero -- unless ``replace_specials``.  The scores are *not* additive:
``delta = sum(scores) - (F(E) - F(B))`` reports the gap, it is not checked.  Token scores go to
atoms exactly as for integrated gradients.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .inputs import Molecule, ScoreModel, TokenBatch, baseline_ids, length_batches, make_batch, replaced_positions
from .result import MethodScores

__all__ = ["DEFAULT_ALPHA", "check_alpha", "gradient_x_input"]

#: where on the path from the baseline to the input the gradient is taken by default (module docstring)
DEFAULT_ALPHA = 0.5


def check_alpha(alpha, name: str = "alpha") -> float:
    """``alpha`` as a float in ``(0, 1]``, else :class:`ValueError` naming it ``name``."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {alpha!r}")
    return float(alpha)


def _baseline(model: ScoreModel, batch: TokenBatch, x: torch.Tensor, baseline_id: Optional[int],
              replace_specials: bool) -> torch.Tensor:
    """``(B, L, d)`` baseline embeddings: zero (``baseline_id=None``) or the token's row where replaced."""
    if baseline_id is not None:
        return model.embed(baseline_ids(batch, baseline_id, replace_specials))
    return x * (~replaced_positions(batch, replace_specials)).unsqueeze(-1).to(x.dtype)


def _position_scores(model: ScoreModel, chunk: Sequence[Molecule], baseline_id: Optional[int],
                     replace_specials: bool, alpha: float,
                     outputs: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, L)`` position scores, ``F(E)`` and ``F(B)`` (each ``(B,)``) of one batch; without
    ``outputs``, NaN for ``F(B)`` and, for ``alpha < 1``, ``F(E)``: two forward passes fewer."""
    batch = make_batch([m.ids for m in chunk], model.pad, model.device)
    args = (batch.src, batch.lengths, batch.prev)
    nan = torch.full((len(chunk),), float("nan"), device=model.device)
    with torch.no_grad():
        x = model.embed(batch.src)
        b = _baseline(model, batch, x, baseline_id, replace_specials)
        fb = model.score(b, *args) if outputs else nan
        fx = None if alpha == 1.0 else (model.score(x, *args) if outputs else nan)
    point = (x if alpha == 1.0 else b + alpha * (x - b)).clone().requires_grad_(True)
    with torch.enable_grad():
        fp = model.score(point, *args)
        # rows are independent (padding is masked): the gradient of the sum is each row's own gradient
        (grad,) = torch.autograd.grad(fp.sum(), point)
    return (grad * (x - b)).sum(dim=-1).detach(), (fp.detach() if fx is None else fx), fb


def gradient_x_input(model: ScoreModel, molecules: Sequence[Molecule], *, baseline_id: Optional[int],
                     batch_size: int, replace_specials: bool, alpha: float = DEFAULT_ALPHA,
                     outputs: bool = True) -> list[MethodScores]:
    """Gradient x (input - baseline) per position for each molecule, in input order.

    ``baseline_id``: the baseline token, or ``None`` for a zero baseline.  ``alpha`` in ``(0, 1]``:
    the gradient is taken at ``baseline + alpha * (input - baseline)`` (module docstring; 1: plain
    gradient x input).  ``outputs=False`` skips the forward passes that only report ``F(E)`` and
    ``F(B)`` (``output`` and ``baseline_output`` are then NaN, except ``output`` for ``alpha=1``): for
    a caller that has them already (:mod:`.edit_gradient`).

    Molecules are sorted by length and at most ``batch_size`` of them (one sequence each, and at
    most :data:`~.inputs.TOKEN_BUDGET` padded tokens) go through each forward/backward pass.
    """
    found: dict[int, MethodScores] = {}
    for idx in length_batches([len(m.ids) for m in molecules], batch_size):
        chunk = [molecules[i] for i in idx]
        scores, fx, fb = _position_scores(model, chunk, baseline_id, replace_specials, float(alpha), outputs)
        scores, fx, fb = (t.double().cpu().numpy() for t in (scores, fx, fb))
        for r, (i, mol) in enumerate(zip(idx, chunk)):
            row = scores[r, : len(mol.ids)]
            found[i] = MethodScores(token_scores=row[1:-1].copy(),
                                    special_scores={"<s>": float(row[0]), "</s>": float(row[-1])},
                                    output=float(fx[r]), baseline_output=float(fb[r]))
    return [found[i] for i in range(len(molecules))]
