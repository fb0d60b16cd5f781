"""The protocol runner of PROTOCOL.md: models x datasets x seeds on one split kind.

Models
------
``ecfp4_rf``
    The peer of :mod:`bartsmiles.baselines` (ECFP4, one 500-tree forest per task).
``bartsmiles``
    :func:`bartsmiles.finetuning.finetune` from a pretrained checkpoint (``pretrained`` in the
    fine-tuning settings: a ``.pt`` file or a model folder holding ``model.pt``), scored on the
    test split with the best-validation checkpoint. The run's seed is fairseq's ``--seed``.
``bartsmiles_random_init``
    The same fine-tuning with no pretrained weights. When a pretrained model is given its
    shape (arch and sizes) and dictionary are used, so the two differ only in the weights.
``bartsmiles_frozen``
    :mod:`bartsmiles.frozen`: a linear head (C chosen on validation) on the pretrained model's
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
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["MODELS", "BenchmarkConfig", "run_benchmark", "run_one", "summarize", "write_markdown",
           "write_plot", "load_results", "machine_info"]

logger = logging.getLogger(__name__)

MODELS = ("ecfp4_rf", "bartsmiles", "bartsmiles_random_init", "bartsmiles_frozen",
          "bartsmiles_frozen_random_init", "chemprop")
RESULTS_SCHEMA = 1
_FINETUNE_MODELS = ("bartsmiles", "bartsmiles_random_init")
_FROZEN_MODELS = ("bartsmiles_frozen", "bartsmiles_frozen_random_init")


@dataclass
class BenchmarkConfig:
    """What to run; ``finetune`` holds :class:`~bartsmiles.finetuning.FinetuneConfig` fields
    (``pretrained``, ``epochs``, ``lr``, ``batch_size``, ``dropout``, ...) for the BARTSmiles models."""

    datasets: tuple[str, ...] = ("bbbp",)
    models: tuple[str, ...] = ("ecfp4_rf",)
    seeds: tuple[int, ...] = (0, 1, 2)
    split: str = "scaffold"
    data_dir: str = ""
    out: str = "benchmarks/results/benchmark"
    isolate: bool = True
    resume: bool = True
    n_jobs: int = 1
    rf_n_estimators: int = 500
    finetune: dict = field(default_factory=dict)
    work_dir: str = ""
    keep_checkpoints: bool = False

    def check(self) -> None:
        from .datasets import get_spec
        from .splits import SPLIT_KINDS

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
            from .finetuning import FinetuneConfig

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
    """A model folder -> its model.pt (or checkpoint file); a file stays as is."""
    if not path:
        return ""
    p = Path(path)
    if p.is_dir():
        for name in ("model.pt", "checkpoint_best.pt", "checkpoint_last.pt"):
            if (p / name).is_file():
                return str(p / name)
        raise FileNotFoundError(f"no model.pt (or checkpoint_best/last.pt) in {p}")
    if not p.is_file():
        raise FileNotFoundError(f"pretrained model not found: {p}")
    return str(p)


def _run_forest(spec: dict) -> dict:
    from .baselines import run_ecfp4_rf
    from .datasets import load_dataset
    from .splits import make_split

    dataset = load_dataset(spec["dataset"], spec.get("data_dir") or None)
    split = make_split(spec["split"], dataset.smiles, seed=spec["seed"])
    out = run_ecfp4_rf(dataset, split, spec["seed"], n_estimators=spec.get("rf_n_estimators", 500),
                       n_jobs=spec.get("n_jobs", 1))
    out.update(split_checksum=split.checksum(), n_invalid=len(dataset.invalid),
               settings={"radius": 2, "n_bits": 2048, "n_estimators": spec.get("rf_n_estimators", 500),
                         "random_state": spec["seed"], "n_jobs": spec.get("n_jobs", 1)})
    return out


def _run_frozen(spec: dict) -> dict:
    from .api import load_pretrained
    from .datasets import get_spec, load_dataset
    from .frozen import run_frozen
    from .property_model import untrained_like
    from .splits import make_split

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
    from .finetuning import FinetuneConfig, finetune, pretrained_model_args
    from .splits import Split

    settings = dict(spec.get("finetune") or {})
    source = _pretrained_file(str(settings.pop("pretrained", "") or ""))
    if spec["model"] == "bartsmiles" and not source:
        raise ValueError("model 'bartsmiles' needs a pretrained checkpoint (--model PATH or "
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
    if spec["model"] == "bartsmiles":
        cfg_kw["pretrained"] = source
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
                                  "regression_scaling", "max_positions", "update_freq", "model_args")}}


def run_one(spec: dict) -> dict:
    """Run ``spec`` (model, dataset, seed, split, data_dir, ...) and return its record.

    Never raises for a failed run: the record gets ``status: "error"`` and the message.
    """
    from .datasets import get_spec

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
                import chemprop  # noqa: F401
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


def _peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process image.
    ``getrusage(RUSAGE_SELF).ru_maxrss`` is *not* used there because Linux carries it over
    ``exec``: a subprocess started from a large parent would report the parent's size.
    Children the run waited for (``RUSAGE_CHILDREN``) are included by taking the maximum.
    Elsewhere ``ru_maxrss`` (KiB on Linux/BSD, bytes on macOS) is the fallback.
    """
    own_kib = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                own_kib = float(line.split()[1])
                break
    except OSError:
        pass
    scale = 1024.0 if sys.platform == "darwin" else 1.0  # ru_maxrss -> KiB
    if own_kib is None:
        own_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    kids_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / scale
    return round(max(own_kib, kids_kib) / 1024.0, 1)


def _run_isolated(spec: dict, log_path: Path) -> dict:
    """``run_one(spec)`` in a fresh interpreter; its output goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bartsmiles-bench-") as tmp:
        spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_file.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.run([sys.executable, "-m", "bartsmiles.benchmark", "--run-one",
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


def machine_info() -> dict:
    """Platform, CPU, memory and library versions of this machine (for the results file)."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count()}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gb"] = round(int(line.split()[1]) / 1024 ** 2, 1)
                break
    except OSError:
        pass
    try:
        info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    versions = {}
    for name in ("numpy", "sklearn", "rdkit", "torch", "fairseq", "bartsmiles"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except Exception:  # not installed, or broken: record that
            versions[name] = None
    info["versions"] = versions
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        info["gpu"] = None
    try:
        repo = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                   capture_output=True, text=True, timeout=10)
            info["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def load_results(path: str | os.PathLike) -> dict:
    """A results JSON written by :func:`run_benchmark` (``{"runs": []}`` if the file is absent)."""
    path = Path(path)
    if not path.is_file():
        return {"schema": RESULTS_SCHEMA, "runs": []}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError(f"{path} is not a benchmark results file (no 'runs' list)")
    return data


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def _key(run: dict) -> tuple:
    return run["model"], run["dataset"], int(run["seed"]), run["split"]


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
                _write_json(json_path, results)
    _write_json(json_path, results)
    write_markdown(results, out.with_name(out.name + ".md"))
    write_plot(results, out.with_name(out.name + ".png"))
    return results


# ----------------------------------------------------------------------------------- reports


def summarize(runs: Sequence[dict]) -> dict[tuple[str, str, str], dict]:
    """Per (dataset, split, model): mean, std (ddof=0), n, seeds, wall s/run, peak MiB, statuses."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["dataset"], run["split"], run["model"]), []).append(run)
    table = {}
    for key, items in groups.items():
        ok = sorted((r for r in items if r.get("status") == "ok" and r.get("value") is not None),
                    key=lambda r: r["seed"])
        values = np.array([r["value"] for r in ok], dtype=float)
        walls = [r["wall_s"] for r in ok if r.get("wall_s") is not None]
        mems = [r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb") is not None]
        table[key] = {
            "metric": items[0].get("metric"),
            "n": len(ok),
            "seeds": [r["seed"] for r in ok],
            "values": values.tolist(),
            "mean": float(values.mean()) if len(ok) else None,
            "std": float(values.std()) if len(ok) else None,
            "wall_s_per_run": float(np.mean(walls)) if walls else None,
            "peak_rss_mb": float(max(mems)) if mems else None,
            "statuses": sorted({r.get("status", "?") for r in items}),
        }
    return table


_ARROW = {"roc_auc": "ROC-AUC ↑", "prc_auc": "PRC-AUC ↑", "rmse": "RMSE ↓"}


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "—"
    if entry["n"]:
        return f"{entry['mean']:.3f} ± {entry['std']:.3f} (n={entry['n']})"
    statuses = [s for s in entry["statuses"] if s != "ok"]
    return ", ".join(s.replace("_", " ") for s in statuses) or "—"


def write_markdown(results: dict, path: str | os.PathLike) -> str:
    """The summary table as markdown (also returned)."""
    runs = results.get("runs", [])
    table = summarize(runs)
    models = [m for m in MODELS if any(r["model"] == m for r in runs)]
    rows = sorted({(d, s) for d, s, _ in table}, key=lambda k: [r["dataset"] for r in runs].index(k[0]))
    machine = results.get("machine", {})
    lines = [
        "# Benchmark results",
        "",
        f"Written {results.get('date', '?')} by `{' '.join(results.get('command', []))}`.",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('usable_cpus', machine.get('cpu_count', '?'))} usable "
        f"CPUs, {machine.get('mem_total_gb', '?')} GB, GPU: {machine.get('gpu') or 'none'}; "
        f"load average at start {machine.get('load_avg_at_start', '?')}.",
        "Test-set score, mean ± std over the seeds that finished (population std, ddof=0); n = seeds. "
        "Protocol: PROTOCOL.md. Wall s/run: dataset load to test score, in the run's process. "
        "Peak MiB: peak RSS of the run's process (see the JSON's memory_scope).",
        "",
    ]
    header = ["dataset", "split", "metric", *models, *(f"{m} wall s/run" for m in models),
              *(f"{m} peak MiB" for m in models)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for dataset, split in rows:
        entries = [table.get((dataset, split, m)) for m in models]
        metric = next((e["metric"] for e in entries if e), "?")
        cells = [dataset, split, _ARROW.get(metric, metric), *(_cell(e) for e in entries)]
        cells += [f"{e['wall_s_per_run']:.1f}" if e and e["wall_s_per_run"] is not None else "—" for e in entries]
        cells += [f"{e['peak_rss_mb']:.0f}" if e and e["peak_rss_mb"] is not None else "—" for e in entries]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in runs if r.get("status") == "error"]
    if failed:
        lines += ["", "Failed runs:"]
        lines += [f"- {r['model']} {r['dataset']} seed {r['seed']}: {str(r.get('error'))[:300]}" for r in failed]
    text = "\n".join(lines) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    return text


def write_plot(results: dict, path: str | os.PathLike) -> Path | None:
    """Bars of mean ± std per model, one panel per dataset; None when nothing finished."""
    table = summarize(results.get("runs", []))
    keys = [k for k, v in table.items() if v["n"]]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((d, s) for d, s, _ in keys))
    models = [m for m in MODELS if any(k[2] == m for k in keys)]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 + 1.0 * len(models) * len(panels), 3.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (dataset, split) in zip(axes[0], panels):
        metric = "?"
        for i, model in enumerate(models):
            entry = table.get((dataset, split, model))
            if not entry or not entry["n"]:
                continue
            metric = entry["metric"]
            ax.bar(i, entry["mean"], yerr=entry["std"], color=colors[i % len(colors)], capsize=3, label=model)
            ax.text(i, entry["mean"], f"{entry['mean']:.3f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{dataset} ({split})", fontsize=9)
        ax.set_ylabel(_ARROW.get(metric, metric), fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--run-one":
        sys.exit(_child_main(sys.argv[2], sys.argv[3]))
    print("usage: python -m bartsmiles.benchmark --run-one SPEC.json RESULT.json "
          "(internal; use `bartsmiles benchmark`)", file=sys.stderr)
    sys.exit(2)
