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
encoder's use.

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

Token scores return to atoms through :mod:`bartsmiles.attribution.mapping` and to substructures
through :mod:`bartsmiles.attribution.substructures`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from captum.attr import IntegratedGradients

from bartsmiles.core.chem import parse_smiles
from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.errors import (
    AttributionError,
    CheckpointError,
    ConvergenceError,
    ConvergenceWarning,
    InvalidSmilesError,
    SmilesTooLongError,
    TargetError,
)
from bartsmiles.model.predictor import PropertyPredictor
from bartsmiles.model.pretrained import load_pretrained
from bartsmiles.model.resolve import resolve_checkpoint
from bartsmiles.tasks.property_criterion import to_predictions

from .mapping import map_token_scores
from .result import Attribution

__all__ = ["Attributor", "NeuronAttributor", "BASELINES"]

BASELINES = ("pad", "mask", "eos")
SPECIALS = ("<s>", "</s>")
#: with ``internal_batch_size=None``, each forward/backward pass of the integration handles about
#: this many tokens (rows x padded length); 800 rows of 100 tokens at once took 18 GB on CPU
IG_TOKEN_BUDGET = 8192


# ------------------------------------------------------------------------------------ loading
@dataclass
class _Loaded:
    model: Any
    vocab: Any
    tokenizer: Any
    meta: dict
    max_positions: int


def _load(model_or_checkpoint, *, need_head: bool) -> _Loaded:
    """Model, vocabulary, tokenizer and metadata from a checkpoint path or a loaded object."""

    obj = model_or_checkpoint
    if hasattr(obj, "_get_predictor"):  # a fitted BartSmilesClassifier / BartSmilesRegressor
        obj = obj._get_predictor()
    if isinstance(obj, (str, os.PathLike)):
        path = resolve_checkpoint(obj)

        try:
            obj = PropertyPredictor(path)
        except CheckpointError:
            if need_head:
                raise AttributionError(f"{path} is not a fine-tuned property checkpoint (no prediction head): "
                                       f"use NeuronAttributor for a pretrained model") from None
            obj = load_pretrained(path)
    if hasattr(obj, "task") and hasattr(obj, "meta") and hasattr(obj, "model"):  # PropertyPredictor
        meta = dict(obj.meta)
        if meta.get("tokenizer", "regex") != "regex":
            raise AttributionError(f"tokenizer {meta.get('tokenizer')!r} is not supported for property checkpoints")
        model, vocab, tokenizer = obj.model, obj.task.vocab, SmilesTokenizer()
        limit = int(meta.get("max_positions") or model.encoder.max_positions())
    elif hasattr(obj, "encode_ids") and hasattr(obj, "vocab"):  # bartsmiles.model.pretrained.PretrainedModel
        if need_head:
            raise AttributionError("a pretrained model has no prediction head: use NeuronAttributor, or fine-tune it")
        model, vocab, tokenizer, meta = obj.model, obj.vocab, obj.tokenizer, dict(obj.metadata or {})
        limit = int(model.encoder.max_positions())
    else:
        raise TypeError(f"cannot attribute a {type(obj).__name__}: give a checkpoint path, a PropertyPredictor, "
                        f"a fitted BartSmilesClassifier/Regressor or (NeuronAttributor) a PretrainedModel")
    limit = min(limit, int(model.encoder.max_positions()))
    model.eval()
    return _Loaded(model=model, vocab=vocab, tokenizer=tokenizer, meta=meta, max_positions=limit)


# ------------------------------------------------------------------------------------ core
class _IGBase:
    """Shared machinery: encoding and checking inputs, baselines, Captum IG, mapping to atoms."""

    def __init__(self, model_or_checkpoint, *, need_head: bool):
        self._loaded = _load(model_or_checkpoint, need_head=need_head)
        self.model = self._loaded.model
        self.vocab = self._loaded.vocab
        self.tokenizer = self._loaded.tokenizer
        self.meta = self._loaded.meta
        self.max_positions = self._loaded.max_positions
        self.device = next(self.model.parameters()).device

    # inputs ---------------------------------------------------------------------------
    def _prepare(self, smiles) -> list[tuple[str, Any, list[int], int]]:
        if isinstance(smiles, str):
            smiles = [smiles]
        out = []
        for i, s in enumerate(smiles):
            if not isinstance(s, str) or not s.strip():
                raise InvalidSmilesError(s, index=i, reason="empty or not a string",
                                         message=f"SMILES at index {i} is empty or not a string: {s!r}")
            s = s.strip()
            if ">" in s:
                raise InvalidSmilesError(s, index=i, reason="a reaction, not a molecule",
                                         message=f"SMILES at index {i} is a reaction ({s!r}): attribute one molecule")
            try:
                mol = parse_smiles(s)
                alignment = self.tokenizer.align(s)
            except ValueError as exc:  # InvalidSmilesError and TokenizationError are ValueErrors
                raise InvalidSmilesError(s, index=i, reason=str(exc),
                                         message=f"invalid SMILES at index {i}: {s!r} ({exc})") from None
            length = len(alignment.tokens) + 2
            if length > self.max_positions:
                raise SmilesTooLongError(s, index=i, length=length, limit=self.max_positions,
                                         hint="attribution does not truncate")
            ids = self.vocab.encode(alignment.tokens)
            out.append((s, alignment, ids, mol.GetNumAtoms()))
        if not out:
            raise AttributionError("no SMILES given")
        return out

    def _baseline_id(self, baselines: str) -> int:
        if baselines not in BASELINES:
            raise AttributionError(f"baselines must be one of {BASELINES}, got {baselines!r}")
        if baselines == "pad":
            return int(self.vocab.pad)
        if baselines == "eos":
            return int(self.vocab.eos)
        if "<mask>" not in self.vocab:
            raise AttributionError("this model's vocabulary has no <mask>: use baselines='pad' or 'eos'")
        return int(self.vocab.index("<mask>"))

    def _batch(self, items, baseline_id: int, replace_specials: bool):
        pad = int(self.vocab.pad)
        lengths = torch.tensor([len(ids) for _, _, ids, _ in items], dtype=torch.long)
        src = torch.full((len(items), int(lengths.max())), pad, dtype=torch.long)
        base_ids = src.clone()
        for r, (_, _, ids, _) in enumerate(items):
            src[r, : len(ids)] = torch.tensor(ids)
            base_ids[r, : len(ids)] = baseline_id
            if not replace_specials:
                base_ids[r, 0], base_ids[r, len(ids) - 1] = ids[0], ids[-1]
        prev = src.clone()  # the decoder input: the source rolled right by one, as the task collates it
        for r, (_, _, ids, _) in enumerate(items):
            prev[r, : len(ids)] = torch.roll(torch.tensor(ids), 1)
        dev = self.device
        embed = self.model.encoder.embed_tokens
        with torch.no_grad():
            x, b = embed(src.to(dev)).detach(), embed(base_ids.to(dev)).detach()
        return src.to(dev), lengths.to(dev), prev.to(dev), x, b

    # IG ---------------------------------------------------------------------------------
    def _forward(self, emb, src, lengths, prev):  # pragma: no cover - overridden
        raise NotImplementedError

    def _run(self, smiles, *, target, target_name: str, quantity: str, baselines: str, n_steps: int,
             method: str, internal_batch_size: Optional[int], batch_size: int, replace_specials: bool,
             tolerance: float, on_delta: str, return_convergence_delta: bool):

        if on_delta not in ("warn", "raise", "ignore"):
            raise AttributionError(f"on_delta must be 'warn', 'raise' or 'ignore', got {on_delta!r}")
        if int(n_steps) < 2:
            raise AttributionError(f"n_steps must be >= 2 (Captum's integration needs two points), got {n_steps}")
        items = self._prepare(smiles)
        baseline_id = self._baseline_id(baselines)
        ig = IntegratedGradients(self._forward)
        results: list[Attribution] = []
        for start in range(0, len(items), max(1, int(batch_size))):
            chunk = items[start:start + max(1, int(batch_size))]
            src, lengths, prev, x, b = self._batch(chunk, baseline_id, replace_specials)
            with torch.no_grad():
                fx = self._select(self._forward(x, src, lengths, prev), target)
                fb = self._select(self._forward(b, src, lengths, prev), target)
            rows = internal_batch_size
            if rows is None:  # bound memory: Captum would otherwise run len(chunk) * n_steps rows at once
                rows = max(len(chunk), IG_TOKEN_BUDGET // max(1, int(src.shape[1])))
            attr, delta = ig.attribute(x, baselines=b, additional_forward_args=(src, lengths, prev), target=target,
                                       n_steps=int(n_steps), method=method, internal_batch_size=rows,
                                       return_convergence_delta=True)
            per_position = attr.sum(dim=-1).detach().double().cpu().numpy()
            delta = delta.detach().double().cpu().numpy().reshape(-1)
            fx, fb = fx.double().cpu().numpy(), fb.double().cpu().numpy()
            for r, (s, alignment, ids, n_atoms) in enumerate(chunk):
                scores = per_position[r, : len(ids)]
                specials = {"<s>": float(scores[0]), "</s>": float(scores[-1])}
                mapped = map_token_scores(alignment, scores[1:-1], n_atoms, special_scores=list(specials.values()))
                bound = tolerance * max(abs(fx[r] - fb[r]), 1e-3)
                converged = bool(abs(delta[r]) <= bound)
                results.append(Attribution(
                    smiles=s, target=int(target) if target is not None else int(getattr(self, "_neuron", -1)), target_name=target_name,
                    quantity=quantity, tokens=list(alignment.tokens), token_scores=scores[1:-1].copy(),
                    special_scores=specials, atom_scores=mapped.atom_scores, remainder=mapped.remainder,
                    output=float(fx[r]), baseline_output=float(fb[r]), delta=float(delta[r]), converged=converged,
                    baseline=baselines, n_steps=int(n_steps), method=method, alignment=alignment,
                    token_rule=mapped.rule))
        bad = [a for a in results if not a.converged]
        if bad and on_delta != "ignore":
            worst = max(bad, key=lambda a: abs(a.delta))
            message = (f"integrated gradients did not converge for {len(bad)} of {len(results)} molecule(s): "
                       f"worst |delta| = {abs(worst.delta):.3g} for {worst.smiles!r} "
                       f"(F(x) - F(baseline) = {worst.output - worst.baseline_output:.3g}, tolerance {tolerance:g} "
                       f"relative); increase n_steps (now {n_steps})")
            if on_delta == "raise":
                raise ConvergenceError(message)
            warnings.warn(message, ConvergenceWarning, stacklevel=3)
        if not return_convergence_delta:
            for a in results:
                a.delta = float("nan")
        return results

    @staticmethod
    def _select(out: torch.Tensor, target) -> torch.Tensor:
        return out[:, target] if target is not None and out.dim() == 2 else out.reshape(out.shape[0])


class Attributor(_IGBase):
    """Integrated gradients of a fine-tuned BARTSmiles property model (see the module docstring).

    ``model_or_checkpoint``: a fine-tuned checkpoint (``.pt`` or a folder holding ``model.pt`` /
    ``checkpoint_best.pt``), a :class:`bartsmiles.model.predictor.PropertyPredictor` or a fitted
    :class:`bartsmiles.estimators.BartSmilesClassifier` / ``BartSmilesRegressor``.
    ``output``: ``"logit"`` (the head's raw output, default) or ``"prediction"`` (probability for
    classification, value in original units for regression).
    """

    def __init__(self, model_or_checkpoint, *, output: str = "logit"):
        super().__init__(model_or_checkpoint, need_head=True)
        if output not in ("logit", "prediction"):
            raise AttributionError(f"output must be 'logit' or 'prediction', got {output!r}")
        self.output = output
        self.head = self.meta.get("classification_head_name", "smiles_property")
        if self.head not in self.model.classification_heads:
            raise AttributionError(f"the model has no classification head {self.head!r}")
        self.task_names = list(self.meta.get("task_names") or [])
        self.n_outputs = int(self.model.classification_heads[self.head].out_proj.out_features)

    def _forward(self, emb, src, lengths, prev):
        logits, _ = self.model(src, lengths, prev, features_only=True, classification_head_name=self.head,
                               token_embeddings=emb)
        if self.output == "prediction":
            logits = to_predictions(logits, self.meta)
        return logits

    def _target(self, target) -> tuple[int, str]:
        if isinstance(target, str):
            if target not in self.task_names:
                raise TargetError(f"target {target!r} is not an output of this model; outputs: {self.task_names}")
            target = self.task_names.index(target)
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise TargetError(f"target must be an output index or name, got {target!r}")
        if not 0 <= int(target) < self.n_outputs:
            raise TargetError(f"target {int(target)} is out of range: the model has {self.n_outputs} output(s) "
                              f"(0..{self.n_outputs - 1}: {self.task_names})")
        name = self.task_names[int(target)] if int(target) < len(self.task_names) else str(int(target))
        return int(target), name

    def predict_outputs(self, smiles) -> np.ndarray:
        """``(n, n_outputs)`` of the attributed quantity (logits by default) for ``smiles``."""
        items = self._prepare(smiles)
        src, lengths, prev, x, _ = self._batch(items, int(self.vocab.pad), False)
        with torch.no_grad():
            return self._forward(x, src, lengths, prev).double().cpu().numpy()

    def attribute(self, smiles, target: int | str = 0, baselines: str = "pad", n_steps: int = 50, *,
                  return_convergence_delta: bool = True, internal_batch_size: Optional[int] = None,
                  method: str = "gausslegendre", batch_size: int = 16, replace_specials: bool = False,
                  tolerance: float = 0.05, on_delta: str = "warn") -> list[Attribution]:
        """One :class:`Attribution` per SMILES (a string is one SMILES), in input order.

        ``target``: output index (or task name); ``baselines``: ``"pad"`` | ``"mask"`` | ``"eos"``;
        ``n_steps``, ``method`` and ``internal_batch_size`` as in Captum (``None``: rows per pass
        chosen so that a pass holds about :data:`IG_TOKEN_BUDGET` tokens); ``batch_size`` molecules
        are attributed together. ``tolerance``/``on_delta``: the convergence check (module docstring).
        Raises :class:`InvalidSmilesError` (naming the SMILES and its index),
        :class:`SmilesTooLongError` (length and limit), :class:`TargetError`.
        """
        index, name = self._target(target)
        what = "probability" if self.meta.get("task_type") == "classification" else "predicted value"
        quantity = f"{'logit' if self.output == 'logit' else what} of output {index} ({name})"
        return self._run(smiles, target=index, target_name=name, quantity=quantity, baselines=baselines,
                         n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
                         batch_size=batch_size, replace_specials=replace_specials, tolerance=tolerance,
                         on_delta=on_delta, return_convergence_delta=return_convergence_delta)


class NeuronAttributor(_IGBase):
    """Integrated gradients of one pooled encoder feature (a "neuron") of a frozen model.

    The quantity is feature ``k`` of the encoder output pooled over the molecule, as
    :meth:`bartsmiles.model.pretrained.PretrainedModel.encode` computes it (``pooling="mean"`` over all non-pad
    positions, ``<s>``/``</s>`` included; ``"bos"``; ``"eos"``) -- the features the neuron probe
    (:mod:`bartsmiles.evaluation.probe`) selects from.  Captum's IG runs on a wrapper that returns that
    neuron from the encoder's input embeddings, so everything in the module docstring holds
    (baselines, delta, atoms).  ``model``: a :class:`bartsmiles.model.pretrained.PretrainedModel` or anything
    :class:`Attributor` takes (a fine-tuned model's encoder is used; its head is ignored).
    """

    def __init__(self, model, *, pooling: str = "mean"):
        super().__init__(model, need_head=False)
        if pooling not in ("mean", "bos", "eos"):
            raise AttributionError(f"pooling must be 'mean', 'bos' or 'eos', got {pooling!r}")
        self.pooling = pooling
        self.n_neurons = int(self.model.encoder.embed_tokens.embedding_dim)
        self._neuron = 0

    def features(self, emb, src, lengths):
        out = self.model.encoder(src, src_lengths=lengths, token_embeddings=emb)
        states = out["encoder_out"][0].transpose(0, 1)  # (B, L, d)
        if self.pooling == "bos":
            return states[:, 0]
        if self.pooling == "eos":
            return states[torch.arange(states.shape[0], device=states.device), lengths - 1]
        mask = src.ne(int(self.vocab.pad)).unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1)

    def _forward(self, emb, src, lengths, prev):
        return self.features(emb, src, lengths)[:, self._neuron]

    def attribute(self, smiles, neuron: int, baselines: str = "pad", n_steps: int = 50, *,
                  return_convergence_delta: bool = True, internal_batch_size: Optional[int] = None,
                  method: str = "gausslegendre", batch_size: int = 16, replace_specials: bool = False,
                  tolerance: float = 0.05, on_delta: str = "warn") -> list[Attribution]:
        """One :class:`Attribution` of neuron ``neuron`` per SMILES (arguments as :meth:`Attributor.attribute`)."""
        if isinstance(neuron, bool) or not isinstance(neuron, (int, np.integer)) or not 0 <= int(neuron) < self.n_neurons:
            raise TargetError(f"neuron {neuron!r} is out of range: the encoder has {self.n_neurons} features "
                              f"(0..{self.n_neurons - 1})")
        self._neuron = int(neuron)
        quantity = f"encoder feature {int(neuron)} ({self.pooling}-pooled)"
        return self._run(smiles, target=None, target_name=f"neuron {int(neuron)}", quantity=quantity,
                         baselines=baselines, n_steps=n_steps, method=method,
                         internal_batch_size=internal_batch_size, batch_size=batch_size,
                         replace_specials=replace_specials, tolerance=tolerance, on_delta=on_delta,
                         return_convergence_delta=return_convergence_delta)
