"""The pretraining-value curve: frozen-feature scores against tokens seen.

    python benchmarks/pretraining_value.py pretrained runs/pretrain_desc/checkpoint_*_*.pt \\
        --random-init-seeds 0 1 2 --out benchmarks/results/pretraining_value.json \\
        --plot benchmarks/results/pretraining_value.png

For every checkpoint (a model folder, an exported ``model.pt``, or a raw fairseq training
checkpoint), and for randomly initialized models of the same shape (one per seed), it scores
frozen features on the protocol's scaffold splits (:func:`bartsmiles.evaluation.frozen.run_frozen`:
mean-pooled encoder states, a linear head whose strength is chosen on the valid split, test
metric). Tokens seen and the objective are read from each checkpoint's training record
(:func:`bartsmiles.model.checkpoint.training_record`); ``--tokens`` overrides them for checkpoints
that predate the record.

The plot has one panel per dataset: the score against tokens seen (log axis), one line per
series (``--labels``, default the objective and the run folder), the random-init mean as a
dashed line and ECFP4+RF (``PEERS.md``, measured on this machine) as a dotted one.

The JSON is written after every (model, dataset) score, and a rerun skips what it holds, so a
killed run resumes. Its ``summary`` counts, for each checkpoint, the datasets where frozen
features beat ECFP4+RF and beat the random-init mean.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bartsmiles.core.splits import make_split
from bartsmiles.data.datasets import load_dataset
from bartsmiles.data.registry import get_spec
from bartsmiles.evaluation.frozen import run_frozen
from bartsmiles.evaluation.machine import machine_info
from bartsmiles.model.checkpoint import METADATA_KEY, export_model, safe_load, training_record, untrained_like
from bartsmiles.model.pretrained import load_pretrained
from bartsmiles.model.resolve import resolve_checkpoint

DATASETS = ("bbbp", "bace", "clintox", "tox21", "sider", "esol", "freesolv", "lipo")
LOWER_IS_BETTER = ("rmse",)


def read_peers(path: Path, model_column: str = "ECFP4+RF") -> dict[str, float]:
    """``{dataset: mean}`` of one peer column of PEERS.md's table (``0.687 ± 0.001 (n=3)`` cells)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    col = header.index(model_column)
    out = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) <= col:
            continue
        m = re.match(r"([0-9.]+)", cells[col])
        if m and cells[0] in DATASETS:
            out[cells[0]] = float(m.group(1))
    return out


def better(a: float, b: float, metric: str) -> bool:
    return a < b if metric in LOWER_IS_BETTER else a > b


def _key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"


def _loadable(path: Path, tmp: Path, state: dict | None = None) -> Path:
    """An exported model for ``path`` (raw training checkpoints are exported to ``tmp``, fp32)."""
    state = safe_load(path) if state is None else state
    if METADATA_KEY in state:
        return path
    out = tmp / path.stem
    export_model(path, out, fp16=False)
    return out / "model.pt"


def score_model(path: Path, datasets, splits, *, seed: int = 0) -> dict[str, dict]:
    model = load_pretrained(path)
    out = {}
    for name, dataset in datasets.items():
        started = time.time()
        r = run_frozen(dataset, splits[name], seed, model, metric=get_spec(name).metric)
        out[name] = {"value": r["value"], "metric": r["metric"], "seconds": round(time.time() - started, 1)}
        print(f"  {name:9s} {r['metric']} {r['value']:.4f} ({out[name]['seconds']} s)", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="*", help="model folders, model.pt files or raw training checkpoints")
    p.add_argument("--labels", nargs="*", default=None, help="series name per checkpoint (points with one name are joined)")
    p.add_argument("--tokens", nargs="*", type=float, default=None,
                   help="tokens seen per checkpoint, for checkpoints without a training record (0: read it)")
    p.add_argument("--random-init-seeds", nargs="*", type=int, default=[0, 1, 2],
                   help="seeds of the random-init reference (same shape as the first checkpoint)")
    p.add_argument("--datasets", nargs="*", default=list(DATASETS))
    p.add_argument("--peers", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "PEERS.md"),
                   help="PEERS.md, for the ECFP4+RF reference")
    p.add_argument("--data-dir", default=None, help="MoleculeNet folder (default: $BARTSMILES_DATA)")
    p.add_argument("--out", required=True, help="results JSON (resumed when it exists)")
    p.add_argument("--plot", default=None, help="PNG to draw")
    p.add_argument("--plot-only", action="store_true", help="draw the plot from --out without scoring")
    args = p.parse_args(argv)

    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    results.setdefault("points", {})
    results.setdefault("random_init", {})

    if not args.plot_only:
        labels = args.labels or [None] * len(args.checkpoints)
        tokens = args.tokens or [0.0] * len(args.checkpoints)
        if len(labels) != len(args.checkpoints) or len(tokens) != len(args.checkpoints):
            p.error("give one --labels and one --tokens entry per checkpoint")
        datasets = {name: load_dataset(name, args.data_dir) for name in args.datasets}
        splits = {name: make_split("scaffold", d.smiles, seed=0) for name, d in datasets.items()}
        results["peers"] = {"ECFP4+RF": read_peers(Path(args.peers)), "source": str(args.peers)}
        results["protocol"] = {"split": "scaffold", "datasets": args.datasets, "features": "mean-pooled encoder",
                               "head": "linear, strength chosen on valid", "scored": "test"}
        results["machine"] = machine_info()
        results["command"] = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])

        def save():
            out_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = out_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(results, indent=1) + "\n")
            os.replace(tmp, out_path)

        with tempfile.TemporaryDirectory(prefix="value-curve-") as tmp:
            first = None
            for given, label, tok in zip(args.checkpoints, labels, tokens):
                path = resolve_checkpoint(given)
                first = first or path
                key = _key(path)
                point = results["points"].get(key, {})
                todo = [n for n in args.datasets if n not in point.get("scores", {})]
                state = safe_load(path)
                record = training_record(state)
                objective = (record.get("objective") or {}).get("name", "unknown")
                point.update(path=str(given), tokens_seen=float(tok or record.get("tokens_seen") or 0),
                             objective=objective,
                             label=label or f"{objective} ({path.parent.name})")
                point.setdefault("scores", {})
                results["points"][key] = point
                if todo:
                    print(f"{given}: {point['tokens_seen']:.3g} tokens, {objective}", flush=True)
                    loadable = _loadable(path, Path(tmp), state)
                    point["scores"].update(score_model(loadable, {n: datasets[n] for n in todo}, splits))
                    save()
            if first is not None:
                for seed in args.random_init_seeds:
                    entry = results["random_init"].setdefault(str(seed), {})
                    todo = [n for n in args.datasets if n not in entry]
                    if todo:
                        print(f"random init, seed {seed}", flush=True)
                        torch.manual_seed(seed)
                        path = untrained_like(_loadable(first, Path(tmp)), Path(tmp) / f"random{seed}" / "model.pt",
                                              seed=seed)
                        entry.update(score_model(Path(path), {n: datasets[n] for n in todo}, splits, seed=seed))
                        save()
        results["summary"] = summarize(results, args.datasets)
        save()
    if results.get("points"):
        out_path.with_suffix(".md").write_text(markdown(results))
    if args.plot:
        plot(results, Path(args.plot))
    for key, s in results.get("summary", {}).items():
        print(f"{s['label']} @ {s['tokens_seen']:.3g} tokens: beats ECFP4+RF on {s['beats_ecfp']}/{s['n']}, "
              f"beats random init on {s['beats_random_init']}/{s['n']}")
    return 0


def _random_mean(results: dict, name: str):
    values = [entry[name]["value"] for entry in results["random_init"].values() if name in entry]
    return (float(np.mean(values)), float(np.std(values)), len(values)) if values else None


def summarize(results: dict, names) -> dict:
    peers = results.get("peers", {}).get("ECFP4+RF", {})
    out = {}
    for key, point in results["points"].items():
        beats_ecfp = beats_random = n = 0
        for name in names:
            if name not in point["scores"]:
                continue
            s = point["scores"][name]
            n += 1
            if name in peers and better(s["value"], peers[name], s["metric"]):
                beats_ecfp += 1
            rnd = _random_mean(results, name)
            if rnd and better(s["value"], rnd[0], s["metric"]):
                beats_random += 1
        out[key] = {"label": point["label"], "tokens_seen": point["tokens_seen"], "n": n,
                    "beats_ecfp": beats_ecfp, "beats_random_init": beats_random}
    return out


def markdown(results: dict) -> str:
    """The results as a markdown table: one row per checkpoint, then the references."""
    names = results.get("protocol", {}).get("datasets", list(DATASETS))
    metrics = {}
    for point in results["points"].values():
        for name, s in point["scores"].items():
            metrics[name] = s["metric"]
    arrows = {n: ("RMSE ↓" if metrics.get(n) in LOWER_IS_BETTER else "ROC-AUC ↑") for n in names}
    lines = [f"Frozen features, scaffold split, test set. Command: `{results.get('command', '')}`", "",
             "| model | tokens seen | " + " | ".join(f"{n} ({arrows[n]})" for n in names)
             + " | beats ECFP4+RF | beats random init |",
             "|---|---|" + "---|" * len(names) + "---|---|"]
    summary = results.get("summary", {})
    for key, point in sorted(results["points"].items(), key=lambda kv: (kv[1]["label"], kv[1]["tokens_seen"])):
        cells = [f"{point['scores'][n]['value']:.3f}" if n in point["scores"] else "" for n in names]
        s = summary.get(key, {})
        lines.append(f"| {point['label']} | {point['tokens_seen'] / 1e6:.1f}M | " + " | ".join(cells)
                     + f" | {s.get('beats_ecfp', '')}/{s.get('n', '')} | {s.get('beats_random_init', '')}/{s.get('n', '')} |")
    rnd = [_random_mean(results, n) for n in names]
    lines.append("| random init, mean ± std | 0 | " + " | ".join(
        f"{r[0]:.3f} ± {r[1]:.3f} (n={r[2]})" if r else "" for r in rnd) + " | | |")
    peers = results.get("peers", {}).get("ECFP4+RF", {})
    lines.append("| ECFP4+RF (PEERS.md) | | " + " | ".join(f"{peers[n]:.3f}" if n in peers else "" for n in names)
                 + " | | |")
    machine = results.get("machine", {})
    lines += ["", f"Machine: {machine.get('cpu', machine)}"]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib  # lazy: plotting is optional (the extra "plot")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    names = results.get("protocol", {}).get("datasets", list(DATASETS))
    cols = 4
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    series: dict[str, list] = {}
    for point in results["points"].values():
        series.setdefault(point["label"], []).append(point)
    peers = results.get("peers", {}).get("ECFP4+RF", {})
    for ax, name in zip(axes.flat, names):
        metric = None
        for label, points in sorted(series.items()):
            pts = sorted((q["tokens_seen"], q["scores"][name]["value"]) for q in points
                         if name in q["scores"] and q["tokens_seen"] > 0)
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label)
                metric = next(q["scores"][name]["metric"] for q in points if name in q["scores"])
        rnd = _random_mean(results, name)
        if rnd:
            ax.axhline(rnd[0], color="grey", linestyle="--", label=f"random init (n={rnd[2]})")
        if name in peers:
            ax.axhline(peers[name], color="black", linestyle=":", label="ECFP4+RF")
        ax.set_xscale("log")
        ax.set_title(f"{name} ({metric or ''}{', lower is better' if metric in LOWER_IS_BETTER else ''})")
        ax.set_xlabel("tokens seen")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    fig.suptitle("Frozen-feature value of pretraining (scaffold test split, linear head)")
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
