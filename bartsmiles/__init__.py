"""bartsmiles: BARTSmiles as installable, tested software.

The package is split into rooms by concern; imports flow one way, downwards
(see ARCHITECTURE.md):

* :mod:`bartsmiles.cli` and :mod:`bartsmiles.attribution` -- the command lines and the attribution
  of predictions; they call the API below;
* :mod:`bartsmiles.estimators`, :mod:`bartsmiles.seq2seq`, :mod:`bartsmiles.evaluation` -- what users
  call: scikit-learn estimators, the SMILES translator, benchmarks and the main job;
* :mod:`bartsmiles.training` and :mod:`bartsmiles.model` -- typed configs and fairseq runs; loading,
  resolving and predicting with checkpoints;
* :mod:`bartsmiles.tasks` -- the fairseq plugin (tasks, criterion, architectures);
* :mod:`bartsmiles.data` and :mod:`bartsmiles.core` -- datasets, tokenizer, vocabulary, chemistry,
  splits and metrics (no torch, no fairseq);
* :mod:`bartsmiles.errors` -- every error, defined once.

Importing ``bartsmiles`` itself is cheap: :func:`load_pretrained` imports torch and fairseq on
first use, so that ``import bartsmiles.core.tokenizer`` never pulls them in; :func:`audit` (the
data-trust report of :mod:`bartsmiles.data.audit`) imports pandas, RDKit and scikit-learn on first use.
"""
from bartsmiles._version import __version__

__all__ = ["__version__", "load_pretrained", "audit"]


def load_pretrained(*args, **kwargs):
    """Load a pretrained model (the shipped one by default); see :func:`bartsmiles.model.pretrained.load_pretrained`."""
    # lazy: torch and fairseq load only when a model is asked for (the core must stay torch-free)
    from bartsmiles.model.pretrained import load_pretrained as _load

    return _load(*args, **kwargs)


def audit(*args, **kwargs):
    """Data-trust report of a property dataset; see :func:`bartsmiles.data.audit.audit`."""
    # lazy: the audit needs pandas, RDKit and scikit-learn; `import bartsmiles` stays cheap
    from bartsmiles.data.audit import audit as _audit

    return _audit(*args, **kwargs)
