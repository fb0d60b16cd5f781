"""One API for every attribution method: :class:`Attributor` (a fine-tuned model's output) and
:class:`NeuronAttributor` (one pooled encoder feature of a frozen model).

``Attributor(model, method=...)`` picks the method (default: :func:`default_method` of what the
model's head reads); :meth:`Attributor.attribute` returns one
:class:`~bartsmiles.attribution.result.Attribution` per SMILES whatever the method, so atom
scores, substructures, drawings and the command line work the same for all of them.

* ``"ig"`` -- integrated gradients at the encoder's input token embeddings
  (:mod:`.integrated_gradients`), token scores mapped to atoms; additive (with ``nt_samples``,
  its SmoothGrad mean over noisy inputs, not additive).
* ``"mask_occlusion"`` -- ``F(input) - F(input with the atom's token(s) replaced by <mask>)``,
  optionally with its attached bond / branch / ring-closure tokens (:mod:`.occlusion`); not additive.
* ``"gradient_x_input"`` -- gradient x input embeddings (or x (input - baseline) for a token
  baseline), the gradient taken at ``alpha`` (default 0.5) of the way from the baseline to the
  input, token scores mapped to atoms (:mod:`.gradient_x_input`); not additive.
* ``"shapley"`` -- Captum Shapley value sampling over tokens or atoms with a ``<mask>`` baseline
  (:mod:`.shapley`); additive.  ``estimator="ablation"``: Captum feature ablation, not additive.
* ``"edit_occlusion"`` -- ``F(molecule) - F(molecule with the atom edited out)``: a terminal atom
  deleted, a heteroatom made carbon, a chain carbon cut out; repeated terminal heteroatoms (two
  chlorines) are also deleted together and share the joint drop; a branch atom outside rings, which
  has no edit, scores the sum of its edited neighbours (``branch_fill``) (:mod:`.edit_occlusion`); not additive.
* ``"edit_gradient"`` -- edit occlusion plus gradient x input at ``alpha`` (zero baseline), added per
  atom: the gradient scores the atoms edit occlusion cannot edit (a carbonyl carbon) and sees groups
  a second copy hides, edit occlusion the groups a saturated gradient misses (:mod:`.edit_gradient`);
  not additive.

All methods but ``edit_occlusion`` and the edit part of ``edit_gradient`` (which edit the molecule
itself) perturb the same input: the encoder's input token embeddings (IG's module docstring says what ``F`` is; ``output="logit"`` or
``"prediction"``).  For an additive method
``atom_scores.sum() + remainder == output - baseline_output + delta`` with ``delta`` checked
against ``tolerance`` (:class:`ConvergenceWarning` / :class:`ConvergenceError`); for the others
``delta`` reports how far the scores are from adding up and ``converged`` is ``None``.

``Attributor([model_0, model_1, ...])`` (or a fitted estimator with ``n_models > 1``) explains an
ensemble: the members' mean output, whose scores are the mean of the members' scores for every
method here (:func:`.result.mean_scores`).

Whatever the method, each result also carries ``environment_scores`` (:mod:`.environment`): each
atom's score plus the mean score of its neighbourhood within ``environment_radius`` bonds (default
2), what the drawings show and what the ground-truth table chose; ``atom_scores`` stay the method's own.

Index spaces: scores are per **token index** (``token_scores``), per special token, and per
**atom index** (``atom_scores`` and ``environment_scores``, RDKit's numbering of
``Chem.MolFromSmiles(smiles)``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from bartsmiles.core.chem import parse_smiles
from bartsmiles.errors import AttributionError, ConvergenceError, ConvergenceWarning, TargetError
from bartsmiles.model.device import resolve_device
from bartsmiles.model.eos_forward import decoder_eos_logits, eos_only_supported
from bartsmiles.model.precision import bf16_copy, bf16_inference, int8_copy, torch_gelu
from bartsmiles.tasks.property_criterion import to_predictions

from .environment import DEFAULT_ENVIRONMENT_RADIUS, check_radius, environment_scores
from .faithfulness import DEFAULT_CHECK_DRAWS, DeletionCheck, check_atom_sets, hidden_outputs, make_checks
from .gradient_x_input import DEFAULT_ALPHA, check_alpha, gradient_x_input
from .inputs import (Molecule, ScoreModel, baseline_token_id, encode_smiles, length_batches, load_model, make_batch,
                     native_bf16, native_int8, prepare_molecules)
from .integrated_gradients import integrated_gradients
from .mapping import map_token_scores, token_atom_matrix
from .edit_gradient import edit_gradient
from .edit_occlusion import edit_occlusion
from .occlusion import mask_occlusion
from .result import Attribution, MethodScores, mean_scores
from .shapley import ESTIMATORS, FEATURES, shapley

__all__ = ["METHODS", "DEFAULT_METHODS", "DEFAULT_PRECISION", "PRECISIONS", "Attributor", "NeuronAttributor",
           "check_method", "default_method", "ensemble_members"]

#: the attribution methods
METHODS = ("ig", "mask_occlusion", "gradient_x_input", "shapley", "edit_occlusion", "edit_gradient")
#: the method of ``Attributor(model)``, ``bartsmiles-attribute`` and ``bartsmiles serve`` by what the
#: model's head reads (``head_input``, recorded at fine-tuning), chosen by the ground-truth tables
#: (README, Attribution; ``benchmarks/results/attribution_groundtruth*``).  The decoder's final
#: state (the fine-tuning default): edit occlusion plus the gradient -- these heads grow so
#: confident that gradients alone saturate (a zero-embedding molecule already scores positive) and
#: edit occlusion alone cannot score a carbonyl carbon; on 10-epoch models (batch 16, lr 1e-4)
#: the sum found the deciding atoms best (mean atom ROC-AUC 0.969 against 0.950 for edit occlusion
#: and 0.831 for the gradient, three seeds), and it was first on every decoder-head set.  Since
#: session 13 both edit methods fill branch atoms by default (``branch_fill``), which lifted the sum
#: to 0.972 on those models (0.960 against 0.952 on 3-epoch models) and above the map on AND; on
#: ``FinetuneConfig``'s own defaults (lr 3e-5) it scores 0.972 too, against 0.965 for edit occlusion
#: and 0.932 for the gradient (session 15).  The pooled
#: encoder: gradient x input at ``alpha=0.5`` (zero baseline), better there (0.961 and 0.968 against
#: 0.943 and 0.959 for edit occlusion) and cheaper.  A :class:`NeuronAttributor` reads the encoder,
#: so it takes the encoder's default.
DEFAULT_METHODS = {"decoder_eos": "edit_gradient", "encoder_mean": "gradient_x_input"}
#: the baseline token a method uses when ``baselines=None``
DEFAULT_BASELINE = {"ig": "pad", "gradient_x_input": "zero", "mask_occlusion": "mask", "shapley": "mask",
                    "edit_occlusion": "edit", "edit_gradient": "edit"}
#: the numeric precisions of the model's forward (and backward) pass.  ``"int8"`` (:data:`FORWARD_ONLY`
#: methods on a CPU only): the passes without gradients on an int8 copy of the model
#: (:func:`bartsmiles.model.precision.int8_copy`), the passes with gradients in fp32.  ``"auto"``:
#: int8 for :data:`FORWARD_ONLY` methods on a CPU (:func:`.inputs.native_int8`); else bf16 where the
#: device multiplies it in hardware (:func:`.inputs.native_bf16`); else fp32
PRECISIONS = ("fp32", "bf16", "int8", "auto")
#: ``precision=None``: the gradient methods stay in fp32 (bf16 gradients move the scores: README,
#: Attribution); edit occlusion and ``edit_gradient`` take ``"auto"``: on a CPU their edits in int8
#: and their gradient in fp32, about 1.9 and 1.8 times as fast as in bf16 on 2 cores of an Intel
#: Xeon, with the same ground-truth AUCs (README, Attribution); on a GPU, bf16
DEFAULT_PRECISION = {"ig": "fp32", "gradient_x_input": "fp32", "mask_occlusion": "fp32", "shapley": "fp32",
                     "edit_occlusion": "auto", "edit_gradient": "auto"}
#: the methods whose forward-only passes (for ``edit_gradient``, its edits; its gradient stays on the
#: model: under autocast in bf16, in fp32 for int8) run on a copy of the model in bf16 or int8 rather than under autocast
#: (:func:`bartsmiles.model.precision.bf16_copy`: no casts between bf16 and float32 ops, a tenth
#: faster; :func:`bartsmiles.model.precision.int8_copy`)
FORWARD_ONLY = frozenset({"edit_occlusion", "edit_gradient"})
#: ``batch_size=None``: molecules per IG batch; sequences per forward pass for the other methods
DEFAULT_BATCH_SIZE = {"ig": 16, "gradient_x_input": 64, "mask_occlusion": 256, "shapley": 256, "edit_occlusion": 256,
                      "edit_gradient": 256}


@dataclass(frozen=True)
class RunOptions:
    """Everything :meth:`Attributor.attribute` was asked, checked (see its docstring)."""

    baselines: str
    n_steps: int
    integration: str
    internal_batch_size: Optional[int]
    batch_size: int
    replace_specials: bool
    tolerance: float
    on_delta: str
    return_convergence_delta: bool
    n_samples: int
    estimator: str
    features: str
    attached: bool
    occlude_decoder: bool
    seed: int
    nt_samples: int = 0
    nt_stdev: float = 0.1
    environment_radius: int = DEFAULT_ENVIRONMENT_RADIUS
    alpha: float = DEFAULT_ALPHA
    joint_copies: bool = True
    branch_fill: bool = True


def default_method(head_input: str) -> str:
    """The default method (:data:`DEFAULT_METHODS`) for a model whose head reads ``head_input``."""
    if head_input not in DEFAULT_METHODS:
        raise AttributionError(f"no default attribution method for head_input {head_input!r}: give method=")
    return DEFAULT_METHODS[head_input]


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`; else :class:`AttributionError` listing them."""
    if method not in METHODS:
        raise AttributionError(f"unknown attribution method {method!r}: choose one of {', '.join(METHODS)}")
    return method


def _check_options(method: str, opts: RunOptions) -> None:
    """Reject option values that cannot work for ``method`` (one-line :class:`AttributionError`)."""
    if opts.on_delta not in ("warn", "raise", "ignore"):
        raise AttributionError(f"on_delta must be 'warn', 'raise' or 'ignore', got {opts.on_delta!r}")
    if opts.batch_size < 1:
        raise AttributionError(f"batch_size must be >= 1, got {opts.batch_size}")
    for name in ("joint_copies", "branch_fill"):  # a string such as "no" would silently count as on
        if not isinstance(getattr(opts, name), (bool, np.bool_)):
            raise AttributionError(f"{name} must be True or False, got {getattr(opts, name)!r}")
    try:
        check_radius(opts.environment_radius)
        if method in ("gradient_x_input", "edit_gradient"):
            check_alpha(opts.alpha)
    except ValueError as exc:
        raise AttributionError(str(exc)) from None
    if method == "edit_gradient" and opts.baselines not in ("edit", "zero"):
        raise AttributionError(f"edit_gradient takes its gradient from a zero baseline; got baselines={opts.baselines!r}")
    if method == "ig" and int(opts.n_steps) < 2:
        raise AttributionError(f"n_steps must be >= 2 (Captum's integration needs two points), got {opts.n_steps}")
    if method == "ig" and (int(opts.nt_samples) < 0 or not float(opts.nt_stdev) >= 0):
        raise AttributionError(f"nt_samples must be >= 0 and nt_stdev >= 0, got {opts.nt_samples} and {opts.nt_stdev}")
    if method == "shapley":
        if opts.estimator not in ESTIMATORS:
            raise AttributionError(f"estimator must be one of {ESTIMATORS}, got {opts.estimator!r}")
        if opts.features not in FEATURES:
            raise AttributionError(f"features must be one of {FEATURES}, got {opts.features!r}")
        if int(opts.n_samples) < 1:
            raise AttributionError(f"n_samples must be >= 1, got {opts.n_samples}")


def _edit_variant(opts: RunOptions) -> str:
    """The edit-occlusion part of ``Attribution.method``: its options that are on."""
    return ("atom edit" + ("+joint copies" if opts.joint_copies else "")
            + ("+branch fill" if opts.branch_fill else ""))


def _variant(method: str, opts: RunOptions) -> tuple[str, int, bool]:
    """(``Attribution.method``, ``Attribution.n_steps``, additive) for ``method`` run with ``opts``."""
    if method == "ig":
        if int(opts.nt_samples) > 0:  # SmoothGrad: a mean over noisy inputs, complete for none of them
            return f"smoothgrad{int(opts.nt_samples)}+{opts.integration}", int(opts.n_steps), False
        return opts.integration, int(opts.n_steps), True
    if method == "mask_occlusion":
        return ("atom+attached" if opts.attached else "atom") + ("+decoder" if opts.occlude_decoder else ""), 1, False
    if method == "edit_occlusion":
        return _edit_variant(opts), 1, False
    if method == "edit_gradient":
        return _edit_variant(opts) + f" + gradient at alpha={float(opts.alpha):g}", 1, False
    if method == "gradient_x_input":
        plain = float(opts.alpha) == 1.0
        return ("gradient_x_input" if plain else f"gradient at alpha={float(opts.alpha):g}"), 1, False
    sampling = opts.estimator == "sampling"
    return f"{opts.estimator}/{opts.features}", int(opts.n_samples) if sampling else 1, sampling


def _attribution(mol: Molecule, scores: MethodScores, *, environment_radius: int, **fields) -> Attribution:
    """The :class:`Attribution` of one molecule: token scores mapped to atoms unless the method scored atoms,
    and the atom scores' environment scores within ``environment_radius`` bonds (:mod:`.environment`)."""
    specials = [float(v) for v in scores.special_scores.values()]
    if scores.atom_scores is None:
        mapped = map_token_scores(mol.alignment, scores.token_scores, mol.n_atoms, special_scores=specials)
        atom_scores, remainder, rules = mapped.atom_scores, mapped.remainder, mapped.rule
    else:
        _, rules = token_atom_matrix(mol.alignment, mol.n_atoms)
        atom_scores = np.asarray(scores.atom_scores, dtype=np.float64)
        remainder = float(np.sum(scores.token_scores) + sum(specials) - atom_scores.sum())
    total = float(np.sum(scores.token_scores) + sum(specials))
    delta = scores.delta if scores.delta is not None else total - (scores.output - scores.baseline_output)
    return Attribution(smiles=mol.smiles, tokens=list(mol.alignment.tokens), token_scores=scores.token_scores,
                       special_scores=dict(scores.special_scores), atom_scores=atom_scores, remainder=remainder,
                       output=scores.output, baseline_output=scores.baseline_output, delta=float(delta),
                       alignment=mol.alignment, token_rule=rules, environment_radius=environment_radius,
                       environment_scores=environment_scores(parse_smiles(mol.smiles), atom_scores, environment_radius),
                       **fields)


def ensemble_members(model_or_checkpoint) -> list:
    """The models an :class:`Attributor` explains together: the members of a fitted estimator
    (``n_models``, in member order), the items of a list or tuple, or the one model given."""
    if hasattr(model_or_checkpoint, "_get_predictors"):  # a fitted BartSmilesClassifier / BartSmilesRegressor
        return list(model_or_checkpoint._get_predictors())
    if isinstance(model_or_checkpoint, (list, tuple)):
        if not model_or_checkpoint:
            raise AttributionError("an ensemble needs at least one model; got an empty list")
        return list(model_or_checkpoint)
    return [model_or_checkpoint]


class _Base:
    """Shared machinery: loading, checking inputs, the method dispatch and the completeness check."""

    def __init__(self, model_or_checkpoint, *, need_head: bool, method: Optional[str], precision: Optional[str] = None,
                 device=None):
        if method is not None:  # checked before anything is loaded
            check_method(method)
        if precision is not None and precision not in PRECISIONS:
            raise AttributionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        target_device = resolve_device(device) if device is not None else None
        loaded = load_model(model_or_checkpoint, need_head=need_head)
        self.model = loaded.model if target_device is None else loaded.model.to(target_device)
        self.vocab = loaded.vocab
        self.tokenizer = loaded.tokenizer
        self.meta = loaded.meta
        self.max_positions = loaded.max_positions
        self.canonical = loaded.canonical
        self.device = next(self.model.parameters()).device
        #: the method in use (``None`` resolved by what the model reads: :data:`DEFAULT_METHODS`)
        self.method = method if method is not None else default_method(self._reads())
        precision = DEFAULT_PRECISION[self.method] if precision is None else precision
        if precision == "int8" and self.method not in FORWARD_ONLY:
            raise AttributionError(f"precision 'int8' is only for {' and '.join(sorted(FORWARD_ONLY))} "
                                   f"(their passes without gradients); the method is {self.method!r}")
        if precision == "int8" and self.device.type != "cpu":
            raise AttributionError(f"precision 'int8' runs on the CPU only; the model is on {self.device} (use bf16)")
        int8 = precision == "int8" or (precision == "auto" and self.method in FORWARD_ONLY and native_int8(self.device))
        bf16 = precision == "bf16" or (precision == "auto" and native_bf16(self.device))
        #: the precision in use, ``"fp32"``, ``"bf16"`` or ``"int8"`` (``"auto"`` resolved for this
        #: device and method: :data:`PRECISIONS`)
        self.precision = "int8" if int8 else "bf16" if bf16 else "fp32"
        self._copy = None  # the bfloat16 or int8 copy that forward-only methods run (_forward_only_model)
        #: the other members of an ensemble (:class:`Attributor` only), each run like this one; empty for one model
        self.members: list = []

    def _reads(self) -> str:
        """What the attributed quantity is read from, a key of :data:`DEFAULT_METHODS`."""
        return str(self.meta.get("head_input", "decoder_eos"))

    def prepare(self, smiles) -> list[Molecule]:
        """Check and encode ``smiles`` (errors name the input index; see :func:`.inputs.prepare_molecules`).

        A model trained on canonical SMILES (the default since ``smiles_form`` was recorded) reads
        each input rewritten to canonical form, so that is what is attributed: ``Attribution.smiles``
        is the canonical SMILES and its atom indices are RDKit's numbering of it."""
        return prepare_molecules(smiles, self.tokenizer, self.vocab, self.max_positions, self.canonical)

    def _encode(self, smiles: str) -> tuple[int, ...]:
        """The ids the model reads for ``smiles``, without an atom alignment (:func:`.inputs.encode_smiles`)."""
        return encode_smiles(smiles, self.tokenizer, self.vocab, self.max_positions, self.canonical)

    def _precision(self):
        """bfloat16 autocast of the model's matrix products for ``precision="bf16"``
        (:func:`bartsmiles.model.precision.bf16_inference`); a no-op for fp32 and int8 (whose
        passes with gradients run in fp32)."""
        return bf16_inference(self.model, enabled=self.precision == "bf16")

    def _forward(self, emb, src, lengths, prev, model=None) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def _forward_only_model(self):
        """The model that edit occlusion (no gradients) and :meth:`predict_outputs` for it run: in
        bf16, a bfloat16 copy of ``self.model`` (:func:`bartsmiles.model.precision.bf16_copy`); in
        int8, an int8 copy (:func:`bartsmiles.model.precision.int8_copy`), each made once; else, and
        for the gradient methods, ``self.model`` itself."""
        if self.precision == "fp32" or self.method not in FORWARD_ONLY:
            return self.model
        if self._copy is None:
            self._copy = bf16_copy(self.model) if self.precision == "bf16" else int8_copy(self.model)
        return self._copy

    def _running(self, model):
        """The context ``model`` runs in: a bf16 or int8 copy as it is (torch's GELU swapped in,
        :func:`bartsmiles.model.precision.torch_gelu`), ``self.model`` under :meth:`_precision`
        (autocast in bf16)."""
        return torch_gelu(model) if model is not self.model else self._precision()

    @staticmethod
    def _select(out: torch.Tensor, target) -> torch.Tensor:
        return out[:, target] if target is not None and out.dim() == 2 else out.reshape(out.shape[0])

    def _score_model(self, target, model=None) -> ScoreModel:
        """The attributed scalar per sequence (``target`` of :meth:`_forward`), as the methods see it;
        ``model``: :meth:`_forward_only_model` for a method without gradients (default ``self.model``)."""
        model = self.model if model is None else model

        def score(emb, src, lengths, prev):
            with self._running(model):
                return self._select(self._forward(emb, src, lengths, prev, model=model), target).float()

        return ScoreModel(score=score, embed=model.encoder.embed_tokens, pad=int(self.vocab.pad),
                          device=self.device)

    def _scores(self, molecules: Sequence[Molecule], target, opts: RunOptions) -> list[MethodScores]:
        """Run ``self.method`` on ``molecules`` (input order kept)."""
        if self.method == "edit_occlusion":  # no baseline token, no gradient: the molecule itself is edited
            model = self._score_model(target, self._forward_only_model())
            return edit_occlusion(model, molecules, encode=self._encode, batch_size=opts.batch_size,
                                  joint_copies=bool(opts.joint_copies), branch_fill=bool(opts.branch_fill))
        if self.method == "edit_gradient":  # the edits on the forward-only model, the gradient on self.model
            return edit_gradient(self._score_model(target, self._forward_only_model()), self._score_model(target),
                                 molecules, encode=self._encode, batch_size=opts.batch_size,
                                 gradient_batch_size=min(opts.batch_size, DEFAULT_BATCH_SIZE["gradient_x_input"]),
                                 joint_copies=bool(opts.joint_copies), branch_fill=bool(opts.branch_fill),
                                 alpha=float(opts.alpha),
                                 replace_specials=opts.replace_specials)
        model = self._score_model(target)
        if self.method == "gradient_x_input" and opts.baselines == "zero":
            return gradient_x_input(model, molecules, baseline_id=None, batch_size=opts.batch_size,
                                    replace_specials=opts.replace_specials, alpha=float(opts.alpha))
        baseline_id = baseline_token_id(self.vocab, opts.baselines)
        if self.method == "ig":
            return integrated_gradients(model, molecules, baseline_id=baseline_id, n_steps=int(opts.n_steps),
                                        method=opts.integration, internal_batch_size=opts.internal_batch_size,
                                        batch_size=opts.batch_size, replace_specials=opts.replace_specials,
                                        nt_samples=int(opts.nt_samples), nt_stdev=float(opts.nt_stdev), seed=opts.seed)
        if self.method == "gradient_x_input":
            return gradient_x_input(model, molecules, baseline_id=baseline_id, batch_size=opts.batch_size,
                                    replace_specials=opts.replace_specials, alpha=float(opts.alpha))
        if self.method == "mask_occlusion":
            return mask_occlusion(model, molecules, mask_id=baseline_id, attached=opts.attached,
                                  occlude_decoder=opts.occlude_decoder, batch_size=opts.batch_size)
        return shapley(model, molecules, baseline_id=baseline_id, n_samples=int(opts.n_samples),
                       estimator=opts.estimator, features=opts.features, replace_specials=opts.replace_specials,
                       batch_size=opts.batch_size, seed=opts.seed)

    def _options(self, baselines: Optional[str], batch_size: Optional[int], **values) -> RunOptions:
        """:class:`RunOptions` with the method's defaults for ``baselines=None`` / ``batch_size=None``."""
        return RunOptions(baselines=DEFAULT_BASELINE[self.method] if baselines is None else baselines,
                          batch_size=DEFAULT_BATCH_SIZE[self.method] if batch_size is None else int(batch_size),
                          **values)

    def _run(self, smiles, *, target, target_name: str, quantity: str, opts: RunOptions) -> list[Attribution]:
        _check_options(self.method, opts)
        molecules = self.prepare(smiles)
        scores = self._scores(molecules, target, opts)
        if self.members:  # an ensemble: the attribution of the members' mean output (result.mean_scores)
            runs = [scores] + [m._scores(molecules, target, opts) for m in self.members]
            scores = [mean_scores(per_model) for per_model in zip(*runs)]
        variant, n_steps, additive = _variant(self.method, opts)
        results = []
        for mol, s in zip(molecules, scores):
            a = _attribution(mol, s, target=int(target) if target is not None else int(getattr(self, "_neuron", -1)),
                             target_name=target_name, quantity=quantity, converged=None, baseline=opts.baselines,
                             n_steps=n_steps, method=variant, attribution_method=self.method,
                             environment_radius=int(opts.environment_radius))
            if additive:  # IG's completeness check, for every additive method
                a.converged = bool(abs(a.delta) <= opts.tolerance * max(abs(a.output - a.baseline_output), 1e-3))
            results.append(a)
        self._check_convergence(results, opts)
        if not opts.return_convergence_delta:
            for a in results:
                a.delta = float("nan")
        return results

    def _check_convergence(self, results: Sequence[Attribution], opts: RunOptions) -> None:
        """Warn or raise (``opts.on_delta``) when an additive method's scores do not add up."""
        bad = [a for a in results if a.converged is False]
        if not bad or opts.on_delta == "ignore":
            return
        worst = max(bad, key=lambda a: abs(a.delta))
        if self.method == "ig":
            what, hint = "integrated gradients", f"increase n_steps (now {opts.n_steps})"
        else:
            what, hint = "Shapley sampling", "it is complete by construction, so this is float round-off: raise tolerance"
        message = (f"{what} did not converge for {len(bad)} of {len(results)} molecule(s): "
                   f"worst |delta| = {abs(worst.delta):.3g} for {worst.smiles!r} "
                   f"(F(x) - F(baseline) = {worst.output - worst.baseline_output:.3g}, tolerance {opts.tolerance:g} "
                   f"relative); {hint}")
        if opts.on_delta == "raise":
            raise ConvergenceError(message)
        warnings.warn(message, ConvergenceWarning, stacklevel=4)


class Attributor(_Base):
    """Attributions of a fine-tuned BARTSmiles property model (see the module docstring).

    ``model_or_checkpoint``: a fine-tuned checkpoint (``.pt`` or a folder holding ``model.pt`` /
    ``checkpoint_best.pt``), a :class:`bartsmiles.model.predictor.PropertyPredictor` or a fitted
    :class:`bartsmiles.estimators.BartSmilesClassifier` / ``BartSmilesRegressor``; or an
    **ensemble**: a list of those (fine-tunes of the same task: one vocabulary, head and outputs),
    or a fitted estimator with ``n_models > 1``.  An ensemble's attribution is that of the members'
    mean output -- what the estimator predicts for ``output="prediction"``; for ``"logit"`` the
    mean of the members' logits -- and since every method is linear in the attributed function it
    is the mean of the members' attributions, exactly (:func:`.result.mean_scores`); it costs one
    run per member.  The first member is ``self``, the others are in ``self.members``.
    ``output``: ``"logit"`` (the head's raw output, default) or ``"prediction"`` (probability for
    classification, value in original units for regression).  ``method``: one of :data:`METHODS`
    (``None``, the default: :data:`DEFAULT_METHODS` for what the model's head reads --
    ``"edit_gradient"`` for the decoder head, ``"gradient_x_input"`` for the encoder head).
    ``precision``: ``"fp32"``, ``"bf16"`` -- for the gradient methods the model's matrix products
    under bfloat16 autocast (inputs, gradients and scores stay float32), 1.2 to 1.3 times faster on
    2 cores of a CPU with AVX512-BF16; for edit occlusion and the edits of ``edit_gradient``
    (:data:`FORWARD_ONLY`) a bfloat16 copy of
    the model, about 1.5 times faster on an AMD EPYC, no faster on an Intel Xeon; scores differ
    slightly (README, Attribution) --, ``"int8"`` -- for :data:`FORWARD_ONLY` methods only, on a CPU
    only: their passes without gradients on an int8 copy of the model, the gradient of
    ``edit_gradient`` in fp32 -- or ``"auto"``: int8 for :data:`FORWARD_ONLY` methods on a CPU
    (:func:`.inputs.native_int8`), else bf16 where the device has it in hardware
    (:func:`.inputs.native_bf16`), else fp32
    (:data:`PRECISIONS`); ``None``: the method's :data:`DEFAULT_PRECISION`.
    ``self.precision`` is the one in use.  ``device``: where the model runs (``"cpu"``, ``"cuda"``,
    ``"auto"``: :func:`bartsmiles.model.device.resolve_device`); ``None`` leaves it where it is (the
    CPU for a checkpoint path).  A model object passed in is moved, not copied.
    """

    def __init__(self, model_or_checkpoint, *, output: str = "logit", method: Optional[str] = None,
                 precision: Optional[str] = None, device=None):
        if output not in ("logit", "prediction"):
            raise AttributionError(f"output must be 'logit' or 'prediction', got {output!r}")
        sources = ensemble_members(model_or_checkpoint)
        super().__init__(sources[0], need_head=True, method=method, precision=precision, device=device)
        self.output = output
        self.head = self.meta.get("classification_head_name", "smiles_property")
        if self.head not in self.model.classification_heads:
            raise AttributionError(f"the model has no classification head {self.head!r}")
        self.task_names = list(self.meta.get("task_names") or [])
        self.n_outputs = int(self.model.classification_heads[self.head].out_proj.out_features)
        #: the decoder head computed with its last layer at the final ``</s>`` only (the same function,
        #: about a tenth less work: :mod:`bartsmiles.model.eos_forward`); else fairseq's own forward
        self.eos_only = self._reads() == "decoder_eos" and eos_only_supported(self.model)
        self.members = [Attributor(source, output=output, method=self.method, precision=precision, device=device)
                        for source in sources[1:]]
        for i, member in enumerate(self.members, start=1):
            self._check_member(i, member)
        self.max_positions = min([self.max_positions] + [m.max_positions for m in self.members])

    def _check_member(self, index: int, member: "Attributor") -> None:
        """An ensemble's member ``index`` must read what the first reads and give the same outputs."""
        checks = {"vocabulary": (list(self.vocab.symbols), list(member.vocab.symbols)),
                  "SMILES form": (self.canonical, member.canonical),
                  "head input": (self._reads(), member._reads()),
                  "number of outputs": (self.n_outputs, member.n_outputs),
                  "task names": (self.task_names, member.task_names),
                  "task type": (self.meta.get("task_type"), member.meta.get("task_type"))}
        for what, (first, other) in checks.items():
            if first != other:
                shown = "differs" if what == "vocabulary" else f"{other!r} against {first!r}"
                raise AttributionError(f"ensemble member {index} is not a model of the same task as member 0: "
                                       f"its {what} {shown}")

    @property
    def n_members(self) -> int:
        """How many models are explained together (1 for one model)."""
        return 1 + len(self.members)

    def _forward(self, emb, src, lengths, prev, model=None):
        model = self.model if model is None else model
        if self.eos_only:
            logits = decoder_eos_logits(model, src, lengths, prev, self.head, token_embeddings=emb)
        else:
            logits, _ = model(src, lengths, prev, features_only=True, classification_head_name=self.head,
                              token_embeddings=emb, return_all_hiddens=False)
        if self.output == "prediction":
            logits = to_predictions(logits.float(), self.meta)  # label scaling in float32, whatever the model's dtype
        return logits

    def _target(self, target) -> tuple[int, str]:
        if isinstance(target, str):
            if target not in self.task_names:
                raise TargetError(f"target {target!r} is not an output of this model; outputs: {self.task_names}")
            target = self.task_names.index(target)
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise TargetError(f"target must be an output index or name, got {target!r}")
        if not 0 <= int(target) < self.n_outputs:
            raise TargetError(f"target {int(target)} is out of range: the model has {self.n_outputs} output(s) "
                              f"(0..{self.n_outputs - 1}: {self.task_names})")
        name = self.task_names[int(target)] if int(target) < len(self.task_names) else str(int(target))
        return int(target), name

    def predict_outputs(self, smiles) -> np.ndarray:
        """``(n, n_outputs)`` of the attributed quantity (logits by default) for ``smiles``, computed
        as the method computes it (in bf16, edit occlusion's bfloat16 copy of the model; in int8, its
        int8 copy, whose outputs move by about 0.01 with the other sequences in a batch); for an
        ensemble the members' mean."""
        molecules = self.prepare(smiles)  # once: the members read the same ids (_check_member)
        return np.mean([m._own_outputs(molecules) for m in [self, *self.members]], axis=0)

    def _own_outputs(self, molecules: Sequence[Molecule]) -> np.ndarray:
        """:meth:`predict_outputs` of this model alone (not its ensemble members), for prepared molecules."""
        out = np.zeros((len(molecules), self.n_outputs), dtype=np.float64)
        model = self._forward_only_model()
        with torch.no_grad():  # not inference_mode: fairseq caches its decoder mask (see .occlusion)
            for idx in length_batches([len(m.ids) for m in molecules], DEFAULT_BATCH_SIZE["mask_occlusion"]):
                batch = make_batch([molecules[i].ids for i in idx], int(self.vocab.pad), self.device)
                x = model.encoder.embed_tokens(batch.src)
                with self._running(model):
                    logits = self._forward(x, batch.src, batch.lengths, batch.prev, model=model)
                out[idx] = logits.double().cpu().numpy().reshape(len(idx), -1)
        return out

    def attribute(self, smiles, target: int | str = 0, baselines: Optional[str] = None, n_steps: int = 50, *,
                  return_convergence_delta: bool = True, internal_batch_size: Optional[int] = None,
                  method: str = "gausslegendre", batch_size: Optional[int] = None, replace_specials: bool = False,
                  tolerance: float = 0.05, on_delta: str = "warn", n_samples: int = 25, estimator: str = "sampling",
                  features: str = "tokens", attached: bool = False, occlude_decoder: bool = False,
                  seed: int = 0, nt_samples: int = 0, nt_stdev: float = 0.1,
                  environment_radius: int = DEFAULT_ENVIRONMENT_RADIUS,
                  alpha: float = DEFAULT_ALPHA, joint_copies: bool = True,
                  branch_fill: bool = True) -> list[Attribution]:
        """One :class:`Attribution` per SMILES (a string is one SMILES), in input order.

        Every method: ``target`` -- output index (or task name); ``baselines`` -- ``"pad"`` |
        ``"mask"`` | ``"eos"``, the token put in place of the molecule's tokens, or ``"zero"``
        (``gradient_x_input`` only: a zero embedding); ``None``: ``"pad"`` for ``ig``, ``"zero"``
        for ``gradient_x_input``, ``"mask"`` for ``mask_occlusion`` / ``shapley``;
        ``replace_specials`` -- also replace ``<s>``/``</s>`` (not for occlusion);
        ``batch_size`` -- for ``ig`` molecules integrated together (default 16), for the other
        methods the most sequences in one forward pass (:data:`DEFAULT_BATCH_SIZE`);
        ``tolerance``/``on_delta`` -- the completeness check of the additive methods;
        ``return_convergence_delta=False`` sets ``delta`` to NaN.

        ``ig``: ``n_steps``, ``method`` (Captum's integration rule) and ``internal_batch_size``
        as in Captum (``None``: about :data:`~.integrated_gradients.IG_TOKEN_BUDGET` tokens per
        pass); ``nt_samples > 0`` -- SmoothGrad, the mean over that many noisy copies of the input
        embeddings (noise std ``nt_stdev`` times their range; seeded by ``seed``), not additive.
        ``mask_occlusion``: ``attached`` -- also mask the atom's bond / branch / ring-closure
        tokens; ``occlude_decoder`` -- mask the decoder's input too.  ``shapley``:
        ``n_samples`` permutations, ``estimator`` (``"sampling"`` | ``"ablation"``), ``features``
        (``"tokens"`` | ``"atoms"``), ``seed`` (also the noise's, for SmoothGrad).  Options of other methods are ignored.

        ``gradient_x_input``: ``alpha`` in ``(0, 1]`` -- the gradient is taken at ``baseline + alpha *
        (input - baseline)`` (default :data:`~.gradient_x_input.DEFAULT_ALPHA`, 0.5: one step of
        integrated gradients, where a confident model is not saturated; 1: plain gradient x input).
        ``edit_occlusion``: ``joint_copies`` -- also delete each group of repeated terminal
        heteroatoms (two chlorines, a CF3's fluorines) at once and share the joint drop among them
        (default ``True``; :mod:`.edit_occlusion`); ``branch_fill`` -- score each atom without an
        edit that is not in a ring (the carbonyl carbon of an amide) by the sum of its edited
        neighbours' scores (default ``True``; :func:`.edit_occlusion.fill_branches`).
        ``edit_gradient``: ``joint_copies``, ``branch_fill`` and ``alpha`` (its gradient is always
        from a zero baseline).

        Every method: ``environment_radius`` (default :data:`~.environment.DEFAULT_ENVIRONMENT_RADIUS`,
        2) -- ``Attribution.environment_scores`` is each atom's score plus ``1/d`` times the mean
        score of the atoms ``d`` bonds away, ``d = 1..radius`` (:mod:`.environment`); the drawings
        show it, and the ground-truth table chose it.  ``0``: the atom scores themselves.
        ``atom_scores`` are the same whatever the radius.

        Raises :class:`InvalidSmilesError` (naming the SMILES and its index),
        :class:`SmilesTooLongError` (length and limit), :class:`TargetError`,
        :class:`AttributionError` (an option that cannot work).
        """
        index, name = self._target(target)
        what = "probability" if self.meta.get("task_type") == "classification" else "predicted value"
        quantity = f"{'logit' if self.output == 'logit' else what} of output {index} ({name})"
        if self.members:
            quantity = f"mean {quantity}, {self.n_members} models"
        opts = self._options(baselines, batch_size, n_steps=n_steps, integration=method,
                             internal_batch_size=internal_batch_size, replace_specials=replace_specials,
                             tolerance=tolerance, on_delta=on_delta, return_convergence_delta=return_convergence_delta,
                             n_samples=n_samples, estimator=estimator, features=features, attached=attached,
                             occlude_decoder=occlude_decoder, seed=seed, nt_samples=nt_samples, nt_stdev=nt_stdev,
                             environment_radius=environment_radius, alpha=alpha, joint_copies=joint_copies,
                             branch_fill=branch_fill)
        return self._run(smiles, target=index, target_name=name, quantity=quantity, opts=opts)

    def hidden_outputs(self, smiles, atom_sets: Sequence[Sequence[Sequence[int]]], target: int | str = 0, *,
                       batch_size: Optional[int] = None) -> list[np.ndarray]:
        """The attributed output of each molecule, and of it with each of its atom sets hidden behind
        ``<mask>`` (an atom's tokens and those joining it, in what the encoder and the decoder read;
        :func:`.faithfulness.hidden_outputs`): per molecule an array of ``1 + len(atom_sets[m])``
        values, the molecule's own output first.  ``atom_sets[m]``: sets of RDKit atom indices of
        the SMILES the model reads (:meth:`prepare`; canonical for a canonical model).  Run as the
        method's passes without gradients run (in int8 on a CPU for the edit methods); for an
        ensemble the members' mean.  ``batch_size``: sequences per pass (default that of ``mask_occlusion``).

        Raises :class:`AttributionError` for atom sets that do not fit the molecules."""
        index, _ = self._target(target)
        return self._hidden_outputs(self.prepare(smiles), atom_sets, index, batch_size)

    def _hidden_outputs(self, molecules: Sequence[Molecule], atom_sets, index: int,
                        batch_size: Optional[int]) -> list[np.ndarray]:
        """:meth:`hidden_outputs` of prepared molecules and a checked output index."""
        size = DEFAULT_BATCH_SIZE["mask_occlusion"] if batch_size is None else int(batch_size)
        mask_id = baseline_token_id(self.vocab, "mask")
        try:
            runs = [hidden_outputs(m._score_model(index, m._forward_only_model()), molecules, atom_sets,
                                   mask_id=mask_id, batch_size=size) for m in [self, *self.members]]
        except ValueError as exc:
            raise AttributionError(f"hidden atoms: {exc}") from None
        return [np.mean(per_model, axis=0) for per_model in zip(*runs)]

    def deletion_check(self, attributions: Sequence[Attribution], *, k: Optional[int] = None,
                       n_random: int = DEFAULT_CHECK_DRAWS, seed: int = 0, scores: str = "environment",
                       batch_size: Optional[int] = None) -> list[DeletionCheck]:
        """Is each map what the model reads?  Hide the ``k`` atoms it ranks first (default 3) and
        ``n_random`` random sets of ``k`` atoms (seeded by ``seed`` and the SMILES), and compare the
        falls of the attributed output (:mod:`.faithfulness`: ``DeletionCheck.gain`` and ``.rank``).
        ``attributions``: results of :meth:`attribute` of this attributor, all of one target;
        ``scores``: rank by ``"environment"`` scores (what the drawings show, the default) or
        ``"atoms"``.  For an ensemble, the falls of the members' mean output.

        Raises :class:`AttributionError` for an option that cannot work or results of several targets.
        """
        if scores not in ("environment", "atoms"):
            raise AttributionError(f"scores must be 'environment' or 'atoms', got {scores!r}")
        attributions = [attributions] if isinstance(attributions, Attribution) else list(attributions)
        if not all(isinstance(a, Attribution) for a in attributions):
            raise AttributionError("deletion_check takes the Attribution results of attribute()")
        if not attributions:
            return []
        targets = sorted({a.target for a in attributions})
        if len(targets) > 1:
            raise AttributionError(f"deletion_check: the results attribute outputs {targets}; check one at a time")
        molecules = self.prepare([a.smiles for a in attributions])
        ranking = [a.environment_scores if scores == "environment" else a.atom_scores for a in attributions]
        try:
            sets = check_atom_sets(molecules, ranking, k=k, n_random=n_random, seed=seed)
        except ValueError as exc:
            raise AttributionError(f"deletion_check: {exc}") from None
        index, _ = self._target(targets[0])
        return make_checks(molecules, sets, self._hidden_outputs(molecules, sets, index, batch_size))


class NeuronAttributor(_Base):
    """Attributions of one pooled encoder feature (a "neuron") of a frozen model.

    The quantity is feature ``k`` of the encoder output pooled over the molecule, as
    :meth:`bartsmiles.model.pretrained.PretrainedModel.encode` computes it (``pooling="mean"`` over all non-pad
    positions, ``<s>``/``</s>`` included; ``"bos"``; ``"eos"``) -- the features the neuron probe
    (:mod:`bartsmiles.evaluation.probe`) selects from.  Every method of :class:`Attributor` works
    (``method``; default that of an encoder head, :data:`DEFAULT_METHODS`), on a wrapper that
    returns that neuron from the encoder's input embeddings.
    ``model``: a :class:`bartsmiles.model.pretrained.PretrainedModel` or one model that :class:`Attributor`
    takes (a fine-tuned model's encoder is used; its head is ignored).  Not an ensemble: feature
    ``k`` of one member is not feature ``k`` of another, so a list is an error and a fitted
    estimator with ``n_models > 1`` gives its first member.  ``precision`` and ``device``
    as for :class:`Attributor`.
    """

    def __init__(self, model, *, pooling: str = "mean", method: Optional[str] = None, precision: Optional[str] = None,
                 device=None):
        if isinstance(model, (list, tuple)):
            raise AttributionError(f"a neuron is a feature of one model: give one model, not a list of {len(model)}")
        super().__init__(model, need_head=False, method=method, precision=precision, device=device)
        if pooling not in ("mean", "bos", "eos"):
            raise AttributionError(f"pooling must be 'mean', 'bos' or 'eos', got {pooling!r}")
        self.pooling = pooling
        self.n_neurons = int(self.model.encoder.embed_tokens.embedding_dim)
        self._neuron = 0

    def _reads(self) -> str:
        return "encoder_mean"  # a pooled encoder feature, whatever head the model has

    def features(self, emb, src, lengths, model=None):
        model = self.model if model is None else model
        out = model.encoder(src, src_lengths=lengths, token_embeddings=emb)
        states = out["encoder_out"][0].transpose(0, 1)  # (B, L, d)
        if self.pooling == "bos":
            return states[:, 0]
        if self.pooling == "eos":
            return states[torch.arange(states.shape[0], device=states.device), lengths - 1]
        mask = src.ne(int(self.vocab.pad)).unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1)

    def _forward(self, emb, src, lengths, prev, model=None):
        return self.features(emb, src, lengths, model)[:, self._neuron]

    def attribute(self, smiles, neuron: int, baselines: Optional[str] = None, n_steps: int = 50, *,
                  return_convergence_delta: bool = True, internal_batch_size: Optional[int] = None,
                  method: str = "gausslegendre", batch_size: Optional[int] = None, replace_specials: bool = False,
                  tolerance: float = 0.05, on_delta: str = "warn", n_samples: int = 25, estimator: str = "sampling",
                  features: str = "tokens", attached: bool = False, occlude_decoder: bool = False,
                  seed: int = 0, nt_samples: int = 0, nt_stdev: float = 0.1,
                  environment_radius: int = DEFAULT_ENVIRONMENT_RADIUS,
                  alpha: float = DEFAULT_ALPHA, joint_copies: bool = True,
                  branch_fill: bool = True) -> list[Attribution]:
        """One :class:`Attribution` of neuron ``neuron`` per SMILES (arguments as :meth:`Attributor.attribute`)."""
        if isinstance(neuron, bool) or not isinstance(neuron, (int, np.integer)) or not 0 <= int(neuron) < self.n_neurons:
            raise TargetError(f"neuron {neuron!r} is out of range: the encoder has {self.n_neurons} features "
                              f"(0..{self.n_neurons - 1})")
        self._neuron = int(neuron)
        quantity = f"encoder feature {int(neuron)} ({self.pooling}-pooled)"
        opts = self._options(baselines, batch_size, n_steps=n_steps, integration=method,
                             internal_batch_size=internal_batch_size, replace_specials=replace_specials,
                             tolerance=tolerance, on_delta=on_delta, return_convergence_delta=return_convergence_delta,
                             n_samples=n_samples, estimator=estimator, features=features, attached=attached,
                             occlude_decoder=occlude_decoder, seed=seed, nt_samples=nt_samples, nt_stdev=nt_stdev,
                             environment_radius=environment_radius, alpha=alpha, joint_copies=joint_copies,
                             branch_fill=branch_fill)
        return self._run(smiles, target=None, target_name=f"neuron {int(neuron)}", quantity=quantity, opts=opts)
