"""Running a loaded fairseq BART in bfloat16 or int8 for inference and attribution.

:func:`bf16_inference` is ``torch.autocast`` to bfloat16 on the model's device, plus one fix:
fairseq's GELU casts its input to float32 and back on every call (it was written for fp16
training), which under bf16 autocast costs about a sixth of a forward pass on a CPU.  For the
duration of the context each layer's fairseq GELU is swapped for torch's own -- the same function,
computed in bf16 -- and put back after, so the model is left as it was found.  In float32 the two
GELUs are the same computation, so a thread running the model in fp32 meanwhile is unaffected.

:func:`bf16_copy` is the other way, for forward passes without gradients: a copy of the model
whose weights are all bfloat16, run inside :func:`torch_gelu` (the same GELU swap, without
autocast), so that no op casts to float32 and back.

:func:`int8_copy` is a third way for forward passes without gradients on a CPU: a float32 copy
whose linear layers (the attention projections and the feed-forward blocks of every encoder and
decoder layer) hold int8 weights and quantize their inputs on the fly, batch by batch (torch's
dynamic quantization; int8 matrix products with VNNI where the CPU has it, AVX2 elsewhere).
Embeddings, layer norms, softmax and the classification head stay float32.
"""
from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from fairseq import utils as fairseq_utils

__all__ = ["bf16_inference", "bf16_copy", "gelu", "int8_copy", "projections_as_layers", "torch_gelu"]

#: the function fairseq layers hold as ``activation_fn`` for ``--activation-fn gelu``
FAIRSEQ_GELU = fairseq_utils.get_activation_fn("gelu")


def gelu(x: torch.Tensor) -> torch.Tensor:
    """torch's GELU of ``x``, computed in ``x`` itself when autograd is off.  A layer's GELU reads
    the feed-forward block's widest activations, which nothing else holds; on a CPU allocating a
    new tensor for them cost about five times the GELU itself (2 cores, 10M floats: 27 ms against
    4.4 ms in place), and the two together were about a fifth of an edit-occlusion forward pass.
    With autograd on (the gradient methods) it returns a new tensor, as ``F.gelu`` does."""
    return F.gelu(x) if torch.is_grad_enabled() else torch.ops.aten.gelu_(x)


@contextmanager
def torch_gelu(model: torch.nn.Module) -> Iterator[None]:
    """For the duration, torch's GELU (:func:`gelu`) in place of fairseq's in every layer of
    ``model`` (module docstring); the layers get fairseq's back afterwards."""
    swapped = [m for m in model.modules() if getattr(m, "activation_fn", None) is FAIRSEQ_GELU]
    for m in swapped:
        m.activation_fn = gelu
    try:
        yield
    finally:
        for m in swapped:
            m.activation_fn = FAIRSEQ_GELU


@contextmanager
def bf16_inference(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """bfloat16 autocast of ``model``'s matrix products, with torch's GELU in place of fairseq's
    (module docstring); ``enabled=False`` changes nothing.  Inputs and outputs keep their dtypes
    outside autocast's own rules: cast a result with ``.float()`` where float32 is needed."""
    if not enabled:
        yield
        return
    device = next(model.parameters()).device
    with torch_gelu(model), torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


def bf16_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with every parameter and buffer in bfloat16, in eval mode, for forward
    passes without gradients.  Unlike autocast, which keeps layer norms and softmax in float32 and
    casts between them and the matrix products, everything runs in bf16: about a tenth faster on a
    CPU with AVX512-BF16, with outputs a little further from float32.  Run it inside
    :func:`torch_gelu`, or fairseq's GELU computes in float32 and casts back.  ``model`` is not
    changed; the copy does not follow later changes to it."""
    return copy.deepcopy(model).to(torch.bfloat16).eval()


def projections_as_layers(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (changed in place and returned) with every fairseq attention module calling its
    query, key, value and output projections as layers rather than handing their weights to
    ``F.multi_head_attention_forward`` (:func:`int8_copy`): ``skip_embed_dim_check`` on, and
    ``self_attention`` off, so that a self-attention projects the ``key`` and ``value`` it is given
    (every fairseq layer and :mod:`.eos_forward` pass them).  The same function to float rounding."""
    for module in model.modules():
        if hasattr(module, "skip_embed_dim_check") and hasattr(module, "self_attention"):  # fairseq attention
            module.skip_embed_dim_check = True
            module.self_attention = False
    return model


def int8_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` in eval mode, for forward passes without gradients on a CPU, whose encoder
    and decoder linear layers are dynamically quantized to int8 (module docstring); the classification
    heads and the output projection stay float32.  ``model`` is not changed.

    fairseq's attention normally hands its projection weights to
    ``F.multi_head_attention_forward``, which cannot take quantized layers; in the copy every
    attention module calls its projections as layers instead (:func:`projections_as_layers`).

    Inputs are quantized per batch (one scale per tensor), so a sequence's output moves a little
    with the other sequences in its batch: run twice in the same batches, the same numbers.

    Raises :class:`ValueError` for a model on another device than the CPU (torch quantizes
    dynamically on CPUs only)."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"int8 runs on the CPU only; the model is on {device}")
    copied = projections_as_layers(copy.deepcopy(model).float().eval())
    layers = {name for name, module in copied.named_modules()
              if isinstance(module, torch.nn.Linear) and name.startswith(("encoder.layers.", "decoder.layers."))}
    with warnings.catch_warnings():  # torch points torch.ao.quantization users at torchao; the pinned torch has it
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            copied, {name: torch.ao.quantization.default_dynamic_qconfig for name in layers}, dtype=torch.qint8)
