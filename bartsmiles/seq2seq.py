"""SMILES-to-SMILES fine-tuning (retrosynthesis, forward reaction prediction): the model.

* :class:`~bartsmiles.training.seq2seq.Seq2SeqConfig` -- the typed config;
  :func:`~bartsmiles.training.seq2seq.seq2seq_args` turns it (purely) into the ``fairseq-train``
  argument list of the ``smiles_seq2seq`` task (:mod:`bartsmiles.tasks.seq2seq`).
* :class:`BartSmilesSeq2Seq` -- ``fit(sources, targets)`` writes the pairs to
  ``SAVE_DIR/data/{train,valid}.csv`` and trains through :func:`bartsmiles.training.runner.fairseq_train`,
  the same code path as the documented command; ``generate`` runs fairseq's
  ``SequenceGenerator`` (beam search) on the loaded model; ``save``/``load`` a model folder.
* :func:`merge_candidates` and :func:`aggregate_beams` -- how ``generate`` merges candidates
  that are the same molecule set and ranks them over the beams of test-time augmentation.
* Scoring against references (top-k accuracy) is :func:`bartsmiles.evaluation.retro.topk_accuracy`.

The equivalent command line (``BartSmilesSeq2Seq.fit`` runs exactly ``model.argv``)::

    fairseq-train DATA --user-dir $(bartsmiles user-dir) --task smiles_seq2seq \\
        --direction retro --reaction-layout product_first \\
        --arch bartsmiles_small --restore-file pretrained.pt \\
        --reset-optimizer --reset-dataloader --reset-meters --reset-lr-scheduler \\
        --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \\
        --optimizer adam --lr 1e-4 --lr-scheduler polynomial_decay ... --save-dir runs/retro

with ``DATA`` a folder holding ``train``/``valid`` files (``retrosynthesis-train.smi`` etc. work
as they are).  Generation from the command line::

    fairseq-generate DATA --user-dir $(bartsmiles user-dir) --task smiles_seq2seq \\
        --path runs/retro/checkpoint_best.pt --gen-subset test --beam 10 --nbest 10 --batch-size 32 \\
        --required-batch-size-multiple 1

prints ``H-``/``D-`` lines whose ``D-`` text is the plain SMILES (the task's detokenizer); the
dictionary comes from the checkpoint.  Pass ``--required-batch-size-multiple 1``: with fairseq's
default of 8, ``batch_by_size`` silently drops a last batch whose size is not a multiple of 8,
so up to 7 test reactions (all of them, for fewer than 8) would never be generated.

Scores
------
``generate`` returns, per input, a list of ``(smiles, score)`` ranked best first.  Without
test-time augmentation the score is fairseq's hypothesis score: the mean log-probability per
generated token (natural log; length penalty 1), the number beam search ranks by.  With
``canonicalize=True`` candidates that are the same molecule set are merged (the best score is
kept) and written canonically; invalid SMILES are kept as generated, or dropped with
``drop_invalid=True``.

Test-time augmentation (``augment=n``): the input and ``n`` random SMILES of it are each decoded
with beam search; the canonical candidates are then ranked by

* ``aggregate="prob"`` -- the sum over the ``n + 1`` beams of ``exp(score)`` (the per-token
  probability of the candidate in that beam; 0 where it is absent); the returned score is that
  sum;
* ``aggregate="rank"`` -- the sum of reciprocal ranks ``1 / rank`` (rank 1 = best in its beam);
  the returned score is that sum.

Ties are broken by the candidate's first appearance (the un-augmented beam first).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from fairseq import utils as fairseq_utils

from bartsmiles.core.chem import canonicalize_set_or_none, parse_smiles
from bartsmiles.core.reactions import rooted_views
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import CheckpointError, InvalidSmilesError, Seq2SeqError
from bartsmiles.model.checkpoint import export_model, load_fairseq_state
from bartsmiles.model.device import resolve_device
from bartsmiles.model.resolve import resolve_checkpoint
from bartsmiles.tasks.seq2seq import STATE_KEY, SmilesSeq2SeqTask, randomize_molecules
from bartsmiles.tasks.seq2seq_data import split_file
from bartsmiles.training.config import continue_from_last
from bartsmiles.training.finetuning import reset_fairseq_best
from bartsmiles.training.runner import fairseq_train
from bartsmiles.training.seq2seq import Seq2SeqConfig, continues_run, resolve_config, seq2seq_args

__all__ = ["BartSmilesSeq2Seq", "RetroCandidate", "RetroResult", "retrosynthesis", "merge_candidates",
           "aggregate_beams", "rooted_or_given", "AGGREGATES", "VIEWS"]

logger = logging.getLogger(__name__)


def _count_lines(path: Path) -> int:
    """Pairs in a split file (upper bound: non-blank lines / CSV rows), for the schedule."""
    with open(path, encoding="utf-8") as fh:
        n = sum(1 for line in fh if line.strip())
    return max(1, n - 1) if path.suffix.lower() == ".csv" else max(1, n)


def _write_pairs(path: Path, sources: Sequence[str], targets: Sequence[str]) -> None:
    if len(sources) != len(targets):
        raise Seq2SeqError(f"{len(sources)} sources but {len(targets)} targets")
    if not len(sources):
        raise Seq2SeqError("no pairs to train on")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source", "target"])
        for s, t in zip(sources, targets):
            writer.writerow([str(s).strip(), str(t).strip()])


# ------------------------------------------------------------------------- candidates

AGGREGATES = ("prob", "rank")
#: how test-time views of an input are spelled (:meth:`BartSmilesSeq2Seq.generate`)
VIEWS = ("random", "rooted")


def _randomized_or_given(smiles: str, rng: np.random.Generator) -> str:
    """A random SMILES of each molecule of ``smiles``; an input RDKit cannot parse stays as given."""
    try:
        return randomize_molecules(smiles, rng)
    except ValueError:
        return smiles


def rooted_or_given(smiles: str, k: int, seed: int) -> list[str]:
    """``k`` rooted spellings of ``smiles``; an input RDKit cannot parse stays as given (``k`` times)."""
    try:
        return rooted_views(smiles, k, seed)
    except ValueError:
        return [smiles] * k


def merge_candidates(cands: Sequence[tuple[str, float]], drop_invalid: bool = False) -> list[tuple[str, float]]:
    """Candidates that are the same molecule set merged (best score kept), written canonically, best first.

    An invalid SMILES is kept as generated, or dropped with ``drop_invalid``.
    """
    out: dict[str, float] = {}
    for s, score in cands:
        key = canonicalize_set_or_none(s)
        if key is None:
            if drop_invalid:
                continue
            key = s
        if key not in out or score > out[key]:
            out[key] = score
    return sorted(out.items(), key=lambda kv: -kv[1])


def aggregate_beams(beams: Sequence[Sequence[tuple[str, float]]], how: str, n_best: int,
                    drop_invalid: bool = False) -> list[tuple[str, float]]:
    """Rank aggregation of the canonical candidates of several beams (module docstring: Scores)."""
    totals: dict[str, float] = {}
    for cands in beams:
        seen = set()
        for rank, (s, score) in enumerate(cands, start=1):
            key = canonicalize_set_or_none(s)
            if key is None:
                if drop_invalid:
                    continue
                key = s
            if key in seen:  # the same molecule set twice in one beam counts once (its best rank)
                continue
            seen.add(key)
            totals[key] = totals.get(key, 0.0) + (math.exp(score) if how == "prob" else 1.0 / rank)
    order = sorted(totals.items(), key=lambda kv: -kv[1])  # stable: first appearance wins ties
    return order[:n_best]


# ------------------------------------------------------------------------------------- model


class BartSmilesSeq2Seq:
    """A BART SMILES translator: ``fit`` (fairseq training) then ``generate`` (beam search)."""

    def __init__(self, config: Optional[Seq2SeqConfig] = None, **overrides):
        self.config = dataclasses.replace(config or Seq2SeqConfig(), **overrides)
        self.argv: Optional[list[str]] = None
        self.checkpoint: Optional[str] = None
        self.model = None
        self.task = None
        self.seconds: Optional[float] = None

    # training -----------------------------------------------------------------------------
    def fit(self, sources: Sequence[str], targets: Sequence[str],
            valid_sources: Optional[Sequence[str]] = None, valid_targets: Optional[Sequence[str]] = None
            ) -> "BartSmilesSeq2Seq":
        """Train on the pairs (validation: the given pairs, else the training pairs themselves).

        The pairs go to ``SAVE_DIR/data/train.csv`` and ``valid.csv`` (columns ``source,target``;
        pair ``i`` is on line ``i + 2``, which is what data errors name).
        """
        data = Path(self.config.save_dir) / "data"
        _write_pairs(data / "train.csv", sources, targets)
        if valid_sources is None:
            valid_sources, valid_targets = sources, targets
        _write_pairs(data / "valid.csv", valid_sources, valid_targets)
        cfg = dataclasses.replace(self.config, data=str(data), source_column="source", target_column="target")
        return self._train(cfg, n_train=len(sources))

    def fit_data(self, data: Optional[str] = None) -> "BartSmilesSeq2Seq":
        """Train on a data folder (``config.data`` by default) as the ``fairseq-train`` command would."""
        cfg = dataclasses.replace(self.config, data=data or self.config.data)
        return self._train(cfg, n_train=_count_lines(split_file(cfg.data, "train")))

    def _train(self, cfg: Seq2SeqConfig, n_train: int) -> "BartSmilesSeq2Seq":
        t0 = time.perf_counter()
        cfg = resolve_config(cfg)
        self.config = cfg
        self.argv = seq2seq_args(cfg, n_train)
        save = Path(cfg.save_dir)
        if continues_run(cfg):
            self.argv = continue_from_last(self.argv)
            logger.info("continuing the run in %s from checkpoint_last.pt", save)
        save.mkdir(parents=True, exist_ok=True)
        (save / "seq2seq_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
        (save / "fairseq_train_argv.json").write_text(json.dumps(self.argv, indent=2))
        reset_fairseq_best()
        fairseq_train(self.argv)
        best = save / "checkpoint_best.pt"
        self._load_checkpoint(best if best.is_file() else save / "checkpoint_last.pt")
        self.seconds = round(time.perf_counter() - t0, 2)
        return self

    # loading ------------------------------------------------------------------------------
    def _load_checkpoint(self, path) -> None:
        state = load_fairseq_state(path)
        task_state = state.get("task_state") or {}
        if STATE_KEY not in task_state:
            raise CheckpointError(f"{path} is not a smiles_seq2seq checkpoint (no task_state[{STATE_KEY!r}])")
        cfg = state["cfg"]
        task = SmilesSeq2SeqTask.for_inference(cfg.task, task_state)
        model = task.build_model(cfg.model)
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
        self.model, self.task, self.checkpoint = model.float().eval(), task, str(path)

    def to(self, device: "str | torch.device", half: bool = False) -> "BartSmilesSeq2Seq":
        """Move the model to ``device`` (``"cuda"``, ``"cpu"``); generation follows it.

        ``half=True`` casts the weights to float16 (a GPU only; about twice as fast there)."""
        if self.model is None:
            raise Seq2SeqError("no model: fit() or load() first")
        device = resolve_device(device)
        if half and device.type == "cpu":
            raise Seq2SeqError("half precision needs a GPU")
        self.model = self.model.to(device)
        self.model = self.model.half() if half else self.model.float()
        return self

    @property
    def source_views(self) -> str:
        """How the model's training sources were spelled (``random`` or ``rooted``), from its checkpoint."""
        if self.task is None:
            raise Seq2SeqError("no model: fit() or load() first")
        return str(self.task.meta.get("source_views", "random"))

    @classmethod
    def load(cls, path) -> "BartSmilesSeq2Seq":
        """A trained model from a checkpoint file, model folder or run folder (:func:`~bartsmiles.model.resolve.resolve_checkpoint`)."""
        self = cls()
        self._load_checkpoint(resolve_checkpoint(path))
        return self

    def save(self, folder) -> Path:
        """Write ``folder/model.pt`` (+ ``dict.txt``), loadable with :meth:`load`; returns the file."""
        if self.checkpoint is None:
            raise Seq2SeqError("nothing to save: fit() or load() first")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        symbols = self.task.meta["dictionary"]
        symbols = symbols[:-1] if symbols[-1] == "<mask>" else symbols
        Vocabulary(symbols=list(symbols), counts=[0] * len(symbols)).save(folder / "dict.txt")
        return export_model(self.checkpoint, folder, fp16=False, dict_path=folder / "dict.txt",
                            extra_metadata={"task": "smiles_seq2seq"})

    # generation ---------------------------------------------------------------------------
    def _beam(self, smiles: Sequence[str], beam: int, n_best: int, batch_size: int, max_len_b: int):
        """Raw beams: per input a list of (generated SMILES, fairseq score), best first."""
        if self.model is None:
            raise Seq2SeqError("no model: fit() or load() first")
        gen_args = argparse.Namespace(beam=beam, nbest=n_best, max_len_a=0.0, max_len_b=max_len_b, min_len=1,
                                      lenpen=1.0, unkpen=0.0, temperature=1.0, no_repeat_ngram_size=0)
        generator = self.task.build_generator([self.model], gen_args)
        device = next(self.model.parameters()).device
        encoded = []
        for i, s in enumerate(smiles):
            try:
                encoded.append(self.task.encode_source(s))
            except ValueError as exc:
                raise Seq2SeqError(f"input {i} ({s!r}) cannot be encoded: {exc}") from None
        out: list = [None] * len(smiles)
        order = sorted(range(len(smiles)), key=lambda i: -len(encoded[i]))
        dictionary = self.task.target_dictionary
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            tokens = [torch.tensor(encoded[i]) for i in chunk]
            lengths = [len(t) for t in tokens]
            ds = self.task.build_dataset_for_inference(tokens, lengths)
            sample = ds.collater([ds[j] for j in range(len(chunk))])
            if device.type != "cpu":
                sample = fairseq_utils.move_to_cuda(sample, device)
            hypos = self.task.inference_step(generator, [self.model], sample)
            for row, sample_id in enumerate(sample["id"].tolist()):
                i = chunk[sample_id]
                cands = []
                for h in hypos[row][:n_best]:
                    ids = [t for t in h["tokens"].tolist() if t not in (dictionary.bos(), dictionary.eos(), dictionary.pad())]
                    cands.append(("".join(dictionary[t] for t in ids), float(h["score"])))
                out[i] = cands
        return out

    def generate(self, smiles: Sequence[str], beam: int = 10, n_best: int = 10, canonicalize: bool = True,
                 drop_invalid: bool = False, augment: int = 0, aggregate: str = "prob", batch_size: int = 32,
                 max_len: int = 200, seed: int = 0, views: Optional[str] = None) -> list[list[tuple[str, float]]]:
        """Candidates per input SMILES, best first, as ``(smiles, score)`` (module docstring: scores).

        ``augment=n`` adds ``n`` more spellings of each input (seeded by ``seed``) and ranks the
        canonical candidates by ``aggregate`` (``"prob"`` or ``"rank"``); it implies canonicalization.
        ``views="random"``: the input as given plus ``n`` random SMILES; ``views="rooted"``: the
        canonical SMILES plus ``n`` SMILES started from other atoms
        (:func:`bartsmiles.core.reactions.rooted_views`), the spellings a root-aligned model was
        trained on. ``None``: as the checkpoint records (its task's ``source_views``).
        """
        if isinstance(smiles, str):
            raise TypeError("generate takes a sequence of SMILES, not one string: wrap it in a list")
        if n_best > beam:
            raise Seq2SeqError(f"n_best ({n_best}) cannot exceed beam ({beam})")
        if aggregate not in AGGREGATES:
            raise Seq2SeqError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if views is None:
            views = self.source_views
        if views not in VIEWS:
            raise Seq2SeqError(f"views must be one of {VIEWS}, got {views!r}")
        smiles = [str(s).strip() for s in smiles]
        if not smiles:
            return []
        with torch.no_grad():
            if views == "rooted":
                spellings = [list(v) for v in zip(*(rooted_or_given(s, augment + 1, seed) for s in smiles))]
            else:
                spellings = [smiles]
                rng = np.random.default_rng(seed)
                for _ in range(augment):
                    spellings.append([_randomized_or_given(s, rng) for s in smiles])
            beams = [self._beam(v, beam, n_best, batch_size, max_len) for v in spellings]
        if augment > 0:
            return [aggregate_beams([b[i] for b in beams], aggregate, n_best, drop_invalid) for i in range(len(smiles))]
        results = beams[0]
        if canonicalize:
            results = [merge_candidates(c, drop_invalid) for c in results]
        elif drop_invalid:
            results = [[(s, p) for s, p in c if canonicalize_set_or_none(s) is not None] for c in results]
        return results


# ---------------------------------------------------------------------------- retrosynthesis


@dataclass(frozen=True)
class RetroCandidate:
    """One proposed set of reactants (canonical SMILES, ``'.'``-joined) and its score (module docstring: Scores)."""

    reactants: str
    score: float


@dataclass
class RetroResult:
    """The candidates for one product, best first.

    ``invalid_dropped`` counts generated SMILES that did not parse; ``unchanged_dropped`` counts
    candidates that were the product itself (no disconnection), which are not answers either.
    """

    product: str
    candidates: list[RetroCandidate]
    invalid_dropped: int
    unchanged_dropped: int = 0

    def to_dict(self) -> dict:
        return {"product": self.product, "candidates": [dataclasses.asdict(c) for c in self.candidates],
                "invalid_dropped": self.invalid_dropped, "unchanged_dropped": self.unchanged_dropped}


def retrosynthesis(products: Sequence[str], model: "str | BartSmilesSeq2Seq" = "retro", *, top_k: int = 10,
                   beam: int = 10, augment: int = 0, views: Optional[str] = None,
                   batch_size: int = 32) -> list[RetroResult]:
    """Reactant sets for each product SMILES, best first (at most ``top_k`` each).

    ``model`` is a loaded :class:`BartSmilesSeq2Seq`, a checkpoint path, or a shipped model's name
    (``"retro"``, :data:`bartsmiles.model.resolve.SHIPPED_NAMES`). Every product must parse
    (:class:`~bartsmiles.errors.InvalidSmilesError` names the input index otherwise). Candidates
    that are not valid SMILES are never returned: they are dropped and counted; so are candidates
    that only give the product back (the same canonical molecule set).
    """
    if isinstance(products, str):
        raise TypeError("retrosynthesis takes a sequence of SMILES, not one string: wrap it in a list")
    if top_k < 1 or top_k > beam:
        raise Seq2SeqError(f"top_k must lie in 1..beam ({beam}), got {top_k}")
    products = [str(s).strip() for s in products]
    for index, smiles in enumerate(products):
        try:
            parse_smiles(smiles)
        except InvalidSmilesError as error:
            raise InvalidSmilesError(smiles, index=index, reason=error.reason) from None
    loaded = model if isinstance(model, BartSmilesSeq2Seq) else BartSmilesSeq2Seq.load(model)
    beams = loaded.generate(products, beam=beam, n_best=beam, canonicalize=True, drop_invalid=False,
                            augment=augment, views=views, batch_size=batch_size)
    results = []
    for product, candidates in zip(products, beams):
        sets = [(canonicalize_set_or_none(s), score) for s, score in candidates]  # None: invalid
        valid = [(s, score) for s, score in sets if s is not None]
        unchanged = canonicalize_set_or_none(product)
        answers = [(s, score) for s, score in valid if s != unchanged]
        results.append(RetroResult(product, [RetroCandidate(s, float(score)) for s, score in answers[:top_k]],
                                   invalid_dropped=len(candidates) - len(valid),
                                   unchanged_dropped=len(valid) - len(answers)))
    return results
