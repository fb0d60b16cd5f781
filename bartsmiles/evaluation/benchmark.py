"""The protocol runner of PROTOCOL.md: models x datasets x seeds on one split kind.

Models
------
``ecfp4_rf``
    The peer of :mod:`bartsmiles.evaluation.baselines` (ECFP4, one 500-tree forest per task).
``bartsmiles``
    :func:`bartsmiles.training.finetuning.finetune` from a pretrained checkpoint (``pretrained`` in the
    fine-tuning settings: a ``.pt`` file or a model folder holding ``model.pt``), scored on the
    test split with the best-validation checkpoint. The run's seed is fairseq's ``--seed``.
``bartsmiles_encoder_mean``
    The same fine-tuning from the pretrained checkpoint with ``head_input="encoder_mean"``: the head
    reads the mean-pooled encoder output and the decoder is never run
    (:mod:`bartsmiles.tasks.property_head`).
``bartsmiles_random_init``
    The same fine-tuning with no pretrained weights. When a pretrained model is given its
    shape (arch and sizes) and dictionary are used, so the two differ only in the weights.
``bartsmiles_frozen``
    :mod:`bartsmiles.evaluation.frozen`: a linear head (C chosen on validation) on the pretrained model's
    frozen, mean-pooled encoder features. Deterministic given the model: the seed only seeds
    the head's solver.
``bartsmiles_frozen_random_init``
    The same head on a randomly initialized encoder of the same shape and dictionary (the
    run's seed initializes it): the control that measures what pretraining put in.
``chemprop``
    Only recorded: ``not_installed`` when ``import chemprop`` fails, otherwise
    ``not_supported`` (this runner does not drive chemprop yet; PEERS.md has its numbers).

What each run records
---------------------
model, dataset, seed, split (kind and checksum of the indices), metric, value (test score),
per-task scores, sizes, ``wall_s`` and ``peak_rss_mb``, status (``ok``, ``error``,
``not_installed``, ``not_supported``), the error message, and the settings the run used.

* ``wall_s``: seconds from loading the dataset to the test score, inside the process that
  ran it (interpreter start-up and imports excluded). With isolation, ``process_wall_s`` is
  the whole subprocess, start-up included.
* ``peak_rss_mb``: with ``isolate=True`` (the default) every run is a fresh Python
  subprocess, and this is that process's peak resident set size
  (Linux ``VmHWM``, not ``ru_maxrss``, which Linux carries over ``exec`` from the parent;
  plus ``RUSAGE_CHILDREN`` if it started any) --
  honest per-run peak memory, *including* the interpreter and the imported libraries
  (numpy/scikit-learn/RDKit for the forest; torch/fairseq too for fine-tuning).
  Without isolation the runs share one process and ``ru_maxrss`` is a high-water mark over
  the whole process lifetime, so the value is an upper bound and ``memory_scope`` says so.

Outputs (``out`` is a path prefix)
----------------------------------
``<out>.json``: every run, the configuration, the machine, the command line and the date
(and the history of invocations that added runs). ``<out>.md``: a table of mean ± std over
the seeds that finished (``std`` is the population standard deviation, ``numpy.std`` with
``ddof=0``, so one seed shows ± 0.000 as in PEERS.md), n seeds, per model side by side,
with wall seconds per run and peak memory. ``<out>.png``: one bar panel per dataset.

Resuming: a results JSON that already holds an ``ok`` run for (model, dataset, seed, split)
skips it; failed runs are retried. The JSON is rewritten after every run, so an interrupted
benchmark loses at most the run in progress. Changing the settings of a model (e.g. the
learning rate) does not invalidate earlier runs: use a new ``out`` or ``resume=False``.

The reports (and the list of models, :data:`bartsmiles.evaluation.report.MODELS`) live in
:mod:`bartsmiles.evaluation.report`, the machine record in :mod:`bartsmiles.evaluation.machine`.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bartsmiles.core.splits import SPLIT_KINDS, Split, make_split
from bartsmiles.data.datasets import load_dataset
from bartsmiles.data.registry import get_spec
from bartsmiles.evaluation.baselines import run_ecfp4_rf
from bartsmiles.evaluation.frozen import run_frozen
from bartsmiles.evaluation.machine import _peak_rss_mb, machine_info
from bartsmiles.evaluation.report import (
    MODELS,
    RESULTS_SCHEMA,
    _key,
    _save_merged,
    load_results,
    write_markdown,
    write_plot,
)
from bartsmiles.model.checkpoint import pretrained_model_args, untrained_like
from bartsmiles.model.pretrained import load_pretrained
from bartsmiles.model.resolve import resolve_checkpoint
from bartsmiles.training.config import help_field
from bartsmiles.training.finetuning import FinetuneConfig, finetune

__all__ = ["BenchmarkConfig", "run_benchmark", "run_one"]

logger = logging.getLogger(__name__)

_FINETUNE_MODELS = ("bartsmiles", "bartsmiles_encoder_mean", "bartsmiles_random_init")
#: the fine-tuned models that start from the pretrained checkpoint
_PRETRAINED_FINETUNES = ("bartsmiles", "bartsmiles_encoder_mean")
_FROZEN_MODELS = ("bartsmiles_frozen", "bartsmiles_frozen_random_init")


@dataclass
class BenchmarkConfig:
    """What to run; ``finetune`` holds :class:`~bartsmiles.training.finetuning.FinetuneConfig` fields
    (``pretrained``, ``epochs``, ``lr``, ``batch_size``, ``dropout``, ...) for the BARTSmiles models."""

    datasets: tuple[str, ...] = help_field("registered dataset names", default=("bbbp",))
    models: tuple[str, ...] = help_field(
        "ecfp4_rf, bartsmiles, bartsmiles_encoder_mean, bartsmiles_random_init, bartsmiles_frozen, "
        "bartsmiles_frozen_random_init, chemprop",
        default=("ecfp4_rf",))
    seeds: tuple[int, ...] = help_field("seeds", default=(0, 1, 2))
    split: str = help_field("split kind: scaffold | random", default="scaffold", choices=SPLIT_KINDS)
    data_dir: str = help_field("data folder (default: $BARTSMILES_DATA, then the cache)", default="")
    out: str = help_field("output prefix of the results (.json, .md, .png)", default="benchmarks/results/benchmark")
    isolate: bool = help_field("run each run in its own process (honest peak memory)", default=True)
    resume: bool = help_field("skip runs already in OUT.json", default=True)
    n_jobs: int = help_field("cores per random forest", default=1)
    rf_n_estimators: int = help_field("trees per forest (protocol: 500)", default=500, flag="--rf-trees")
    finetune: dict = help_field("FinetuneConfig fields for the BARTSmiles models", default_factory=dict)
    work_dir: str = help_field("fine-tuning runs and logs (default: runs/benchmark/<out name>)", default="")
    keep_checkpoints: bool = help_field("keep fine-tuned checkpoints", default=False)

    def check(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; known: {list(MODELS)}")
        for name in self.datasets:
            if not get_spec(name).is_property_dataset:
                raise ValueError(f"dataset {name!r} is not a property dataset")
        if self.split not in SPLIT_KINDS:
            raise ValueError(f"split must be one of {SPLIT_KINDS}, got {self.split!r}")
        if not self.seeds:
            raise ValueError("no seeds given")
        if self.finetune:
            known = {f.name for f in dataclasses.fields(FinetuneConfig)}
            bad = sorted(set(self.finetune) - known)
            if bad:
                raise ValueError(f"unknown fine-tuning setting(s) {bad}; see FinetuneConfig")

    @classmethod
    def from_json(cls, path: str | os.PathLike, **overrides: Any) -> "BenchmarkConfig":
        """A config from a JSON object (keys: the fields above), then ``overrides`` not None."""
        data = json.loads(Path(path).read_text()) if path else {}
        overrides = dict(overrides)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(data) - known)
        if bad:
            raise ValueError(f"{path}: unknown key(s) {bad}; known: {sorted(known)}")
        finetune = {**(data.get("finetune") or {}), **(overrides.pop("finetune", None) or {})}
        data.update({k: v for k, v in overrides.items() if v is not None})
        data["finetune"] = finetune
        for key in ("datasets", "models", "seeds"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


# ----------------------------------------------------------------------------------- one run


def _pretrained_file(path: str) -> str:
    """The checkpoint file of a model path (:func:`~bartsmiles.model.resolve.resolve_checkpoint`); "" stays ""."""
    if not path:
        return ""
    return str(resolve_checkpoint(path))


def _run_forest(spec: dict) -> dict:
    dataset = load_dataset(spec["dataset"], spec.get("data_dir") or None)
    split = make_split(spec["split"], dataset.smiles, seed=spec["seed"])
    out = run_ecfp4_rf(dataset, split, spec["seed"], n_estimators=spec.get("rf_n_estimators", 500),
                       n_jobs=spec.get("n_jobs", 1))
    out.update(split_checksum=split.checksum(), n_invalid=len(dataset.invalid),
               settings={"radius": 2, "n_bits": 2048, "n_estimators": spec.get("rf_n_estimators", 500),
                         "random_state": spec["seed"], "n_jobs": spec.get("n_jobs", 1)})
    return out


def _run_frozen(spec: dict) -> dict:
    source = _pretrained_file(str((spec.get("finetune") or {}).get("pretrained", "") or ""))
    if not source:
        raise ValueError(f"model {spec['model']!r} needs a pretrained checkpoint (--model PATH)")
    dataset = load_dataset(spec["dataset"], spec.get("data_dir") or None)
    split = make_split(spec["split"], dataset.smiles, seed=spec["seed"])
    with tempfile.TemporaryDirectory(prefix="frozen-") as tmp:
        path = source
        if spec["model"] == "bartsmiles_frozen_random_init":
            path = untrained_like(source, Path(tmp) / "model.pt", seed=spec["seed"])
        model = load_pretrained(path)
        out = run_frozen(dataset, split, spec["seed"], model, metric=get_spec(spec["dataset"]).metric)
    out["settings"].update(pretrained=source, random_init=spec["model"].endswith("random_init"))
    out.update(split_checksum=split.checksum(), n_invalid=len(dataset.invalid))
    return out


def _run_finetune(spec: dict) -> dict:
    settings = dict(spec.get("finetune") or {})
    source = _pretrained_file(str(settings.pop("pretrained", "") or ""))
    if spec["model"] in _PRETRAINED_FINETUNES and not source:
        raise ValueError(f"model {spec['model']!r} needs a pretrained checkpoint (--model PATH or "
                         "finetune.pretrained in the config); the shipped model is not there yet")
    save_dir = Path(spec["work_dir"]) / f"{spec['model']}_{spec['dataset']}_{spec['split']}_seed{spec['seed']}"
    if save_dir.exists():
        shutil.rmtree(save_dir)  # a stale checkpoint must not be picked up as this run's best
    cfg_kw: dict[str, Any] = dict(settings)
    for key in ("target_columns", "model_args", "adam_betas", "extra_args"):
        if key in cfg_kw and isinstance(cfg_kw[key], list):
            cfg_kw[key] = tuple(cfg_kw[key])
    cfg_kw.setdefault("progress", False)  # each run logs to its own file
    cfg_kw.update(data=spec["dataset"], data_dir=spec.get("data_dir") or "", split=spec["split"],
                  split_seed=spec["seed"], seed=spec["seed"], save_dir=str(save_dir))
    if spec["model"] in _PRETRAINED_FINETUNES:
        cfg_kw["pretrained"] = source
        if spec["model"] == "bartsmiles_encoder_mean":
            cfg_kw["head_input"] = "encoder_mean"
    else:
        cfg_kw["pretrained"] = ""
        if source:  # same shape and dictionary as the pretrained model, fresh weights
            arch, flags = pretrained_model_args(source)
            cfg_kw.setdefault("arch", arch)
            cfg_kw.setdefault("model_args", tuple(flags))
            beside = Path(source).with_name("dict.txt")
            if beside.is_file():
                cfg_kw.setdefault("dict", str(beside))
    cfg = FinetuneConfig(**cfg_kw)
    result = finetune(cfg)
    if result.test_metric is None:
        raise RuntimeError(f"fine-tuning finished but the test {result.metric} is undefined")
    split = Split.load(save_dir / "split.json")
    resolved_file = save_dir / "finetune_config.json"  # the config after finetune() filled it in
    resolved = json.loads(resolved_file.read_text()) if resolved_file.is_file() else dataclasses.asdict(cfg)
    if not spec.get("keep_checkpoints"):
        for ckpt in save_dir.glob("*.pt"):
            ckpt.unlink()
    return {"value": float(result.test_metric), "per_task": None, "metric": result.metric,
            "sizes": result.sizes, "split_checksum": split.checksum(),
            "best_valid_metric": result.best_valid_metric, "save_dir": str(save_dir),
            "settings": {k: v for k, v in resolved.items()
                         if k in ("pretrained", "arch", "epochs", "lr", "batch_size", "dropout", "seed",
                                  "warmup_ratio", "weight_decay", "clip_norm", "pos_weight", "dict",
                                  "regression_scaling", "max_positions", "update_freq", "model_args",
                                  "head_input")}}


def run_one(spec: dict) -> dict:
    """Run ``spec`` (model, dataset, seed, split, data_dir, ...) and return its record.

    Never raises for a failed run: the record gets ``status: "error"`` and the message.
    """

    record = {k: spec[k] for k in ("model", "dataset", "seed", "split")}
    ds_spec = get_spec(spec["dataset"])
    record.update(metric=ds_spec.metric, value=None, status="ok", error=None,
                  started=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    t0 = time.perf_counter()
    try:
        if spec["model"] == "ecfp4_rf":
            record.update(_run_forest(spec))
        elif spec["model"] in _FINETUNE_MODELS:
            record.update(_run_finetune(spec))
        elif spec["model"] in _FROZEN_MODELS:
            record.update(_run_frozen(spec))
        elif spec["model"] == "chemprop":
            try:
                import chemprop  # noqa: F401  (lazy: an optional peer, only probed for)
            except ImportError as exc:
                record.update(status="not_installed", error=f"import chemprop failed: {exc}")
            else:
                record.update(status="not_supported",
                              error="chemprop is installed but this runner does not drive it yet")
        else:
            raise ValueError(f"unknown model {spec['model']!r}")
    except Exception as exc:  # a failed run is a result too
        record.update(status="error", value=None, error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=8))
    record["wall_s"] = round(time.perf_counter() - t0, 3)
    return record


def _run_isolated(spec: dict, log_path: Path) -> dict:
    """``run_one(spec)`` in a fresh interpreter; its output goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bartsmiles-bench-") as tmp:
        spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_file.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.run([sys.executable, "-m", "bartsmiles.evaluation.benchmark", "--run-one",
                                   str(spec_file), str(result_file)], stdout=log, stderr=subprocess.STDOUT)
        elapsed = round(time.perf_counter() - t0, 3)
        if result_file.is_file():
            record = json.loads(result_file.read_text())
        else:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.is_file() else ""
            record = {k: spec[k] for k in ("model", "dataset", "seed", "split")}
            record.update(value=None, status="error",
                          error=f"the run's process exited with code {proc.returncode} without a result; "
                                f"log {log_path}:\n{tail}")
    record["process_wall_s"] = elapsed
    record["log"] = str(log_path)
    return record


def _child_main(spec_file: str, result_file: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = json.loads(Path(spec_file).read_text())
    record = run_one(spec)
    record["peak_rss_mb"] = _peak_rss_mb()
    record["memory_scope"] = ("peak RSS of the run's own process (interpreter and imports included)")
    Path(result_file).write_text(json.dumps(record))
    return 0


# ----------------------------------------------------------------------------------- driver


def failed_runs(results: dict, cfg: BenchmarkConfig) -> list[dict]:
    """The runs of ``cfg``'s grid that ended in error. Failures of other grids that share the
    results file are not this invocation's (the file merges several queues)."""
    grid = {(m, d, int(s), cfg.split) for m in cfg.models for d in cfg.datasets for s in cfg.seeds}
    return [r for r in results["runs"] if r.get("status") == "error" and _key(r) in grid]


def run_benchmark(cfg: BenchmarkConfig, command: Sequence[str] | None = None) -> dict:
    """Run every (model, dataset, seed) of ``cfg`` not already in ``<out>.json``; write the outputs."""
    cfg.check()
    out = Path(cfg.out)
    json_path = out.with_name(out.name + ".json")
    results = load_results(json_path) if cfg.resume else {"schema": RESULTS_SCHEMA, "runs": []}
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    command = list(command) if command is not None else list(sys.argv)
    results.update(schema=RESULTS_SCHEMA, config=dataclasses.asdict(cfg), machine=machine_info(),
                   command=command, date=now)
    results.setdefault("history", []).append({"date": now, "command": command})
    work = Path(cfg.work_dir) if cfg.work_dir else Path("runs") / "benchmark" / out.name
    done = {_key(r) for r in results["runs"] if r.get("status") == "ok"}
    for dataset in cfg.datasets:
        for model in cfg.models:
            for seed in cfg.seeds:
                key = (model, dataset, int(seed), cfg.split)
                if key in done:
                    logger.info("skipping %s (already in %s)", key, json_path)
                    continue
                spec = {"model": model, "dataset": dataset, "seed": int(seed), "split": cfg.split,
                        "data_dir": cfg.data_dir, "n_jobs": cfg.n_jobs, "rf_n_estimators": cfg.rf_n_estimators,
                        "finetune": cfg.finetune, "work_dir": str(work), "keep_checkpoints": cfg.keep_checkpoints}
                logger.info("running %s", key)
                if cfg.isolate:
                    record = _run_isolated(spec, work / "logs" / f"{model}_{dataset}_{cfg.split}_seed{seed}.log")
                else:
                    record = run_one(spec)
                    record["peak_rss_mb"] = _peak_rss_mb()
                    record["memory_scope"] = ("high-water mark of the shared benchmark process "
                                              "(not isolated: an upper bound for this run)")
                logger.info("%s: %s %s (%.1f s)", key, record["status"], record.get("value"), record["wall_s"]
                            if record.get("wall_s") is not None else float("nan"))
                results["runs"] = [r for r in results["runs"] if _key(r) != key] + [record]
                results = _save_merged(json_path, results)
    results = _save_merged(json_path, results)
    write_markdown(results, out.with_name(out.name + ".md"))
    write_plot(results, out.with_name(out.name + ".png"))
    return results


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--run-one":
        sys.exit(_child_main(sys.argv[2], sys.argv[3]))
    print("usage: python -m bartsmiles.evaluation.benchmark --run-one SPEC.json RESULT.json "
          "(internal; use `bartsmiles benchmark`)", file=sys.stderr)
    sys.exit(2)
