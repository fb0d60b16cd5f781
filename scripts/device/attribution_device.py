"""Runs on the lent GPU (scripts/device/attribution.sh), after the speed benchmark has fine-tuned its
model: does the GPU give the CPU's attribution scores, and which batch size suits the GPU?

* ``agreement``: the same molecules attributed with ``Attributor(checkpoint, method=m,
  precision="fp32", device="cpu")`` (the reference) and on ``--device`` in fp32, in the method's
  default precision and in bf16.  Per method and setting: the largest and the mean absolute
  difference of the atom scores, each over the mean absolute reference score; the mean (and
  smallest) per-molecule Spearman correlation of the atom scores; how often the top atom is the
  same; the largest difference of the model's output; the seconds.  ``OUT/agreement.json`` is
  rewritten after every setting, so a cut-off run still returns what it did.
* ``sweep``: molecules per second of each method at several ``batch_size`` values and token
  budgets (the most padded tokens per forward pass, :data:`bartsmiles.attribution.inputs.TOKEN_BUDGET`,
  8,192 by default, set here by replacing ``length_batches``' default for the run) on ``--device``
  (the benchmark times the defaults only), with the GPU's peak memory; rewritten to ``--json``
  after every setting.

Rehearse on a CPU machine (``--device cpu``: the "other" device is the CPU again)::

    .venv/bin/python scripts/device/attribution_device.py agreement --checkpoint CKPT --moses MOSES.csv.gz \\
        --n 10 --device cpu --json /tmp/agreement.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bartsmiles.attribution import Attributor, inputs

METHODS = ("gradient_x_input", "edit_occlusion", "edit_gradient")


def _speed_benchmark():
    """benchmarks/attribution_speed.py of the tree this script sits in (not a package: loaded by path)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "attribution_speed.py"
    spec = importlib.util.spec_from_file_location("attribution_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_smiles(path: str, n: int) -> list[str]:
    """The first ``n`` parsable SMILES of the first column of ``path``: the speed benchmark's molecules."""
    return _speed_benchmark().read_smiles(Path(path), 0, n)


def write_json(path: Path, data: dict) -> None:
    """``data`` to ``path`` atomically (a cut-off run leaves the last complete version)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(checkpoint: str, method: str, precision, device: str, smiles: list[str], batch_size=None,
        token_budget=None):
    """(results, info) of one method on ``smiles``: seconds after a two-molecule warm-up."""
    default_budget = inputs.length_batches.__defaults__
    if token_budget:
        inputs.length_batches.__defaults__ = (int(token_budget),)
    try:
        return _run(checkpoint, method, precision, device, smiles, batch_size, token_budget)
    finally:
        inputs.length_batches.__defaults__ = default_budget


def _run(checkpoint, method, precision, device, smiles, batch_size, token_budget):
    start = time.perf_counter()
    attributor = Attributor(checkpoint, method=method, precision=precision, device=device)
    load_s = time.perf_counter() - start
    attributor.attribute(smiles[:2], on_delta="ignore", batch_size=batch_size)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    results = attributor.attribute(smiles, on_delta="ignore", batch_size=batch_size)
    sync(device)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    info = {"method": method, "asked_precision": precision, "precision": attributor.precision,
            "model_device": str(next(attributor.model.parameters()).device), "batch_size": batch_size,
            "token_budget": int(token_budget or inputs.TOKEN_BUDGET),
            "n_molecules": len(results), "load_seconds": round(load_s, 2), "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu, 3), "molecules_per_second": round(len(results) / seconds, 2)}
    if device.startswith("cuda"):
        info["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return results, info


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (average ranks for ties); NaN when either side is constant."""
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def compare(reference, other) -> dict:
    """How far ``other``'s atom scores are from ``reference``'s (same molecules, same order)."""
    if [r.smiles for r in reference] != [o.smiles for o in other]:
        raise RuntimeError("the two runs attributed different molecules")
    a = np.concatenate([np.asarray(r.atom_scores, dtype=np.float64) for r in reference])
    b = np.concatenate([np.asarray(o.atom_scores, dtype=np.float64) for o in other])
    scale = float(np.mean(np.abs(a))) or 1.0
    rhos = np.array([spearman(np.asarray(r.atom_scores), np.asarray(o.atom_scores))
                     for r, o in zip(reference, other)])
    top = [int(np.argmax(r.atom_scores)) == int(np.argmax(o.atom_scores)) for r, o in zip(reference, other)]
    outputs = np.array([abs(r.output - o.output) for r, o in zip(reference, other)])
    return {"n_molecules": len(reference), "n_atoms": int(a.size), "mean_abs_reference_score": scale,
            "max_abs_diff_rel": float(np.max(np.abs(a - b)) / scale),
            "mean_abs_diff_rel": float(np.mean(np.abs(a - b)) / scale),
            "spearman_mean": float(np.nanmean(rhos)) if np.isfinite(rhos).any() else None,
            "spearman_min": float(np.nanmin(rhos)) if np.isfinite(rhos).any() else None,
            "spearman_n_undefined": int(np.sum(~np.isfinite(rhos))),
            "top_atom_same": float(np.mean(top)), "max_abs_output_diff": float(np.max(outputs))}


def agreement(args) -> None:
    smiles = read_smiles(args.moses, args.n)
    report = {"checkpoint": args.checkpoint, "n_molecules": len(smiles), "device": args.device,
              "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
              "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
              "float32_matmul_precision": torch.get_float32_matmul_precision(),
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "reference": "device=cpu, precision=fp32", "methods": {}}
    out = Path(args.json)
    for method in args.methods.split(","):
        entry = report["methods"].setdefault(method, {"runs": {}, "vs_cpu_fp32": {}})
        try:
            reference, info = run(args.checkpoint, method, "fp32", "cpu", smiles)
            entry["runs"]["cpu_fp32"] = info
            write_json(out, report)
            default = None
            for label, precision in (("fp32", "fp32"), ("default", None), ("bf16", "bf16")):
                if label == "bf16" and default == "bf16":
                    continue  # the default already was bf16
                results, info = run(args.checkpoint, method, precision, args.device, smiles)
                default = info["precision"] if label == "default" else default
                key = f"{args.device.replace(':', '')}_{label}"
                entry["runs"][key] = info
                entry["vs_cpu_fp32"][key] = compare(reference, results)
                print(method, key, info["precision"], json.dumps(entry["vs_cpu_fp32"][key]), flush=True)
                write_json(out, report)
        except Exception as exc:  # keep the other method's numbers
            entry["error"] = f"{type(exc).__name__}: {exc}"
            print(method, "failed:", entry["error"], flush=True)
        write_json(out, report)


def sweep(args) -> None:
    smiles = read_smiles(args.moses, args.n)
    report = {"checkpoint": args.checkpoint, "n_molecules": len(smiles), "device": args.device,
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "runs": []}
    out = Path(args.json)
    for spec in args.sizes.split(";"):
        method, _, sizes = spec.partition(":")
        method, _, precision = method.partition("@")
        for size in sizes.split(","):
            rows, _, budget = size.partition("/")
            try:
                _, info = run(args.checkpoint, method, precision or None, args.device, smiles, int(rows),
                              int(budget) if budget else None)
            except Exception as exc:
                info = {"method": method, "batch_size": int(rows), "token_budget": budget or None,
                        "error": f"{type(exc).__name__}: {exc}"}
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
            report["runs"].append(info)
            print(json.dumps(info), flush=True)
            write_json(out, report)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("agreement", "sweep"))
    p.add_argument("--checkpoint", required=True, help="the fine-tuned checkpoint (the speed run's checkpoint_best.pt)")
    p.add_argument("--moses", required=True, help="MOSES CSV(.gz); the first --n parsable SMILES are attributed")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--device", default="cuda", help="the device compared with the CPU (agreement) or timed (sweep)")
    p.add_argument("--methods", default=",".join(METHODS), help="agreement: comma-separated methods")
    p.add_argument("--sizes", default="edit_occlusion:256,1024/32768,4096/131072;gradient_x_input:256,1024/32768",
                   help="sweep: METHOD[@PRECISION]:ROWS[/TOKEN_BUDGET],...;... (no precision: the method's "
                        "default; no budget: TOKEN_BUDGET)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", required=True, help="where the report is written (rewritten as it goes)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    agreement(args) if args.what == "agreement" else sweep(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
