"""What the property head reads: the BART recipe's decoder state, or the mean-pooled encoder.

* ``decoder_eos`` (the default, the BARTSmiles recipe, as fairseq's ``sentence_prediction``):
  the decoder reads the input shifted right by one and the head reads its state at the final
  ``</s>``.  A prediction runs the encoder *and* the decoder.
* ``encoder_mean``: the head reads the encoder output averaged over every non-pad position
  (``<s>`` and ``</s>`` included) -- the features ``encode()`` returns -- and the decoder is never
  run.  Prediction, attribution and fine-tuning then cost the encoder only, about half as much.
  The decoder's weights stay in the model (a pretrained checkpoint loads as it is) but get no
  gradient.

The choice is the ``smiles_property`` task's ``--head-input``, recorded in the checkpoint's task
state, so every loader of the checkpoint (prediction, attribution, serving, export) rebuilds the
same model.  A checkpoint written before the record existed reads ``decoder_eos``.
"""
from __future__ import annotations

import types

import torch

HEAD_INPUTS = ("decoder_eos", "encoder_mean")


def mean_pool(states: torch.Tensor, src_tokens: torch.Tensor, pad: int) -> torch.Tensor:
    """``(B, d)``: ``states`` ``(B, L, d)`` averaged over the positions where ``src_tokens`` is not ``pad``."""
    mask = src_tokens.ne(pad).unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _encoder_mean_forward(self, src_tokens, src_lengths, prev_output_tokens=None, features_only: bool = False,
                          classification_head_name=None, token_embeddings=None, return_all_hiddens: bool = True,
                          **kwargs):
    """BARTModel.forward, except that a classification head reads the mean-pooled encoder output."""
    if classification_head_name is None:  # not a head call: the model's own forward, untouched
        return type(self).forward(self, src_tokens, src_lengths, prev_output_tokens, features_only=features_only,
                                  classification_head_name=None, token_embeddings=token_embeddings,
                                  return_all_hiddens=return_all_hiddens, **kwargs)
    out = self.encoder(src_tokens, src_lengths=src_lengths, token_embeddings=token_embeddings,
                       return_all_hiddens=return_all_hiddens)
    states = out["encoder_out"][0].transpose(0, 1)  # (B, L, d)
    pooled = mean_pool(states, src_tokens, self.encoder.padding_idx)
    head = self.classification_heads[classification_head_name]
    dtype = next(head.parameters()).dtype
    return head(pooled.to(dtype)), {"encoder_out": out, "inner_states": out.get("encoder_states") or []}


def use_head_input(model, head_input: str):
    """Make ``model``'s classification heads read ``head_input`` (one of :data:`HEAD_INPUTS`).

    ``encoder_mean`` replaces this model instance's ``forward`` (its state dict is unchanged);
    ``decoder_eos`` leaves the model as fairseq built it.
    """
    if head_input not in HEAD_INPUTS:
        raise ValueError(f"head_input must be one of {HEAD_INPUTS}, got {head_input!r}")
    if head_input == "encoder_mean":
        model.forward = types.MethodType(_encoder_mean_forward, model)
    model.bartsmiles_head_input = head_input
    return model


__all__ = ["HEAD_INPUTS", "mean_pool", "use_head_input"]
