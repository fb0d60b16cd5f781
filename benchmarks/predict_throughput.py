"""Streamed ``bartsmiles predict`` against ``encode()`` on the same MOSES molecules: molecules/s and peak memory.

    python benchmarks/predict_throughput.py                       # runs/bbbp_scaffold's fine-tuned model
    python benchmarks/predict_throughput.py --n 200000 --model path/to/checkpoint_best.pt

Each phase runs in its own process, one after the other, on the same ``--n`` SMILES (the first
rows of MOSES ``train.csv.gz``), with ``--threads`` torch threads:

1. ``encode``      -- ``load_pretrained(shipped).encode(smiles)`` (the shipped pretrained model,
                      the one the fine-tuned model started from; encoder only);
2. ``streamed``    -- ``bartsmiles predict`` (the command's own code, in process) on a CSV of the
                      same SMILES, in chunks of ``--chunk-size``, output written incrementally;
3. ``in_memory``   -- ``predict_table`` on the same CSV (the whole table in memory, for the
                      streaming overhead and the memory that grows with the input);
4. ``encode`` again, so that a drift in the machine's load shows.

Each phase records wall time, CPU time (user + system), molecules/s by both, and its process's
peak RSS; the streamed phase also samples its RSS every 0.5 s, so that a flat curve shows the
memory does not grow with the rows read.  Ratios are taken within this one run.  Throughput and
the time for 1M molecules are extrapolated linearly from ``--n``.  Memory at 1M is not assumed:
``--memory-probe`` runs one more streamed phase with many small chunks and records how its RSS
moves from chunk to chunk (added to the results file's ``memory_probes``).

Output: ``benchmarks/results/predict_throughput.{json,md}`` (``--out``) with the command,
machine, date and seeds (no randomness is involved: prediction is deterministic).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("BARTSMILES_DATA") or REPO.parent / "shared" / "data")
DEFAULT_MODEL = REPO / "runs" / "bbbp_scaffold" / "finetune" / "checkpoint_best.pt"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) / 1024
    return float("nan")


class _Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.start_time = time.time()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.samples.append((round(time.time() - self.start_time, 1), round(_rss_mb(), 1)))


def _phase(name: str, workdir: Path, args: argparse.Namespace) -> dict:
    """Runs in a child process: one phase, timed; returns its record."""
    import torch

    from bartsmiles.evaluation.machine import _peak_rss_mb

    torch.set_num_threads(args.threads)
    csv_path = workdir / "input.csv"
    sampler = _Sampler()
    sampler.start()
    if name == "encode":
        from bartsmiles.model.pretrained import load_pretrained

        with open(csv_path, newline="") as handle:
            smiles = [row["smiles"] for row in csv.DictReader(handle)]
        load = time.time()
        model = load_pretrained(None)
        load = time.time() - load
        wall, cpu = time.time(), time.process_time()
        features = model.encode(smiles, batch_size=args.batch_size, progress=False)
        wall, cpu = time.time() - wall, time.process_time() - cpu
        extra = {"n_nan_rows": int(features[:, 0].__ne__(features[:, 0]).sum()), "timed": "encode() call only",
                 "model_load_wall_s": round(load, 2)}
    elif name == "streamed":
        from bartsmiles.cli.main import main

        out = workdir / "streamed.csv"
        argv = ["predict", "--model", str(args.model), "--input", str(csv_path), "--output", str(out),
                "--chunk-size", str(args.chunk_size), "--batch-size", str(args.batch_size), "--no-progress"]
        wall, cpu = time.time(), time.process_time()
        if main(argv) != 0:
            raise SystemExit("bartsmiles predict failed")
        wall, cpu = time.time() - wall, time.process_time() - cpu
        extra = {"timed": "the whole command: model load, reading, prediction, writing",
                 "command": "bartsmiles " + " ".join(shlex.quote(a) for a in argv), "output_bytes": out.stat().st_size}
    else:
        from bartsmiles.model.prediction import predict_table

        wall, cpu = time.time(), time.process_time()
        table = predict_table(args.model, csv_path, batch_size=args.batch_size)
        table.to_csv(workdir / "in_memory.csv", index=False)
        wall, cpu = time.time() - wall, time.process_time() - cpu
        extra = {"timed": "predict_table + to_csv, model load included"}
    sampler.stop.set()
    record = {"phase": name, "n": args.n, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
              "mol_per_s_wall": round(args.n / wall, 1), "mol_per_s_cpu": round(args.n / cpu, 1),
              "peak_rss_mb": _peak_rss_mb(), **extra}
    if name == "streamed":
        record["rss_samples_mb"] = sampler.samples[:: max(1, len(sampler.samples) // 40)]
    return record


def _run_phase(name: str, workdir: Path, argv: list[str]) -> dict:
    out = workdir / f"{name}.json"
    cmd = [sys.executable, __file__, *argv, "--phase", name, "--workdir", str(workdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{proc.stderr[-3000:]}")
    record = json.loads(out.read_text())
    print(json.dumps({k: v for k, v in record.items() if k != "rss_samples_mb"}), flush=True)
    return record


def _markdown(result: dict) -> str:
    r = result["ratios"]
    lines = [
        "# Streamed prediction throughput (`bartsmiles predict`) against `encode()`",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}; machine: {result['machine'].get('cpu', '?')}, "
        f"{result['machine'].get('cpu_count')} cores, {result['machine'].get('mem_total_gb')} GB; "
        f"torch threads: {result['settings']['threads']}. Seeds: none needed (prediction is deterministic).",
        "",
        f"**The machine was shared**: {result['shared_note']} Wall-clock rates depend on that share; the "
        "CPU-time rates and the ratios (taken within this one run) are what to compare.",
        "",
        f"Molecules: the first {result['settings']['n']:,} SMILES of MOSES `train.csv.gz`. Model: "
        f"`{result['settings']['model']}` (fine-tuned, {result['settings']['arch']}, head input "
        f"`{result['settings'].get('head_input', 'decoder_eos')}`); `encode()` uses the "
        "shipped pretrained model of the same shape.",
        "",
        "| phase | wall s | CPU s | mol/s (wall) | mol/s (CPU) | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        lines.append(f"| {p['phase']} | {p['wall_s']} | {p['cpu_s']} | {p['mol_per_s_wall']} | {p['mol_per_s_cpu']} "
                     f"| {p['peak_rss_mb']} |")
    lines += [
        "",
        f"- streamed / encode() molecules/s: **{r['streamed_vs_encode_cpu']:.2f}** by CPU time, "
        f"{r['streamed_vs_encode_wall']:.2f} by wall time (goal: >= 0.90).",
        f"- streamed / in-memory `predict_table`: **{r['streamed_vs_in_memory_cpu']:.2f}** by CPU time "
        f"(the cost of streaming itself), {r['streamed_vs_in_memory_wall']:.2f} by wall time.",
        f"- Extrapolated to 1M molecules (linear, at this run's CPU-time rate on {result['settings']['threads']} "
        f"thread(s)): streamed {result['extrapolated_1M']['streamed_cpu_hours']:.2f} CPU-hours, "
        f"encode() {result['extrapolated_1M']['encode_cpu_hours']:.2f} CPU-hours.",
        f"- Peak RSS of the streamed run: {result['phases'][1]['peak_rss_mb']} MB (in memory: "
        f"{result['phases'][2]['peak_rss_mb']} MB). Its RSS, sampled every 0.5 s, peaked at "
        f"{result['streamed_rss']['max_first_half_mb']} MB in the first half of the run and at "
        f"{result['streamed_rss']['max_second_half_mb']} MB in the second half ({result['settings']['chunk_size']:,}-row "
        "chunks).",
    ]
    encode_rates = [p["mol_per_s_cpu"] for p in result["phases"] if p["phase"] == "encode"]
    for probe in result.get("memory_probes", []):
        lines += _probe_lines(probe)
        if encode_rates:
            lines.append(f"  At this scale the streamed command ran at **{probe['mol_per_s_cpu'] / np.mean(encode_rates):.2f}** "
                         f"times `encode()`'s CPU-time rate measured above ({np.mean(encode_rates):.1f}; another "
                         "process of the same script, so a ratio across runs; the model load is spread over more rows).")
    if result["settings"].get("head_input", "decoder_eos") == "encoder_mean":
        why = ("The model's head reads the mean-pooled encoder output (`head_input=encoder_mean`), so a prediction "
               "runs the same encoder as `encode()` and no decoder; what remains is the head and the RDKit "
               "canonicalization of each SMILES (the form the model was fine-tuned on).")
    else:
        why = ("Why the ratio to `encode()` is what it is: a fine-tuned BART classifier runs the encoder *and* the "
               "decoder (the head reads the decoder's last `</s>` state), while `encode()` runs the encoder only; the "
               "prediction also canonicalizes each SMILES with RDKit (the form the model was fine-tuned on).")
    lines += ["", why + " The streamed / in-memory ratio isolates what streaming adds."]
    return "\n".join(lines) + "\n"


def _probe_lines(probe: dict) -> list[str]:
    """What the memory probe shows: the highest RSS in each quarter of the run, and the trend of its second half."""

    samples = np.asarray(probe["rss_samples_mb"], dtype=float)
    end = samples[-1, 0] or 1.0
    quarters = [samples[(samples[:, 0] >= q * end / 4) & (samples[:, 0] <= (q + 1) * end / 4), 1].max(initial=-np.inf)
                for q in range(4)]
    half = samples[samples[:, 0] >= end / 2]
    slope = float(np.polyfit(half[:, 0], half[:, 1], 1)[0]) if len(half) > 2 else float("nan")  # MB per second
    rows_per_s = probe["mol_per_s_wall"]
    per_1000 = slope / rows_per_s * 1e3
    verdict = ("no growth from chunk to chunk in this run" if per_1000 <= 0.05 else
               f"a slight upward trend, about {per_1000 * 1e3:.0f} MB per 1M rows if it went on" if per_1000 <= 1.0
               else f"RSS still grows, about {per_1000 * 1e3:.0f} MB per 1M rows if the trend went on")
    if probe["n"] >= 1_000_000:
        reach = "1M rows were run."
    else:  # the measured peak plus the second half's trend carried on to 1M rows (no growth: the peak)
        at_1m = probe["peak_rss_mb"] + max(per_1000, 0.0) * (1_000_000 - probe["n"]) / 1e3
        reach = (f"Carried on to 1M rows at that trend (a floor of zero growth), the peak would be about "
                 f"{at_1m:,.0f} MB (goal: under 1,500 MB); {probe['n']:,} rows were run, not 1M.")
    return [
        f"- Memory probe (`{probe['script_command']}`, {probe['date']}): {probe['n']:,} rows in chunks of "
        f"{probe['chunk_size']:,} ({-(-probe['n'] // probe['chunk_size'])} chunks), {probe['wall_s']:,} s wall, "
        f"{probe['mol_per_s_cpu']} molecules per CPU-second. Peak RSS {probe['peak_rss_mb']} MB; "
        f"the highest RSS in each quarter of the run: {', '.join(f'{q:.0f}' for q in quarters)} MB. Least-squares "
        f"trend of the second half: {slope:+.3f} MB/s at {rows_per_s} rows/s ({per_1000:+.2f} MB per 1,000 rows): "
        f"{verdict}. {reach}",
    ]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="fine-tuned checkpoint (read only)")
    parser.add_argument("--n", type=int, default=6_000, help="molecules (default: 6000)")
    parser.add_argument("--chunk-size", type=int, default=1_500, help="rows per streamed chunk (default: 1500)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per phase (default: 1)")
    parser.add_argument("--smiles", type=Path, default=DEFAULT_DATA / "pretrain" / "moses" / "train.csv.gz")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "predict_throughput"),
                        help="results path without suffix (.json and .md are written)")
    parser.add_argument("--memory-probe", action="store_true",
                        help="only a streamed run (--n rows, --chunk-size), its RSS sampled; added to the existing "
                             "results file's memory_probes")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        record = _phase(args.phase, args.workdir, args)
        (args.workdir / f"{args.phase}.json").write_text(json.dumps(record))
        return 0

    from bartsmiles.evaluation.machine import machine_info

    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    machine = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="predict-throughput-"))
    try:
        model = workdir / "model.pt"
        shutil.copyfile(args.model, model)  # a private copy: the run folder may be rewritten meanwhile
        with gzip.open(args.smiles, "rt", newline="") as handle, open(workdir / "input.csv", "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["smiles"])
            for i, row in enumerate(csv.DictReader(handle)):
                if i == args.n:
                    break
                writer.writerow([row["SMILES"]])
        child = [a for a in argv if a != "--memory-probe"] + ["--model", str(model)]
        if args.memory_probe:
            probe = _run_phase("streamed", workdir, child)
        else:
            phases = [_run_phase(name, workdir, child) for name in ("encode", "streamed", "in_memory", "encode")]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out)
    if args.memory_probe:
        result = json.loads(out.with_suffix(".json").read_text())
        probes = result.setdefault("memory_probes", [])
        if "memory_probe" in result:  # the single probe of earlier runs
            probes.insert(0, result.pop("memory_probe"))
        probes.append({
            **probe, "date": started, "machine": machine, "chunk_size": args.chunk_size,
            "script_command": "python " + " ".join(shlex.quote(a) for a in [str(Path(__file__).relative_to(REPO)), *argv])})
        out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
        out.with_suffix(".md").write_text(_markdown(result))
        print(_markdown(result))
        return 0
    enc = [p for p in phases if p["phase"] == "encode"]
    streamed, in_memory = phases[1], phases[2]
    mean = lambda key, rows: sum(p[key] for p in rows) / len(rows)  # noqa: E731
    samples = [mb for _, mb in streamed["rss_samples_mb"]] or [streamed["peak_rss_mb"]]
    half = max(1, len(samples) // 2)
    from bartsmiles.model.checkpoint import load_fairseq_state

    state = load_fairseq_state(args.model)
    arch = str(getattr(state["cfg"]["model"], "arch", "?"))
    head_input = str(((state.get("task_state") or {}).get("bartsmiles") or {}).get("head_input", "decoder_eos"))
    del state
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in [str(Path(__file__).relative_to(REPO)), *argv]),
        "date": started, "machine": machine, "seeds": [],
        "shared_note": "both of its 2 cores were busy with a long background benchmark the whole time; every "
                       "phase here ran under `nice -n 10` with OMP_NUM_THREADS=1 and got only part of a core.",
        "settings": {"n": args.n, "chunk_size": args.chunk_size, "batch_size": args.batch_size,
                     "threads": args.threads, "model": str(args.model), "arch": arch, "head_input": head_input,
                     "smiles": str(args.smiles)},
        "phases": phases,
        "ratios": {
            "streamed_vs_encode_cpu": streamed["mol_per_s_cpu"] / mean("mol_per_s_cpu", enc),
            "streamed_vs_encode_wall": streamed["mol_per_s_wall"] / mean("mol_per_s_wall", enc),
            "streamed_vs_in_memory_cpu": streamed["mol_per_s_cpu"] / in_memory["mol_per_s_cpu"],
            "streamed_vs_in_memory_wall": streamed["mol_per_s_wall"] / in_memory["mol_per_s_wall"],
            "encode_second_vs_first_cpu": enc[1]["mol_per_s_cpu"] / enc[0]["mol_per_s_cpu"],
        },
        "extrapolated_1M": {"streamed_cpu_hours": 1e6 / streamed["mol_per_s_cpu"] / 3600,
                            "encode_cpu_hours": 1e6 / mean("mol_per_s_cpu", enc) / 3600},
        "streamed_rss": {"max_first_half_mb": max(samples[:half]), "max_second_half_mb": max(samples[half:] or samples),
                         "last_mb": samples[-1]},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
