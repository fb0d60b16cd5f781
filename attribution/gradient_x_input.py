"""Gradient x input at the encoder's input token embeddings: one backward pass per batch.

For the attributed scalar ``F(E)`` (see :mod:`bartsmiles.attribution.integrated_gradients`) the
score of position ``p`` is ``sum_d dF/dE[p, d] * (E[p, d] - B[p, d])``.  The default baseline
(``baselines="zero"``) is ``B = 0`` at the molecule's tokens: plain gradient x input, the
first-order Taylor term of ``F(E) - F(B)``.  A token baseline (``"pad"``, ``"mask"``, ``"eos"``)
gives gradient x (input - baseline) instead.  ``<s>`` and ``</s>`` keep their real embeddings in
``B`` -- so their score is zero -- unless ``replace_specials``.  The scores are *not* additive:
``delta = sum(scores) - (F(E) - F(B))`` reports the gap, it is not checked.  Token scores go to
atoms exactly as for integrated gradients.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .inputs import Molecule, ScoreModel, TokenBatch, baseline_ids, length_batches, make_batch, replaced_positions
from .result import MethodScores

__all__ = ["gradient_x_input"]


def _baseline(model: ScoreModel, batch: TokenBatch, x: torch.Tensor, baseline_id: Optional[int],
              replace_specials: bool) -> torch.Tensor:
    """``(B, L, d)`` baseline embeddings: zero (``baseline_id=None``) or the token's row where replaced."""
    if baseline_id is not None:
        return model.embed(baseline_ids(batch, baseline_id, replace_specials))
    return x * (~replaced_positions(batch, replace_specials)).unsqueeze(-1).to(x.dtype)


def _position_scores(model: ScoreModel, chunk: Sequence[Molecule], baseline_id: Optional[int],
                     replace_specials: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, L)`` position scores, ``F(E)`` and ``F(B)`` (each ``(B,)``) of one batch."""
    batch = make_batch([m.ids for m in chunk], model.pad, model.device)
    args = (batch.src, batch.lengths, batch.prev)
    with torch.no_grad():
        x = model.embed(batch.src)
        b = _baseline(model, batch, x, baseline_id, replace_specials)
        fb = model.score(b, *args)
    emb = x.clone().requires_grad_(True)
    with torch.enable_grad():
        fx = model.score(emb, *args)
        # rows are independent (padding is masked): the gradient of the sum is each row's own gradient
        (grad,) = torch.autograd.grad(fx.sum(), emb)
    return (grad * (x - b)).sum(dim=-1).detach(), fx.detach(), fb


def gradient_x_input(model: ScoreModel, molecules: Sequence[Molecule], *, baseline_id: Optional[int],
                     batch_size: int, replace_specials: bool) -> list[MethodScores]:
    """Gradient x (input - baseline) per position for each molecule, in input order.

    ``baseline_id``: the baseline token, or ``None`` for a zero baseline (plain gradient x input).

    Molecules are sorted by length and at most ``batch_size`` of them (one sequence each, and at
    most :data:`~.inputs.TOKEN_BUDGET` padded tokens) go through each forward/backward pass.
    """
    found: dict[int, MethodScores] = {}
    for idx in length_batches([len(m.ids) for m in molecules], batch_size):
        chunk = [molecules[i] for i in idx]
        scores, fx, fb = _position_scores(model, chunk, baseline_id, replace_specials)
        scores, fx, fb = (t.double().cpu().numpy() for t in (scores, fx, fb))
        for r, (i, mol) in enumerate(zip(idx, chunk)):
            row = scores[r, : len(mol.ids)]
            found[i] = MethodScores(token_scores=row[1:-1].copy(),
                                    special_scores={"<s>": float(row[0]), "</s>": float(row[-1])},
                                    output=float(fx[r]), baseline_output=float(fb[r]))
    return [found[i] for i in range(len(molecules))]
