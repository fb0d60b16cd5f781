"""Retrosynthesis evaluation: top-k accuracy against references, and the USPTO-50k benchmark.

* :func:`topk_accuracy` -- top-k exact match after RDKit canonicalization of the whole molecule
  set (order-independent), plus the fraction of invalid top-1 SMILES.
* :func:`run_retro_benchmark` -- ``bartsmiles benchmark-retro``: train or load a seq2seq model,
  generate on a split, score it, and write ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from bartsmiles.core.chem import canonicalize_set, canonicalize_set_or_none
from bartsmiles.core.files import check_writable
from bartsmiles.data.registry import locate
from bartsmiles.errors import InvalidSmilesError, Seq2SeqDataError, Seq2SeqError
from bartsmiles.evaluation.machine import machine_info
from bartsmiles.seq2seq import AGGREGATES, BartSmilesSeq2Seq
from bartsmiles.tasks.seq2seq_data import read_pairs, split_file
from bartsmiles.training.config import help_field
from bartsmiles.training.seq2seq import Seq2SeqConfig


def topk_accuracy(predictions: Sequence[Sequence], references: Sequence[str],
                  ks: Iterable[int] = (1, 3, 5, 10)) -> dict:
    """Top-k exact-match accuracy of ranked predictions against reference SMILES.

    ``predictions[i]`` is the ranked candidate list of input ``i``: SMILES strings or
    ``(smiles, score)`` pairs.  A candidate matches when RDKit's canonical form of its whole
    molecule set equals the reference's (:func:`bartsmiles.core.chem.canonicalize_set`: molecule
    order, atom order and SMILES spelling do not matter).  Top-k counts an input as correct when
    any of its first ``k`` candidates matches (candidates are taken as ranked, not deduplicated).
    Returns ``{"top1": .., "top3": .., ..., "n": N, "invalid_top1": fraction of inputs whose
    first candidate is not a valid SMILES (or that have no candidate)}``.
    A reference that RDKit cannot parse is an error naming its index.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} prediction lists but {len(references)} references")
    n = len(references)
    hits = {k: 0 for k in ks}
    invalid = 0
    for i, (cands, ref) in enumerate(zip(predictions, references)):
        try:
            ref_key = canonicalize_set(str(ref).strip())
        except InvalidSmilesError as exc:
            raise ValueError(f"reference {i} is not a valid SMILES: {exc}") from None
        keys = []
        for c in list(cands)[: ks[-1]]:
            s = c[0] if isinstance(c, (tuple, list)) else c
            keys.append(canonicalize_set_or_none(str(s)))
        if not keys or keys[0] is None:
            invalid += 1
        first = next((r for r, key in enumerate(keys) if key == ref_key), None)
        for k in ks:
            hits[k] += first is not None and first < k
    out = {f"top{k}": (hits[k] / n if n else float("nan")) for k in ks}
    out["n"] = n
    out["invalid_top1"] = invalid / n if n else float("nan")
    return out


# ------------------------------------------------------------------------------------ benchmark


@dataclass
class RetroBenchmarkConfig:
    """Settings of ``bartsmiles benchmark-retro``: train or load a seq2seq model, generate, score."""

    model: str = help_field("a trained smiles_seq2seq model (file, model folder or run folder), or with --train a "
                            "pretrained model", default="")
    train: bool = help_field("fine-tune MODEL on DATA's train/valid files first", default=False)
    data: str = help_field("folder with train/valid/test files (default: the USPTO-50k liu2017 split)", default="")
    split: str = help_field("split to generate on", default="test")
    limit: int = help_field("use only the first N reactions of the split (0: all)", default=0)
    beam: int = help_field("beam size (= candidates per reaction)", default=10)
    augment: int = help_field("test-time augmentation: randomized copies per product", default=0)
    aggregate: str = help_field("test-time augmentation rank aggregation: prob | rank", default="prob",
                                choices=AGGREGATES)
    views: str = help_field("test-time spellings: random | rooted; empty: as the model was trained (its checkpoint)",
                            default="")
    source_views: str = help_field("with --train: how DATA's sources are spelled: random, or rooted (a folder from "
                                   "bartsmiles prepare-retro)", default="random")
    batch_size: int = help_field("reactions per generation batch", default=32)
    epochs: int = help_field("with --train: epochs", default=30)
    lr: float = help_field("with --train: peak learning rate", default=1e-4)
    train_batch_size: int = help_field("with --train: pairs per batch", default=32)
    save_dir: str = help_field("with --train: checkpoints (and train.log)", default="runs/retro")
    seed: int = help_field("with --train: training seed", default=1)
    skip_invalid: bool = help_field(
        "leave bad lines (malformed, invalid SMILES) out of training and scoring, reported; valid test reactions "
        "longer than the model's positions always count as misses", default=False)
    max_hours: float = help_field("with --train: stop training after this many hours, saving a checkpoint (0: no "
                                  "limit); fairseq counts the training time stored in the MODEL checkpoint too",
                                  default=0.0)
    out: str = help_field("output prefix (.json, .md)", default="benchmarks/results/retro")


def _model_for(cfg: RetroBenchmarkConfig, data: str) -> BartSmilesSeq2Seq:
    if not cfg.train:
        return BartSmilesSeq2Seq.load(cfg.model)
    extra = ("--stop-time-hours", str(cfg.max_hours)) if cfg.max_hours else ()
    model = BartSmilesSeq2Seq(Seq2SeqConfig(
        data=data, pretrained=cfg.model, save_dir=cfg.save_dir, epochs=cfg.epochs, lr=cfg.lr,
        batch_size=cfg.train_batch_size, seed=cfg.seed, skip_invalid=cfg.skip_invalid, source_views=cfg.source_views,
        log_file=os.path.join(cfg.save_dir, "train.log"), extra_args=extra, resume=True))
    return model.fit_data()  # a killed (or --max-hours) run in the same --save-dir continues where it stopped


def _test_pairs(cfg: RetroBenchmarkConfig, model: BartSmilesSeq2Seq, data: str):
    """(line, source, target) of the split in file order; (line, None, None) for a reaction too long to read."""
    read_cfg = copy.copy(model.task.cfg)
    read_cfg.skip_invalid = True
    src_limit, tgt_limit = model.model.max_positions()  # the model's position tables, whatever the task says
    read_cfg.max_source_positions = min(int(read_cfg.max_source_positions), int(src_limit))
    read_cfg.max_target_positions = min(int(read_cfg.max_target_positions), int(tgt_limit))
    path = split_file(data, cfg.split)
    table, _, _ = read_pairs(path, read_cfg, model.task.vocab)  # with the vocabulary: lengths are checked
    # a valid reaction longer than the model's positions is scored as a miss (never dropped);
    # a malformed line is a data error, left out only with --skip-invalid
    too_long = [sk for sk in table.skipped if sk.too_long]
    bad = [sk for sk in table.skipped if not sk.too_long]
    if bad and not cfg.skip_invalid:
        listing = "; ".join(f"line {sk.line}: {sk.reason}" for sk in bad[:20])
        raise Seq2SeqDataError(f"{path}: {len(bad)} bad line(s): {listing}. Fix them, or pass --skip-invalid "
                               "to leave them out (reported)")
    pairs = sorted([(line, s, t) for line, s, t in zip(table.lines, table.sources, table.targets)]
                   + [(sk.line, None, None) for sk in too_long])
    return (pairs[: cfg.limit] if cfg.limit else pairs), bad


def run_retro_benchmark(cfg: RetroBenchmarkConfig, command: str = "") -> dict:
    """Train (``cfg.train``) or load a model, generate on ``cfg.split``, score; write OUT.json and OUT.md."""
    if not cfg.model:
        raise Seq2SeqError("benchmark-retro needs a model (--model)")
    if cfg.aggregate not in AGGREGATES:
        raise Seq2SeqError(f"aggregate must be one of {AGGREGATES}, got {cfg.aggregate!r}")
    out = Path(cfg.out)
    check_writable(out.with_suffix(".json"), make_folder=True)
    data = cfg.data or str(locate("uspto50k_train").parent)
    t0 = time.perf_counter()
    model = _model_for(cfg, data)
    t_train = time.perf_counter() - t0
    pairs, bad = _test_pairs(cfg, model, data)
    kept = [(s, t) for _, s, t in pairs if s is not None]
    unreadable = [line for line, s, _ in pairs if s is None]
    sources, targets = [s for s, _ in kept], [t for _, t in kept]
    t1 = time.perf_counter()
    preds = model.generate(sources, beam=cfg.beam, n_best=cfg.beam, augment=cfg.augment, views=cfg.views or None,
                           aggregate=cfg.aggregate, batch_size=cfg.batch_size)
    ks = [k for k in (1, 3, 5, 10) if k <= cfg.beam]
    scores = topk_accuracy(preds, targets, ks=ks)
    if unreadable:  # rescale to all reactions: an unreadable one is a miss (and an invalid top-1)
        n_all = len(pairs)
        for k in ks:
            scores[f"top{k}"] = scores[f"top{k}"] * len(kept) / n_all
        scores["invalid_top1"] = (scores["invalid_top1"] * len(kept) + len(unreadable)) / n_all
    scores["n"], scores["n_generated"] = len(pairs), len(kept)
    scores["unreadable_lines"] = unreadable
    scores["skipped_bad_lines"] = [{"line": sk.line, "reason": sk.reason} for sk in bad]
    result = {"command": command, "machine": machine_info(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": cfg.seed if cfg.train else None,
              "data": data, "split": cfg.split, "n": len(pairs), "model": cfg.model, "trained": cfg.train,
              "checkpoint": model.checkpoint, "beam": cfg.beam, "augment": cfg.augment,
              "aggregate": cfg.aggregate, "scores": scores, "train_s": round(t_train, 1),
              "generate_s": round(time.perf_counter() - t1, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(_markdown(result, ks))
    return result


def _markdown(result: dict, ks: Sequence[int]) -> str:
    scores, machine = result["scores"], result["machine"]
    head = "| model | n | " + " | ".join(f"top-{k}" for k in ks) + " | invalid top-1 |"
    row = (f"| {Path(result['model']).name} | {result['n']} | "
           + " | ".join(f"{scores[f'top{k}']:.3f}" for k in ks) + f" | {scores['invalid_top1']:.3f} |")
    where = (f"{machine.get('cpu', '?')}, {machine.get('usable_cpus', '?')} usable CPUs, "
             f"GPU: {machine.get('gpu') or 'none'}")
    what = "Training" if result["trained"] else "Loading the model"
    return "\n".join([f"Command: `{result['command']}`",
                      f"Machine: {where}. {what} {result['train_s']} s, generation {result['generate_s']} s.",
                      "", head, "|" + "---|" * (len(ks) + 3), row, ""])
