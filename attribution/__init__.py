"""Attribution for BARTSmiles: which atoms and substructures drive a prediction.

>>> from bartsmiles.attribution import Attributor
>>> attributor = Attributor("runs/finetune/checkpoint_best.pt")  # default: DEFAULT_METHODS by the head
>>> attributor.method                        # "edit_gradient" (decoder head); "gradient_x_input" (encoder head)
>>> [a] = attributor.attribute("O=[N+]([O-])c1ccccc1", target=0)
>>> a.atom_scores                            # per RDKit atom (additive where the method is)
>>> a.environment_scores                     # plus the mean of the atoms 1 and 2 bonds away (drawn)
>>> ig = Attributor("runs/finetune/checkpoint_best.pt", method="ig")
>>> [b] = ig.attribute("O=[N+]([O-])c1ccccc1", n_steps=50)
>>> b.delta                                  # Captum's convergence delta
>>> a.substructures()                        # functional groups, BRICS, scaffold, ranked
>>> [c] = attributor.deletion_check([a])     # hide the map's top 3 atoms vs 3 random ones
>>> c.gain, c.rank                           # > 0 and near 1: the map is what the model reads
>>> occlusion = Attributor("runs/finetune/checkpoint_best.pt", method="mask_occlusion")
>>> [o] = occlusion.attribute("O=[N+]([O-])c1ccccc1")  # also "gradient_x_input", "shapley", "edit_occlusion"
>>> ensemble = Attributor(["seed0/checkpoint_best.pt", "seed1/checkpoint_best.pt"])  # or a fitted n_models > 1
>>> [e] = ensemble.attribute("O=[N+]([O-])c1ccccc1")  # the members' mean output, explained

* :mod:`.attributor` -- :class:`Attributor` (a fine-tuned model's output) and
  :class:`NeuronAttributor` (one pooled encoder feature of a frozen model): one API for every
  method (:data:`METHODS`), one result type (:class:`Attribution`).
* the methods, all at the encoder's input token embeddings: :mod:`.integrated_gradients`
  (Captum IG), :mod:`.occlusion` (``<mask>`` occlusion per atom), :mod:`.gradient_x_input`,
  :mod:`.shapley` (Captum Shapley value sampling / feature ablation); and one that edits the
  molecule instead, :mod:`.edit_occlusion` (each atom edited out, the edited molecule re-read);
  :mod:`.edit_gradient` adds the two kinds (edit occlusion plus gradient x input, per atom);
  :mod:`.inputs` -- what they share (loading, checked molecules, padded batches).
* :mod:`.faithfulness` -- the deletion check: does hiding the atoms a map ranks first move the
  model more than hiding as many random atoms (``Attributor.deletion_check``, ``--check``)?
* :mod:`.mapping` -- token scores -> atom scores through the tokenizer's atom alignment.
* :mod:`.environment` -- atom scores -> environment scores (each atom plus its neighbourhood),
  what the drawings show and the ground-truth table scores by default.
* :mod:`.substructures` -- atom scores -> functional groups (shipped SMARTS library), BRICS
  fragments, Murcko scaffold / side chains, user SMARTS.
* :mod:`.draw` -- atom-coloured PNG/SVG with a colour bar, grids, an HTML report (headless).
* :mod:`.groundtruth` -- SMARTS-rule labels with ground-truth atoms (single, AND, OR, count) and
  the per-molecule atom ROC-AUC and top-k hit rate; :mod:`.fingerprint_map` -- the ECFP similarity
  map of a fingerprint model, batched (the reference the benchmark compares against).
* :mod:`.cli` -- the ``bartsmiles-attribute`` command.

Its errors (``AttributionError``, ``TargetError``, ``ConvergenceError``, ``ConvergenceWarning``,
and the ``InvalidSmilesError`` / ``SmilesTooLongError`` every part of bartsmiles raises) are in
:mod:`bartsmiles.errors`.
"""
from .attributor import DEFAULT_METHODS, METHODS, Attributor, NeuronAttributor, default_method
from .environment import DEFAULT_ENVIRONMENT_RADIUS, environment_scores
from .faithfulness import DeletionCheck
from .inputs import BASELINES
from .mapping import AtomMapping, map_token_scores, token_atom_matrix
from .occlusion import occlusion_groups
from .result import Attribution, MethodScores
from .substructures import FunctionalGroup, brics_fragments, functional_groups, scaffold_parts, substructure_table

__all__ = [
    "Attributor", "NeuronAttributor", "METHODS", "DEFAULT_METHODS", "default_method", "Attribution", "MethodScores",
    "DeletionCheck",
    "BASELINES",
    "DEFAULT_ENVIRONMENT_RADIUS", "environment_scores", "AtomMapping", "map_token_scores", "token_atom_matrix",
    "occlusion_groups", "FunctionalGroup", "functional_groups", "substructure_table", "brics_fragments",
    "scaffold_parts",
]
