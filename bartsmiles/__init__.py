"""bartsmiles: BARTSmiles as installable, tested software.

Layers (imports flow one way, downwards):

* CLI (:mod:`bartsmiles.cli`) and attribution (:mod:`bartsmiles.attribution`)
* API (:mod:`bartsmiles.api`, :mod:`bartsmiles.checkpoint`)
* fairseq plugin (:mod:`bartsmiles.tasks`)
* core: :mod:`bartsmiles.tokenizer`, :mod:`bartsmiles.vocab`, :mod:`bartsmiles.chem`,
  :mod:`bartsmiles.datasets`, :mod:`bartsmiles.splits`, :mod:`bartsmiles.metrics`
  (no torch, no fairseq)

Importing ``bartsmiles`` itself is cheap: heavy layers load on first use.
"""
from ._version import __version__

__all__ = ["__version__", "load_pretrained"]


def load_pretrained(*args, **kwargs):
    """Load a pretrained model (the shipped one by default). See :func:`bartsmiles.api.load_pretrained`."""
    from .api import load_pretrained as _load

    return _load(*args, **kwargs)
