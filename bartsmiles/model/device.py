"""The one place a user's device name becomes a :class:`torch.device`.

``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a :class:`torch.device` is checked against what
this machine has, so a run asked for a missing GPU stops at once with one line
(:class:`bartsmiles.errors.DeviceError`) instead of a CUDA traceback deep inside the first forward
pass.  ``"auto"`` is the first CUDA GPU when there is one, else the CPU.
"""
from __future__ import annotations

import torch

from bartsmiles.errors import DeviceError

__all__ = ["resolve_device"]


def resolve_device(device: "str | torch.device") -> torch.device:
    """``device`` as a :class:`torch.device` this machine has (module docstring); raises
    :class:`DeviceError` for a name torch does not know or a device that is not there."""
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"device {device!r} is not a torch device name (cpu, cuda, cuda:N, mps, auto)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r}: no CUDA GPU is available to torch {torch.__version__} here; "
                              f"use cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device!r}: MPS is not available here; use cpu")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {device!r}: only cpu, cuda and mps are supported")
    return resolved
