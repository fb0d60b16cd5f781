"""The settings of ``bartsmiles serve``: one typed dataclass, from which the command line is built.

Only the standard library and :func:`bartsmiles.training.config.help_field`: the command line
imports this module whether or not the optional ``serve`` extra (FastAPI, uvicorn) is installed.
"""
from __future__ import annotations

from dataclasses import dataclass

from bartsmiles.errors import ServeError
from bartsmiles.training.config import help_field

__all__ = ["ServeConfig", "LOCALHOST"]

#: where the server listens unless told otherwise: this machine only
LOCALHOST = "127.0.0.1"


@dataclass
class ServeConfig:
    """Settings of ``bartsmiles serve MODEL``."""

    model: str = help_field("fine-tuned model: a .pt file, a model folder or a run folder", default="")
    host: str = help_field("address to listen on; 127.0.0.1 keeps the page on this machine, 0.0.0.0 opens it to "
                           "the network (anyone who can reach the port can use the model)", default=LOCALHOST)
    port: int = help_field("TCP port to listen on", default=8000)
    max_molecules: int = help_field("most molecules (SMILES or CSV rows) in one request; more is refused with "
                                    "HTTP 422", default=1000)
    max_request_bytes: int = help_field("largest request body in bytes (pasted text or an uploaded CSV); a "
                                        "larger one is refused with HTTP 413", default=2_000_000)
    alpha: float = help_field("miscoverage of the conformal intervals shown when the model has a calibration "
                              "(0.1: 90 percent intervals or prediction sets)", default=0.1)
    batch_size: int = help_field("molecules per forward pass when predicting", default=64)

    def check(self) -> "ServeConfig":
        """``self`` if every limit makes sense; else :class:`~bartsmiles.errors.ServeError` naming the option."""
        if not self.model:
            raise ServeError("serve needs a model: bartsmiles serve MODEL")
        for name in ("max_molecules", "max_request_bytes", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ServeError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 < int(self.port) < 65536:
            raise ServeError(f"--port must be in 1..65535, got {self.port}")
        if not 0.0 < float(self.alpha) < 1.0:
            raise ServeError(f"--alpha must be in (0, 1), got {self.alpha}")
        return self
