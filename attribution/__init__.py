"""Attribution for BARTSmiles: which atoms and substructures drive a prediction.

>>> from bartsmiles.attribution import Attributor
>>> attributor = Attributor("runs/finetune/checkpoint_best.pt")
>>> [a] = attributor.attribute("O=[N+]([O-])c1ccccc1", target=0, n_steps=50)
>>> a.atom_scores, a.delta                   # per RDKit atom; Captum's convergence delta
>>> a.substructures()                        # functional groups, BRICS, scaffold, ranked

* :mod:`.integrated_gradients` -- :class:`Attributor` (a fine-tuned model's output) and
  :class:`NeuronAttributor` (one pooled encoder feature of a frozen model): Captum integrated
  gradients at the encoder's input token embeddings.
* :mod:`.mapping` -- token scores -> atom scores through the tokenizer's atom alignment.
* :mod:`.substructures` -- atom scores -> functional groups (shipped SMARTS library), BRICS
  fragments, Murcko scaffold / side chains, user SMARTS.
* :mod:`.draw` -- atom-coloured PNG/SVG with a colour bar, grids, an HTML report (headless).
* :mod:`.cli` -- the ``bartsmiles-attribute`` command.

Its errors (``AttributionError``, ``TargetError``, ``ConvergenceError``, ``ConvergenceWarning``,
and the ``InvalidSmilesError`` / ``SmilesTooLongError`` every part of bartsmiles raises) are in
:mod:`bartsmiles.errors`.
"""
from .integrated_gradients import BASELINES, Attributor, NeuronAttributor
from .mapping import AtomMapping, map_token_scores, token_atom_matrix
from .result import Attribution
from .substructures import FunctionalGroup, brics_fragments, functional_groups, scaffold_parts, substructure_table

__all__ = [
    "Attributor", "NeuronAttributor", "Attribution", "BASELINES",
    "AtomMapping", "map_token_scores", "token_atom_matrix", "FunctionalGroup", "functional_groups",
    "substructure_table", "brics_fragments", "scaffold_parts",
]
