"""Integrated gradients for BARTSmiles, at the encoder's input token embeddings.

What is attributed
------------------
For a SMILES the model reads ``src = [<s>, t_1 .. t_n, </s>]``.  Let ``E`` be the rows of the
(shared) token-embedding matrix for ``src`` -- the tensor fairseq's encoder would look up itself.
We pass ``E`` to the encoder through its ``token_embeddings=`` argument and define

    F(E) = head_target( decoder(prev_output_tokens, encoder(src, token_embeddings=E)) )

where the **decoder input embeddings are held at their real values** (the decoder looks up
``prev_output_tokens`` itself), and positions, padding mask and the head's ``</s>`` read-out come
from the real ``src``.  ``F(E_real)`` is exactly the model's output (the head's logit for
``output="logit"``, the default; ``output="prediction"`` attributes the probability or the
value in original units instead).  The embedding matrix is shared by encoder, decoder and output
projection, so a hook on ``embed_tokens`` would see every use; this attributes only the
encoder's use.  (:class:`bartsmiles.attribution.attributor.Attributor` builds ``F``; the other
methods -- mask occlusion, gradient x input, Shapley sampling -- perturb the same input.)

Integrated gradients (Captum's :class:`~captum.attr.IntegratedGradients`) integrate the gradient
of ``F`` along the straight line from a baseline ``B`` to ``E``.  The baseline replaces every
molecule token's embedding by that of one token: ``"pad"`` (default; the padding row, zero in a
fairseq model), ``"mask"`` (``<mask>``) or ``"eos"`` (``</s>``, the original BARTSmiles
choice).  ``<s>`` and ``</s>`` keep their real embeddings unless ``replace_specials=True`` --
then their attribution is exactly zero -- and are reported apart (``special_scores``) either way.
Padding positions of a batch are identical in input and baseline and get exactly zero.

Summing the attribution over the embedding dimension gives one score per position;
Captum's convergence delta is ``delta = sum(scores) - (F(E) - F(B))`` (IG's completeness
error), returned per molecule and checked against ``tolerance * max(|F(E) - F(B)|, 1e-3)``:
above it :class:`ConvergenceWarning` is issued (``on_delta="warn"``) or
:class:`ConvergenceError` raised (``"raise"``).  More steps (``n_steps``) shrink it.

**SmoothGrad** (``nt_samples > 0``; Captum's :class:`~captum.attr.NoiseTunnel`): the attribution
is the mean of integrated gradients at ``nt_samples`` noisy copies of ``E`` (Gaussian noise of
standard deviation ``nt_stdev`` times the range of the batch's input embeddings, the SmoothGrad
paper's "noise level"), towards the same baseline.  Each copy is complete for its own noisy
input, not for ``E``, so the mean is not additive: ``delta`` reports the gap.

Token scores return to atoms through :mod:`bartsmiles.attribution.mapping` and to substructures
through :mod:`bartsmiles.attribution.substructures`.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from captum.attr import IntegratedGradients, NoiseTunnel

from .inputs import Molecule, ScoreModel, baseline_ids, make_batch
from .result import MethodScores

__all__ = ["IG_TOKEN_BUDGET", "integrated_gradients"]

#: with ``internal_batch_size=None``, each forward/backward pass of the integration handles about
#: this many tokens (rows x padded length); 800 rows of 100 tokens at once took 18 GB on CPU
IG_TOKEN_BUDGET = 8192


def integrated_gradients(model: ScoreModel, molecules: Sequence[Molecule], *, baseline_id: int, n_steps: int,
                         method: str, internal_batch_size: Optional[int], batch_size: int,
                         replace_specials: bool, nt_samples: int = 0, nt_stdev: float = 0.1,
                         seed: int = 0) -> list[MethodScores]:
    """Integrated gradients of ``model.score`` for each molecule, in input order.

    ``batch_size`` molecules are integrated together (input order); ``internal_batch_size`` rows
    per forward/backward pass (``None``: about :data:`IG_TOKEN_BUDGET` tokens per pass).  Per
    molecule: token scores (token index space) = the attribution summed over the embedding
    dimension at positions ``1 .. n_tokens``; specials at positions 0 and ``n_tokens + 1``.
    ``nt_samples > 0``: SmoothGrad over that many noisy copies (module docstring), the noise drawn
    from a generator seeded with ``seed`` per batch, so results repeat.
    """
    ig = IntegratedGradients(model.score)
    step = max(1, int(batch_size))
    out: list[MethodScores] = []
    for start in range(0, len(molecules), step):
        chunk = molecules[start:start + step]
        batch = make_batch([m.ids for m in chunk], model.pad, model.device)
        with torch.no_grad():
            x = model.embed(batch.src).detach()
            b = model.embed(baseline_ids(batch, baseline_id, replace_specials)).detach()
            args = (batch.src, batch.lengths, batch.prev)
            fx, fb = model.score(x, *args), model.score(b, *args)
        rows = internal_batch_size
        if rows is None:  # bound memory: Captum would otherwise run len(chunk) * n_steps rows at once
            rows = max(len(chunk), IG_TOKEN_BUDGET // max(1, int(batch.src.shape[1])))
        if nt_samples > 0:
            # Captum draws the noise with torch's global generator: seed it, and restore its state after
            state = torch.random.get_rng_state()
            torch.manual_seed(int(seed) + start)
            try:
                stdev = float(nt_stdev) * float(x.max() - x.min())
                attr = NoiseTunnel(ig).attribute(x, nt_type="smoothgrad", nt_samples=int(nt_samples), stdevs=stdev,
                                                 baselines=b, additional_forward_args=args, n_steps=int(n_steps),
                                                 method=method, internal_batch_size=rows)
            finally:
                torch.random.set_rng_state(state)
            per_position = attr.sum(dim=-1).detach().double().cpu().numpy()
            fx, fb = fx.double().cpu().numpy(), fb.double().cpu().numpy()
            delta = per_position.sum(axis=1) - (fx - fb)  # padding positions score exactly zero
        else:
            attr, delta = ig.attribute(x, baselines=b, additional_forward_args=args, n_steps=int(n_steps),
                                       method=method, internal_batch_size=rows, return_convergence_delta=True)
            per_position = attr.sum(dim=-1).detach().double().cpu().numpy()
            delta = delta.detach().double().cpu().numpy().reshape(-1)
            fx, fb = fx.double().cpu().numpy(), fb.double().cpu().numpy()
        for r, mol in enumerate(chunk):
            scores = per_position[r, : len(mol.ids)]
            out.append(MethodScores(token_scores=scores[1:-1].copy(),
                                    special_scores={"<s>": float(scores[0]), "</s>": float(scores[-1])},
                                    output=float(fx[r]), baseline_output=float(fb[r]), delta=float(delta[r])))
    return out
