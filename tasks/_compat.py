"""Small, explicit fixes that let fairseq-fixed 0.12.3.1 run on today's numpy and torch.

* **numpy 2** removed ``numpy.compat``; fairseq still reads ``np.compat.long`` in
  ``TokenBlockDataset`` and ``LanguagePairDataset``.  We provide exactly that one alias
  (``long`` is ``int64`` on every platform fairseq supports) and nothing else.
* **torch >= 2.6** loads checkpoints with ``weights_only=True``.  fairseq's checkpoints hold an
  ``argparse.Namespace`` (the legacy ``args`` entry), which the weights-only unpickler refuses.
  We allowlist that one class.  Torch's safety stays on: any other global (a malicious
  ``os.system`` reduce, say) is still refused.  See :mod:`bartsmiles.model.checkpoint`.
"""
from __future__ import annotations

import argparse
import types

import numpy as np
import torch

#: Globals that fairseq checkpoints legitimately contain, beyond tensors and plain containers.
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)


def ensure_numpy_compat() -> None:
    """Give numpy 2 the single ``np.compat.long`` alias fairseq uses (no-op on numpy 1)."""
    try:
        np.compat  # noqa: B018  (numpy 1.x has it)
    except AttributeError:
        np.compat = types.SimpleNamespace(long=np.int64)  # type: ignore[attr-defined]


def allowlist_fairseq_globals() -> None:
    """Allow torch's weights-only loader to rebuild the classes in :data:`SAFE_GLOBALS`."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add(list(SAFE_GLOBALS))


def apply() -> None:
    ensure_numpy_compat()
    allowlist_fairseq_globals()
