"""The decoder head's forward pass, with the last decoder layer run only where the head reads.

A model whose head reads the decoder (``head_input="decoder_eos"``, :mod:`bartsmiles.tasks.property_head`)
takes the decoder's state at the final ``</s>`` of each row and nothing else.  fairseq's
``BARTModel.forward`` computes every position of every decoder layer, and also averages the
last layer's cross-attention weights for an alignment nobody reads.  The positions below the
last layer are needed (they are the keys and values of the last layer's self-attention), but the
last layer itself only has to run its queries, cross-attention and feed-forward block at one
position per row.  :func:`decoder_eos_logits` does that: the same function of the same weights
(equal to fairseq's forward to float rounding, tested), about a tenth less work for
``bartsmiles_small``, with gradients flowing to ``token_embeddings`` as before.

Index space: position (token) space.  Batches are right-padded, each row ending with ``</s>`` at
position ``lengths - 1`` (:func:`bartsmiles.attribution.inputs.make_batch`), which is where
fairseq's head reads (the row's last ``</s>``).

:func:`eos_only_supported` says whether a model's decoder is built the way this function assumes
(post- or pre-norm BART layers without the optional extras some fairseq architectures add); a
caller falls back to the model's own forward where it is not.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["eos_only_supported", "decoder_eos_logits"]

#: optional parts of a fairseq decoder layer that :func:`_last_layer_at` does not implement
_LAYER_EXTRAS = ("c_attn", "attn_ln", "ffn_layernorm", "w_resid")


def eos_only_supported(model) -> bool:
    """Whether :func:`decoder_eos_logits` computes exactly what ``model``'s own forward does: a BART
    whose head reads the decoder and whose decoder has none of the extras it does not implement."""
    decoder = getattr(model, "decoder", None)
    if getattr(model, "bartsmiles_head_input", "decoder_eos") != "decoder_eos" or decoder is None:
        return False
    if not hasattr(decoder, "layers") or len(decoder.layers) == 0:
        return False
    if getattr(decoder, "quant_noise", None) is not None or getattr(decoder, "project_in_dim", None) is not None:
        return False
    if getattr(decoder, "cross_self_attention", False):
        return False
    last = decoder.layers[-1]
    if getattr(last, "encoder_attn", None) is None or getattr(last, "cross_self_attention", False):
        return False
    return all(getattr(last, name, None) is None for name in _LAYER_EXTRAS)


def _sublayer(layer, norm, x: torch.Tensor, block) -> torch.Tensor:
    """One residual sublayer of a fairseq ``TransformerDecoderLayer``: ``norm`` before ``block``
    (pre-norm) or after the residual sum (post-norm), dropout on ``block``'s output, as fairseq does."""
    residual = x
    if layer.normalize_before:
        x = norm(x)
    x = layer.residual_connection(layer.dropout_module(block(x)), residual)
    return x if layer.normalize_before else norm(x)


def _last_layer_at(layer, states: torch.Tensor, query: torch.Tensor, encoder_states: torch.Tensor,
                   encoder_padding_mask: Optional[torch.Tensor], padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """A fairseq ``TransformerDecoderLayer`` at the query positions only: ``query`` ``(Q, B, C)``
    attends to every unpadded position of ``states`` ``(T, B, C)`` (the queries are each row's last
    position, so the causal mask hides nothing the padding mask does not)."""
    # pre-norm normalizes the keys as fairseq does (it normalizes the whole sequence before attending)
    keys = layer.self_attn_layer_norm(states) if layer.normalize_before else states
    x = _sublayer(layer, layer.self_attn_layer_norm, query, lambda q: layer.self_attn(
        query=q, key=keys, value=keys, key_padding_mask=padding_mask, need_weights=False)[0])
    x = _sublayer(layer, layer.encoder_attn_layer_norm, x, lambda q: layer.encoder_attn(
        query=q, key=encoder_states, value=encoder_states, key_padding_mask=encoder_padding_mask,
        static_kv=True, need_weights=False)[0])
    return _sublayer(layer, layer.final_layer_norm, x,
                     lambda h: layer.fc2(layer.activation_dropout_module(layer.activation_fn(layer.fc1(h)))))


def decoder_eos_logits(model, src_tokens: torch.Tensor, src_lengths: torch.Tensor, prev_output_tokens: torch.Tensor,
                       head: str, token_embeddings: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``(B, n_outputs)``: classification head ``head`` of ``model`` at each row's final ``</s>``,
    as ``model(src_tokens, src_lengths, prev_output_tokens, classification_head_name=head,
    token_embeddings=token_embeddings)[0]`` computes it, with the last decoder layer run at that
    position only (module docstring).  Check :func:`eos_only_supported` first."""
    encoder_out = model.encoder(src_tokens, src_lengths=src_lengths, token_embeddings=token_embeddings,
                                return_all_hiddens=False)
    encoder_states = encoder_out["encoder_out"][0]
    encoder_padding_mask = encoder_out["encoder_padding_mask"][0] if encoder_out["encoder_padding_mask"] else None

    decoder = model.decoder
    x = decoder.embed_scale * decoder.embed_tokens(prev_output_tokens)
    if decoder.embed_positions is not None:
        x = x + decoder.embed_positions(prev_output_tokens)
    if decoder.layernorm_embedding is not None:
        x = decoder.layernorm_embedding(x)
    x = decoder.dropout_module(x).transpose(0, 1)  # (T, B, C)
    padding_mask = prev_output_tokens.eq(decoder.padding_idx)
    padding_mask = padding_mask if padding_mask.any() else None
    for layer in decoder.layers[:-1]:
        x, _, _ = layer(x, encoder_states, encoder_padding_mask, None,
                        self_attn_mask=decoder.buffered_future_mask(x), self_attn_padding_mask=padding_mask)
    rows = torch.arange(x.shape[1], device=x.device)
    query = x[src_lengths.to(x.device) - 1, rows].unsqueeze(0)  # (1, B, C): each row's final </s>
    x = _last_layer_at(decoder.layers[-1], x, query, encoder_states, encoder_padding_mask, padding_mask)
    if decoder.layer_norm is not None:
        x = decoder.layer_norm(x)
    x = x[0]
    if decoder.project_out_dim is not None:
        x = decoder.project_out_dim(x)
    return model.classification_heads[head](x)
