"""Running a loaded fairseq BART in bfloat16 for inference and attribution.

:func:`bf16_inference` is ``torch.autocast`` to bfloat16 on the model's device, plus one fix:
fairseq's GELU casts its input to float32 and back on every call (it was written for fp16
training), which under bf16 autocast costs about a sixth of a forward pass on a CPU.  For the
duration of the context each layer's fairseq GELU is swapped for torch's own -- the same function,
computed in bf16 -- and put back after, so the model is left as it was found.  In float32 the two
GELUs are the same computation, so a thread running the model in fp32 meanwhile is unaffected.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from fairseq import utils as fairseq_utils

__all__ = ["bf16_inference"]

#: the function fairseq layers hold as ``activation_fn`` for ``--activation-fn gelu``
FAIRSEQ_GELU = fairseq_utils.get_activation_fn("gelu")


@contextmanager
def bf16_inference(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """bfloat16 autocast of ``model``'s matrix products, with torch's GELU in place of fairseq's
    (module docstring); ``enabled=False`` changes nothing.  Inputs and outputs keep their dtypes
    outside autocast's own rules: cast a result with ``.float()`` where float32 is needed."""
    if not enabled:
        yield
        return
    device = next(model.parameters()).device
    swapped = [m for m in model.modules() if getattr(m, "activation_fn", None) is FAIRSEQ_GELU]
    for m in swapped:
        m.activation_fn = F.gelu
    try:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    finally:
        for m in swapped:
            m.activation_fn = FAIRSEQ_GELU
