"""SMILES-to-SMILES fine-tuning (retrosynthesis, forward reaction prediction) and its top-k metric.

* :class:`Seq2SeqConfig` -- a typed config; :func:`seq2seq_args` turns it (purely) into the
  ``fairseq-train`` argument list of the ``smiles_seq2seq`` task (:mod:`bartsmiles.tasks.seq2seq`).
* :class:`BartSmilesSeq2Seq` -- ``fit(sources, targets)`` writes the pairs to
  ``SAVE_DIR/data/{train,valid}.csv`` and trains through :func:`bartsmiles.training.fairseq_train`,
  the same code path as the documented command; ``generate`` runs fairseq's
  ``SequenceGenerator`` (beam search) on the loaded model; ``save``/``load`` a model folder.
* :func:`topk_accuracy` -- top-k exact match after RDKit canonicalization of the whole molecule
  set (order-independent), plus the fraction of invalid top-1 SMILES.

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

import csv
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .config import help_field as _help, runtime_args

logger = logging.getLogger(__name__)

CRITERIA = ("label_smoothed_cross_entropy", "cross_entropy")
AGGREGATES = ("prob", "rank")




class Seq2SeqError(ValueError):
    """A seq2seq setup that cannot work (missing file, empty data, bad option)."""


@dataclass
class Seq2SeqConfig:
    """Fine-tune a pretrained BARTSmiles to translate SMILES (retrosynthesis by default)."""

    data: str = _help("folder with train/valid[/test] files (S.smi, S.csv or *-S.smi); fit() writes its own", default="")
    pretrained: str = _help("pretrained checkpoint to start from (must exist); empty: random initialization", default="")
    save_dir: str = _help("where checkpoints, dict.txt and reports go", default="runs/seq2seq")
    dict: str = _help("dictionary; empty: dict.txt beside the pretrained checkpoint, else in DATA, else the shipped one", default="")
    arch: str = _help("model shape; empty: read from the pretrained checkpoint (bartsmiles_small without one)", default="")
    model_args: tuple[str, ...] = _help("explicit model-shape flags; filled from the pretrained checkpoint by fit()", default=())
    direction: str = _help("reaction files: retro (product -> reactants) or forward (reactants -> product)", default="retro")
    reaction_layout: str = _help("reaction files: product_first (PRODUCT >> REACTANTS) or reactants_first (R>>P)", default="product_first")
    source_column: str = _help("CSV files: source SMILES column", default="source")
    target_column: str = _help("CSV files: target SMILES column", default="target")
    skip_invalid: bool = _help("leave bad lines out (reported) instead of failing", default=False)
    check_smiles: bool = _help("parse every SMILES with RDKit while reading", default=True)
    randomize_smiles: float = _help("augmentation: probability of rewriting a training pair as random SMILES per epoch", default=0.0)
    keep_target: bool = _help("with randomize_smiles: rewrite the source only, keep the target as written", default=False)
    criterion: str = _help("label_smoothed_cross_entropy | cross_entropy", default="label_smoothed_cross_entropy")
    label_smoothing: float = _help("label smoothing (label_smoothed_cross_entropy only)", default=0.1)
    epochs: int = _help("training epochs", default=30)
    batch_size: int = _help("pairs per batch", default=32)
    update_freq: int = _help("accumulate gradients over this many batches", default=1)
    lr: float = _help("peak learning rate", default=1e-4)
    warmup_ratio: float = _help("fraction of the updates spent in linear warmup", default=0.06)
    dropout: float = _help("dropout", default=0.1)
    attention_dropout: float = _help("attention dropout", default=0.1)
    weight_decay: float = _help("Adam weight decay", default=0.01)
    clip_norm: float = _help("gradient clipping norm", default=1.0)
    adam_betas: tuple[float, float] = _help("Adam betas", default=(0.9, 0.999))
    adam_eps: float = _help("Adam epsilon", default=1e-8)
    max_positions: int = _help("longest source/target in tokens, <s> and </s> included (must match the model)", default=128)
    seed: int = _help("training seed (initialization, dropout, batch order, augmentation)", default=1)
    cpu: Optional[bool] = _help("force CPU (True) or not (False); None: CPU exactly when no GPU is visible", default=None)
    precision: str = _help("fp32 | fp16 | bf16 (half precision needs a GPU)", default="fp32")
    num_workers: int = _help("data-loading worker processes", default=0)
    log_interval: int = _help("log every N updates", default=50)
    log_file: str = _help("also write fairseq's log to this file", default="")
    epoch_checkpoints: bool = _help("keep checkpoint<N>.pt per epoch (else only best and last)", default=False)
    extra_args: tuple[str, ...] = _help("further fairseq-train flags, passed through verbatim", default=())


# ------------------------------------------------------------------------------ config -> argv


def updates_per_epoch(n_train: int, batch_size: int, update_freq: int = 1) -> int:
    return math.ceil(math.ceil(n_train / batch_size) / update_freq)


def seq2seq_args(cfg: Seq2SeqConfig, n_train: int, user_dir: Optional[str] = None) -> list[str]:
    """The ``fairseq-train`` argument list for ``cfg`` (without the program name); pure.

    ``n_train`` (training pairs) fixes, with ``epochs``, ``batch_size`` and ``update_freq``,
    the total number of updates of the polynomial-decay schedule and the warmup length.
    """
    if not cfg.data:
        raise Seq2SeqError("Seq2SeqConfig.data is empty")
    if not cfg.arch:
        raise Seq2SeqError("Seq2SeqConfig.arch is empty (fit() reads it from the pretrained checkpoint)")
    if cfg.criterion not in CRITERIA:
        raise Seq2SeqError(f"criterion must be one of {CRITERIA}, got {cfg.criterion!r}")
    if cfg.direction not in ("retro", "forward"):
        raise Seq2SeqError(f"direction must be 'retro' or 'forward', got {cfg.direction!r}")
    if cfg.reaction_layout not in ("product_first", "reactants_first"):
        raise Seq2SeqError(f"reaction_layout must be 'product_first' or 'reactants_first', got {cfg.reaction_layout!r}")
    if cfg.precision not in ("fp32", "fp16", "bf16"):
        raise Seq2SeqError(f"precision must be fp32, fp16 or bf16, got {cfg.precision!r}")
    if not 0.0 <= cfg.randomize_smiles <= 1.0:
        raise Seq2SeqError(f"randomize_smiles is a probability, got {cfg.randomize_smiles}")
    if n_train < 1 or cfg.batch_size < 1 or cfg.epochs < 1 or cfg.update_freq < 1:
        raise Seq2SeqError(f"n_train, batch_size, epochs and update_freq must be >= 1 (got {n_train}, "
                           f"{cfg.batch_size}, {cfg.epochs}, {cfg.update_freq})")
    if not 0.0 <= cfg.warmup_ratio < 1.0:
        raise Seq2SeqError(f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    if user_dir is None:
        from bartsmiles.tasks import USER_DIR as user_dir
    total = cfg.epochs * updates_per_epoch(n_train, cfg.batch_size, cfg.update_freq)
    args = [
        cfg.data,
        "--user-dir", user_dir,
        "--task", "smiles_seq2seq",
        "--direction", cfg.direction,
        "--reaction-layout", cfg.reaction_layout,
        "--source-column", cfg.source_column,
        "--target-column", cfg.target_column,
        "--max-source-positions", str(cfg.max_positions),
        "--max-target-positions", str(cfg.max_positions),
    ]
    if cfg.dict:
        args += ["--dict", cfg.dict]
    if cfg.skip_invalid:
        args += ["--skip-invalid"]
    if not cfg.check_smiles:
        args += ["--no-check-smiles"]
    if cfg.randomize_smiles > 0:
        args += ["--randomize-smiles", str(cfg.randomize_smiles)]
        if cfg.keep_target:
            args += ["--keep-target"]
    args += ["--criterion", cfg.criterion]
    if cfg.criterion == "label_smoothed_cross_entropy":
        args += ["--label-smoothing", str(cfg.label_smoothing)]
    args += [
        "--arch", cfg.arch,
        *cfg.model_args,
        "--dropout", str(cfg.dropout),
        "--attention-dropout", str(cfg.attention_dropout),
        "--optimizer", "adam",
        "--adam-betas", f"({cfg.adam_betas[0]}, {cfg.adam_betas[1]})",
        "--adam-eps", str(cfg.adam_eps),
        "--weight-decay", str(cfg.weight_decay),
        "--clip-norm", str(cfg.clip_norm),
        "--lr-scheduler", "polynomial_decay",
        "--lr", str(cfg.lr),
        "--total-num-update", str(total),
        "--warmup-updates", str(int(round(cfg.warmup_ratio * total))),
        "--max-epoch", str(cfg.epochs),
        "--max-update", str(total),
        "--batch-size", str(cfg.batch_size),
        "--update-freq", str(cfg.update_freq),
        "--required-batch-size-multiple", "1",
        "--seed", str(cfg.seed),
        "--num-workers", str(cfg.num_workers),
        "--save-dir", cfg.save_dir,
        "--log-format", "json",
        "--log-interval", str(cfg.log_interval),
        "--ignore-unused-valid-subsets",
    ]
    if not cfg.epoch_checkpoints:
        args += ["--no-epoch-checkpoints"]
    if cfg.pretrained:
        args += ["--restore-file", cfg.pretrained,
                 "--reset-optimizer", "--reset-dataloader", "--reset-meters", "--reset-lr-scheduler"]
    args += runtime_args(precision=cfg.precision, cpu=cfg.cpu, log_file=cfg.log_file)
    return args + list(cfg.extra_args)


def resolve_config(cfg: Seq2SeqConfig) -> Seq2SeqConfig:
    """Architecture and shape flags from the pretrained checkpoint; ``cpu`` when no GPU."""
    from .finetuning import resolve_model

    changes = resolve_model(cfg.pretrained, cfg.arch, cfg.model_args, cfg.cpu)
    return dataclasses.replace(cfg, **changes)


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
        from bartsmiles.tasks.seq2seq import split_file

        return self._train(cfg, n_train=_count_lines(split_file(cfg.data, "train")))

    def _train(self, cfg: Seq2SeqConfig, n_train: int) -> "BartSmilesSeq2Seq":
        import bartsmiles.tasks.seq2seq  # noqa: F401  (registers smiles_seq2seq)

        from .finetuning import _reset_fairseq_best
        from .training import fairseq_train

        t0 = time.perf_counter()
        cfg = resolve_config(cfg)
        self.config = cfg
        self.argv = seq2seq_args(cfg, n_train)
        save = Path(cfg.save_dir)
        save.mkdir(parents=True, exist_ok=True)
        (save / "seq2seq_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
        (save / "fairseq_train_argv.json").write_text(json.dumps(self.argv, indent=2))
        _reset_fairseq_best()
        fairseq_train(self.argv)
        best = save / "checkpoint_best.pt"
        self._load_checkpoint(best if best.is_file() else save / "checkpoint_last.pt")
        self.seconds = round(time.perf_counter() - t0, 2)
        return self

    # loading ------------------------------------------------------------------------------
    def _load_checkpoint(self, path) -> None:
        import bartsmiles.tasks.seq2seq  # noqa: F401
        from bartsmiles.tasks.seq2seq import STATE_KEY, SmilesSeq2SeqTask

        from .checkpoint import load_fairseq_state

        state = load_fairseq_state(path)
        task_state = state.get("task_state") or {}
        if STATE_KEY not in task_state:
            raise Seq2SeqError(f"{path} is not a smiles_seq2seq checkpoint (no task_state[{STATE_KEY!r}])")
        cfg = state["cfg"]
        task = SmilesSeq2SeqTask.for_inference(cfg.task, task_state)
        model = task.build_model(cfg.model)
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
        self.model, self.task, self.checkpoint = model.float().eval(), task, str(path)

    @classmethod
    def load(cls, path) -> "BartSmilesSeq2Seq":
        """A trained model from a checkpoint file or a folder (``model.pt``, ``checkpoint_best.pt`` or ``_last``)."""
        path = Path(path)
        if path.is_dir():
            found = [path / n for n in ("model.pt", "checkpoint_best.pt", "checkpoint_last.pt") if (path / n).is_file()]
            if not found:
                raise FileNotFoundError(f"no model.pt / checkpoint_best.pt / checkpoint_last.pt in {path}")
            path = found[0]
        elif not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        self = cls()
        self._load_checkpoint(path)
        return self

    def save(self, folder) -> Path:
        """Write ``folder/model.pt`` (+ ``dict.txt``), loadable with :meth:`load`; returns the file."""
        from .checkpoint import export_model

        if self.checkpoint is None:
            raise Seq2SeqError("nothing to save: fit() or load() first")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        from .vocab import Vocabulary

        symbols = self.task.meta["dictionary"]
        symbols = symbols[:-1] if symbols[-1] == "<mask>" else symbols
        Vocabulary(symbols=list(symbols), counts=[0] * len(symbols)).save(folder / "dict.txt")
        return export_model(self.checkpoint, folder, fp16=False, dict_path=folder / "dict.txt",
                            extra_metadata={"task": "smiles_seq2seq"})

    # generation ---------------------------------------------------------------------------
    def _beam(self, smiles: Sequence[str], beam: int, n_best: int, batch_size: int, max_len_b: int):
        """Raw beams: per input a list of (generated SMILES, fairseq score), best first."""
        import argparse

        import torch

        if self.model is None:
            raise Seq2SeqError("no model: fit() or load() first")
        gen_args = argparse.Namespace(beam=beam, nbest=n_best, max_len_a=0.0, max_len_b=max_len_b, min_len=1,
                                      lenpen=1.0, unkpen=0.0, temperature=1.0, no_repeat_ngram_size=0)
        generator = self.task.build_generator([self.model], gen_args)
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
                 max_len: int = 200, seed: int = 0) -> list[list[tuple[str, float]]]:
        """Candidates per input SMILES, best first, as ``(smiles, score)`` (module docstring: scores).

        ``augment=n`` adds ``n`` randomized copies of each input (seeded by ``seed``) and ranks the
        canonical candidates by ``aggregate`` (``"prob"`` or ``"rank"``); it implies canonicalization.
        """
        import torch

        if isinstance(smiles, str):
            raise TypeError("generate takes a sequence of SMILES, not one string: wrap it in a list")
        if n_best > beam:
            raise Seq2SeqError(f"n_best ({n_best}) cannot exceed beam ({beam})")
        if aggregate not in AGGREGATES:
            raise Seq2SeqError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        smiles = [str(s).strip() for s in smiles]
        with torch.no_grad():
            views = [smiles]
            if augment > 0:
                import numpy as np

                from bartsmiles.tasks.seq2seq import randomize_molecules

                rng = np.random.default_rng(seed)
                for _ in range(augment):
                    view = []
                    for s in smiles:
                        try:
                            view.append(randomize_molecules(s, rng))
                        except ValueError:
                            view.append(s)
                    views.append(view)
            beams = [self._beam(v, beam, n_best, batch_size, max_len) for v in views]
        if augment > 0:
            return [_aggregate([b[i] for b in beams], aggregate, n_best, drop_invalid) for i in range(len(smiles))]
        results = beams[0]
        if canonicalize:
            results = [_merge_canonical(c, drop_invalid) for c in results]
        elif drop_invalid:
            results = [[(s, p) for s, p in c if _canonical(s) is not None] for c in results]
        return results


def _canonical(smiles: str) -> Optional[str]:
    from .chem import InvalidSmilesError, canonicalize_set

    try:
        return canonicalize_set(smiles)
    except (InvalidSmilesError, TypeError):
        return None


def _merge_canonical(cands, drop_invalid: bool):
    out: dict[str, float] = {}
    for s, score in cands:
        key = _canonical(s)
        if key is None:
            if drop_invalid:
                continue
            key = s
        if key not in out or score > out[key]:
            out[key] = score
    return sorted(out.items(), key=lambda kv: -kv[1])


def _aggregate(beams, how: str, n_best: int, drop_invalid: bool):
    """Rank aggregation of the canonical candidates of several beams (module docstring)."""
    totals: dict[str, float] = {}
    for cands in beams:
        seen = set()
        for rank, (s, score) in enumerate(cands, start=1):
            key = _canonical(s)
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


# -------------------------------------------------------------------------------------- metric


def topk_accuracy(predictions: Sequence[Sequence], references: Sequence[str],
                  ks: Iterable[int] = (1, 3, 5, 10)) -> dict:
    """Top-k exact-match accuracy of ranked predictions against reference SMILES.

    ``predictions[i]`` is the ranked candidate list of input ``i``: SMILES strings or
    ``(smiles, score)`` pairs.  A candidate matches when RDKit's canonical form of its whole
    molecule set equals the reference's (:func:`bartsmiles.chem.canonicalize_set`: molecule
    order, atom order and SMILES spelling do not matter).  Top-k counts an input as correct when
    any of its first ``k`` candidates matches (candidates are taken as ranked, not deduplicated).
    Returns ``{"top1": .., "top3": .., ..., "n": N, "invalid_top1": fraction of inputs whose
    first candidate is not a valid SMILES (or that have no candidate)}``.
    A reference that RDKit cannot parse is an error naming its index.
    """
    from .chem import InvalidSmilesError, canonicalize_set

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
            keys.append(_canonical(str(s)))
        if not keys or keys[0] is None:
            invalid += 1
        first = next((r for r, key in enumerate(keys) if key == ref_key), None)
        for k in ks:
            hits[k] += first is not None and first < k
    out = {f"top{k}": (hits[k] / n if n else float("nan")) for k in ks}
    out["n"] = n
    out["invalid_top1"] = invalid / n if n else float("nan")
    return out


__all__ = ["Seq2SeqConfig", "Seq2SeqError", "BartSmilesSeq2Seq", "seq2seq_args", "resolve_config", "topk_accuracy"]
