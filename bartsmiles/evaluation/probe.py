"""The neuron probe of BARTSMILES_FACTS.md: how few frozen features does a task need?

1. Features: :meth:`bartsmiles.model.pretrained.PretrainedModel.encode` (frozen; mean pooling by default,
   SMILES over the model's positions truncated, and counted) of every molecule of a
   classification dataset, split as PROTOCOL.md says (scaffold by default).
2. With ``standardize`` (default) each feature is centred and scaled with the *train* rows'
   mean and standard deviation (so that one C penalizes every neuron alike); the original
   description does not say whether it scaled, so the JSON records the choice.
3. For each C in ``2**e`` (e = -8 ... 0) and each task, scikit-learn
   ``LogisticRegression(penalty="l1", solver="liblinear", C=C, random_state=seed)`` is fitted
   on the task's labelled train rows. Recorded: the non-zero coefficients (the *neurons
   used*, and which), validation and test ROC-AUC on the labelled rows of that task.
   A task whose train labels are single-class is skipped (recorded); an AUC on a part whose
   labels are single-class is ``None``.
4. Per task, and for the mean over tasks (neurons = size of the union of the tasks' neurons),
   the *chosen* model is the one with the fewest neurons whose validation ROC-AUC reaches the
   target: ``target`` when given, else the best validation ROC-AUC of the sweep minus
   ``tolerance`` (0.02: "within two points"). Ties on neurons go to the higher validation score.
   Test ROC-AUC is reported for every point but never used to choose.

Outputs: ``<out>.json`` (every point, the choice, settings, model path, sizes) and
``<out>.png`` (neurons used against ROC-AUC, validation and test, per task and mean).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from bartsmiles.core.splits import SPLIT_KINDS, make_split
from bartsmiles.data.datasets import load_dataset
from bartsmiles.model.checkpoint import untrained_like
from bartsmiles.model.pretrained import POOLINGS, load_pretrained
from bartsmiles.model.resolve import resolve_checkpoint
from bartsmiles.training.config import help_field

__all__ = ["ProbeConfig", "run_probe", "probe_features", "choose"]

logger = logging.getLogger(__name__)


@dataclass
class ProbeConfig:
    """Settings of one probe run (see the module docstring)."""

    model: str | None = help_field("model: a .pt file, a model folder or a run folder (default: the shipped model)",
                                   default=None)
    dataset: str = help_field("classification dataset", default="clintox")
    data_dir: str = help_field("data folder (default: $BARTSMILES_DATA, then the cache)", default="")
    split: str = help_field("split kind: scaffold | random", default="scaffold", choices=SPLIT_KINDS)
    seed: int = help_field("random split seed and liblinear's random_state", default=0)
    c_exponents: tuple[float, ...] = help_field("C = 2**e for each e", default=tuple(float(e) for e in range(-8, 1)))
    target: float | None = help_field("validation ROC-AUC to reach (absolute)", default=None)
    tolerance: float = help_field("without a target: reach the best validation ROC-AUC minus this", default=0.02)
    standardize: bool = help_field("standardize features (train mean/std)", default=True)
    pooling: str = help_field("feature pooling", default="mean", choices=POOLINGS)
    batch_size: int = help_field("molecules per forward pass", default=64)
    max_iter: int = help_field("iterations of the liblinear solver", default=1000)
    out: str = help_field("output prefix (.json, .png)", default="benchmarks/results/probe")
    random_init: bool = help_field("probe a randomly initialized model of MODEL's shape and dictionary (seeded by "
                                   "SEED): the control that shows what pretraining adds", default=False)


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    if np.unique(y).size < 2:
        return None
    return float(roc_auc_score(y, score))


def probe_features(X: np.ndarray, Y: np.ndarray, split, task_names: Sequence[str], cs: Sequence[float], *,
                   standardize: bool = True, seed: int = 0, max_iter: int = 1000) -> dict[str, Any]:
    """The C sweep on features ``X`` (n, d) and labels ``Y`` (n, tasks; NaN = missing).

    Returns ``{"tasks": {name: {"points": [...], "skipped": reason|None}}, "mean": [...]}``;
    every point holds C, neurons (count), neuron_ids, valid_roc_auc, test_roc_auc.
    """

    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    train, valid, test = (np.asarray(p, dtype=np.int64) for p in (split.train, split.valid, split.test))
    if standardize:
        mean = X[train].mean(0)
        std = X[train].std(0)
        std[std == 0] = 1.0
        X = (X - mean) / std
    tasks: dict[str, Any] = {}
    for j, name in enumerate(task_names):
        lab = ~np.isnan(Y[:, j])
        tr, va, te = train[lab[train]], valid[lab[valid]], test[lab[test]]
        y = Y[:, j]
        if np.unique(y[tr]).size < 2:
            tasks[name] = {"points": [], "skipped": "single-class (or no) training labels"}
            continue
        points = []
        for c in cs:
            clf = LogisticRegression(penalty="l1", solver="liblinear", C=float(c), random_state=seed,
                                     max_iter=max_iter)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                clf.fit(X[tr], y[tr])
            ids = np.flatnonzero(clf.coef_[0] != 0).tolist()
            points.append({
                "C": float(c), "neurons": len(ids), "neuron_ids": ids,
                "valid_roc_auc": _auc(y[va], clf.decision_function(X[va])) if va.size else None,
                "test_roc_auc": _auc(y[te], clf.decision_function(X[te])) if te.size else None,
                "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught),
            })
        tasks[name] = {"points": points, "skipped": None}
    scored = [t for t in tasks.values() if t["points"]]
    mean_points = []
    for k, c in enumerate(cs):
        if not scored:
            break
        ids = sorted(set().union(*(t["points"][k]["neuron_ids"] for t in scored)))
        valid = [t["points"][k]["valid_roc_auc"] for t in scored]
        test = [t["points"][k]["test_roc_auc"] for t in scored]
        mean_points.append({
            "C": float(c), "neurons": len(ids), "neuron_ids": ids,
            "neurons_sum": int(sum(t["points"][k]["neurons"] for t in scored)),
            "valid_roc_auc": float(np.mean([v for v in valid if v is not None])) if any(v is not None for v in valid) else None,
            "test_roc_auc": float(np.mean([v for v in test if v is not None])) if any(v is not None for v in test) else None,
        })
    return {"tasks": tasks, "mean": mean_points}


def choose(points: Sequence[dict], target: float | None, tolerance: float) -> dict | None:
    """The fewest-neuron point whose validation ROC-AUC reaches the target (see module docstring)."""
    usable = [p for p in points if p.get("valid_roc_auc") is not None and p["neurons"] > 0]
    if not usable:
        return None
    goal = target if target is not None else max(p["valid_roc_auc"] for p in usable) - tolerance
    reached = [p for p in usable if p["valid_roc_auc"] >= goal - 1e-12]
    if not reached:
        return {"target_valid_roc_auc": goal, "reached": False}
    best = min(reached, key=lambda p: (p["neurons"], -p["valid_roc_auc"]))
    return {"target_valid_roc_auc": goal, "reached": True, **best}


def _plot(report: dict, path: Path) -> None:
    import matplotlib  # lazy: matplotlib is optional (the viz extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(name, t["points"]) for name, t in report["tasks"].items() if t["points"]]
    if len(series) > 1:
        series.append(("mean (union of neurons)", report["mean"]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, part in zip(axes, ("valid", "test")):
        for name, points in series:
            pts = [p for p in points if p[f"{part}_roc_auc"] is not None]
            if not pts:
                continue
            xs = [max(p["neurons"], 0.8) for p in pts]  # 0 neurons drawn at the axis' left edge
            ax.plot(xs, [p[f"{part}_roc_auc"] for p in pts], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("neurons used (non-zero coefficients)")
        ax.set_title(f"{part} ROC-AUC", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ROC-AUC")
    axes[0].legend(fontsize=7)
    model = Path(str(report["settings"].get("model") or "shipped model")).name
    if report["settings"].get("random_init"):
        model = f"random initialization, shape of {model}"
    fig.suptitle(f"L1 probe, {report['dataset']} ({report['settings']['split']} split), {model}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_probe(cfg: ProbeConfig) -> dict[str, Any]:
    """Encode, sweep, choose, write ``<out>.json`` and ``<out>.png``; returns the report."""

    t0 = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.data_dir or None)
    if dataset.task_type != "classification":
        raise ValueError(f"the probe needs a classification dataset; {cfg.dataset!r} is {dataset.task_type}")
    split = make_split(cfg.split, dataset.smiles, seed=cfg.seed)
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        path = cfg.model
        if cfg.random_init:
            path = untrained_like(resolve_checkpoint(cfg.model), Path(tmp) / "model.pt", seed=cfg.seed)
        model = load_pretrained(path)
    n_truncated = sum(len(model.tokenizer.tokenize(s)) + 2 > model.max_positions for s in dataset.smiles)
    X = model.encode(dataset.smiles, batch_size=cfg.batch_size, pooling=cfg.pooling, progress=False,
                     on_overflow="truncate")
    t_encode = time.perf_counter() - t0
    cs = [2.0 ** e for e in cfg.c_exponents]
    sweep = probe_features(X, dataset.labels, split, dataset.task_names, cs, standardize=cfg.standardize,
                           seed=cfg.seed, max_iter=cfg.max_iter)
    chosen = {name: choose(t["points"], cfg.target, cfg.tolerance) for name, t in sweep["tasks"].items()}
    chosen["mean"] = choose(sweep["mean"], cfg.target, cfg.tolerance)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out.with_name(out.name + ".json"), out.with_name(out.name + ".png")
    report = {
        "dataset": cfg.dataset,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
        "model_path": str(model.path) if not cfg.random_init else None,
        "model_metadata": {k: v for k, v in model.metadata.items() if k != "vocabulary"},
        "feature_dim": int(X.shape[1]),
        "n_molecules": len(dataset), "n_invalid_dropped": len(dataset.invalid), "n_truncated": n_truncated,
        "sizes": dict(zip(("train", "valid", "test"), split.sizes())), "split_checksum": split.checksum(),
        "solver": "sklearn LogisticRegression(penalty='l1', solver='liblinear')",
        "tasks": sweep["tasks"], "mean": sweep["mean"], "chosen": chosen,
        "seconds": {"load_and_encode": round(t_encode, 2), "total": round(time.perf_counter() - t0, 2)},
        "command": sys.argv, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "outputs": {"json": str(json_path), "png": str(png_path)},
    }
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    _plot(report, png_path)
    return report
