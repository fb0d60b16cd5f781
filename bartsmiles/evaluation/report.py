"""Reports of a benchmark results file: mean ± std summary, markdown table and bar plot.

The results JSON is written by :func:`bartsmiles.evaluation.benchmark.run_benchmark`; :func:`load_results`
reads it, :func:`summarize` groups its runs per (dataset, split, model), :func:`write_markdown`
and :func:`write_plot` write ``<out>.md`` and ``<out>.png`` (see :mod:`bartsmiles.evaluation.benchmark`).
:func:`_save_merged` writes the results file so that several runners may share it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["MODELS", "summarize", "write_markdown", "write_plot", "load_results"]

RESULTS_SCHEMA = 1
#: Every model the runner (:mod:`bartsmiles.evaluation.benchmark`) knows, in the order tables show them.
MODELS = ("ecfp4_rf", "bartsmiles", "bartsmiles_encoder_mean", "bartsmiles_random_init", "bartsmiles_frozen",
          "bartsmiles_frozen_random_init", "chemprop")


def load_results(path: str | os.PathLike) -> dict:
    """A results JSON written by :func:`run_benchmark` (``{"runs": []}`` if the file is absent)."""
    path = Path(path)
    if not path.is_file():
        return {"schema": RESULTS_SCHEMA, "runs": []}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError(f"{path} is not a benchmark results file (no 'runs' list)")
    return data


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
    import matplotlib  # lazy: matplotlib is optional (the viz extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((d, s) for d, s, _ in keys))
    models = [m for m in MODELS if any(k[2] == m for k in keys)]
    n_cols = min(4, len(panels))  # a grid, not one long strip
    n_rows = (len(panels) + n_cols - 1) // n_cols
    width = 1.2 + 0.55 * len(models)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width * n_cols, 3.6 * n_rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (dataset, split) in zip(axes.flat, panels):
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


# ------------------------------------------------------------------ writing a shared results file


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def _save_merged(path: Path, results: dict) -> dict:
    """Write ``results``, keeping the runs and history another process wrote to ``path`` meanwhile.

    Two benchmarks may share one results file (e.g. one running the forests, one fine-tuning).
    Under an exclusive lock, the file on disk is read again and merged by (model, dataset, seed,
    split): the newer run (by ``started``) wins, an ``ok`` run over a failed one.  Returns the
    merged results, which the caller should continue from.
    """
    import fcntl  # lazy: POSIX only; the rest of the module works anywhere

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            on_disk = load_results(path) if path.is_file() else {"runs": []}
            merged: dict[tuple, dict] = {}
            for run in list(on_disk.get("runs", [])) + list(results.get("runs", [])):
                key, old = _key(run), merged.get(_key(run))
                if old is None or (run.get("status") == "ok", str(run.get("started", ""))) >= (
                        old.get("status") == "ok", str(old.get("started", ""))):
                    merged[key] = run
            history = list(on_disk.get("history", []))
            history += [h for h in results.get("history", []) if h not in history]
            results = {**results, "runs": list(merged.values()), "history": history}
            _write_json(path, results)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return results


def _key(run: dict) -> tuple:
    return run["model"], run["dataset"], int(run["seed"]), run["split"]
