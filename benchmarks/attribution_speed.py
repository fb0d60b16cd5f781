"""How fast is each attribution method?  Molecules per second on MOSES-size molecules.

A fine-tuned model is made once: the shipped pretrained model (``--pretrained``) fine-tuned for
one epoch on a small synthetic task (label: the molecule has an aromatic nitrogen; MOSES test
rows after the timed ones).  Then each method (:data:`bartsmiles.attribution.METHODS` and the
variants below) attributes the first ``--n-molecules`` SMILES of the MOSES test file, with the
settings recorded next to each number; a method's default settings are used unless listed.
Shapley sampling runs 10 permutations here (the default is 25): its time grows linearly with
``n_samples`` (one forward pass per player per permutation), so 25 take about 2.5 times as long.

Writes ``OUT/attribution_speed.json`` (``attribution_speed_encoder_mean.json`` with ``--head-input
encoder_mean``, a model whose head reads the pooled encoder, so no decoder runs): the machine (:func:`bartsmiles.evaluation.machine.machine_info`),
the command, torch threads, the molecules (count, mean atoms and tokens), per method the seconds
and molecules/s, and each method's speed relative to the ECFP4 + RF map.

The committed run (2 CPU cores shared with a long benchmark and other jobs, load average about 10;
one torch thread)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/attribution_speed.py --n-molecules 30 --n-slow 10

The two-core run of the default (``benchmarks/results/attribution_speed_2cores/``; nothing else
running, torch's default of 2 threads, 1,000 molecules), once per head::

    .venv/bin/python benchmarks/attribution_speed.py --runs gradient_x_input,gradient_x_input_atoms,gradient_x_input_plain,ecfp_rf \
        --n-molecules 1000 --work-dir runs/attribution_speed_2c --out benchmarks/results/attribution_speed_2cores
    (the same with --head-input encoder_mean --work-dir runs/attribution_speed_2c_enc)

Edit occlusion with repeated copies deleted together and its default precision (bf16 where the CPU
has it in hardware), against fp32 and without the joint copies; the same 1,000 molecules, nothing
else running (``benchmarks/results/attribution_speed_2cores_bf16/``)::

    .venv/bin/python benchmarks/attribution_speed.py --runs gradient_x_input,gradient_x_input_bf16,edit_occlusion,edit_occlusion_fp32,edit_occlusion_single,ecfp_rf \
        --n-molecules 1000 --work-dir runs/attribution_speed_2c --out benchmarks/results/attribution_speed_2cores_bf16

Session 11, the defaults after the last decoder layer ran at ``</s>`` only and bf16 edit occlusion
ran a bfloat16 copy of the model; three rounds, round-robin, each run's median round
(``benchmarks/results/attribution_speed_2cores_s11/``; ``*_full_decoder``: fairseq's forward over
every decoder position, for comparison; ``edit_occlusion_autocast``: bf16 as autocast on the float32
model instead of the bfloat16 copy, compared in ``attribution_speed_2cores_s11_ab/``)::

    .venv/bin/python benchmarks/attribution_speed.py --rounds 3 --runs gradient_x_input,gradient_x_input_full_decoder,gradient_x_input_bf16,edit_occlusion,edit_occlusion_full_decoder,edit_occlusion_fp32,edit_occlusion_single,ecfp_rf \
        --n-molecules 1000 --work-dir runs/attribution_speed_2c --out benchmarks/results/attribution_speed_2cores_s11

Session 13 (``benchmarks/results/attribution_speed_2cores_s13/``; an Intel Xeon, 2 cores, the
training jobs paused): branch fill against none, when the edit methods did not yet fill by default
(so ``edit_occlusion`` and ``edit_gradient`` there ran without it; ``*_nofill`` name that now)::

    .venv/bin/python benchmarks/attribution_speed.py --rounds 3 --runs edit_gradient,edit_occlusion,edit_occlusion_fill,edit_gradient_fill,ecfp_rf \
        --n-molecules 1000 --work-dir runs/attribution_speed_2c --out benchmarks/results/attribution_speed_2cores_s13

Session 14 (``benchmarks/results/attribution_speed_2cores_s14_int8/``; the same Intel Xeon, nothing
else running): the edit methods at their new CPU default, int8 edits and an fp32 gradient
(``edit_gradient``, ``edit_occlusion``), against bf16 and fp32, and the gradient method in both;
the same command at commit abf7196, before GELU ran in place, gave
``attribution_speed_2cores_s14_int8_before_inplace_gelu/``::

    .venv/bin/python benchmarks/attribution_speed.py --rounds 3 --runs edit_gradient,edit_gradient_bf16,edit_gradient_fp32,edit_occlusion,edit_occlusion_bf16,gradient_x_input,gradient_x_input_bf16,ecfp_rf \
        --n-molecules 1000 --work-dir runs/attribution_speed_2c --out benchmarks/results/attribution_speed_2cores_s14_int8

Session 15 (``benchmarks/results/attribution_speed_2cores_s15/``; the same Intel Xeon model, nothing
else running): the defaults again on a second day::

    .venv/bin/python benchmarks/attribution_speed.py --rounds 3 --runs edit_gradient,edit_gradient_fp32,edit_occlusion,gradient_x_input,ecfp_rf \
        --n-molecules 1000 --work-dir runs/attribution_speed_2c --out benchmarks/results/attribution_speed_2cores_s15

``--device cuda`` fine-tunes and attributes on a GPU (``scripts/device/attribution.sh`` runs it there).

On an oversubscribed machine two torch threads are slower than one (every parallel region
waits for a descheduled thread).  Numbers from a shared machine vary by a factor of two or more
between runs; compare methods within one run: ``speed_relative_to_ecfp_rf`` divides each method's
molecules/s by that of the ECFP4 + random forest similarity map timed in the same run, and
``cpu_speed_relative_to_ecfp_rf`` does the same with molecules per CPU second of this process
(``time.process_time``), which a busy machine disturbs less than the wall clock.

Smoke run (seconds, random-init tiny model, numbers meaningless)::

    .venv/bin/python benchmarks/attribution_speed.py --smoke --out /tmp/speed
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from sklearn.ensemble import RandomForestClassifier

from bartsmiles.attribution import Attributor
from bartsmiles.attribution.fingerprint_map import fingerprint_atom_weights
from bartsmiles.core.chem import match_smarts, parse_smiles
from bartsmiles.errors import DeviceError, InvalidSmilesError
from bartsmiles.evaluation.baselines import ecfp4
from bartsmiles.evaluation.machine import machine_info
from bartsmiles.model.device import resolve_device
from bartsmiles.model.predictor import PropertyPredictor
from bartsmiles.training.finetuning import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MOSES_TEST = Path(os.environ.get("BARTSMILES_DATA") or ROOT.parent / "shared" / "data") / "pretrain" / "moses" / "test.csv.gz"

#: (name, method, options): what is timed; options not listed are the method's defaults.  ``ecfp_rf``
#: is the reference: a 200-tree ECFP4 random forest fitted on the fine-tuning data, its batched
#: fingerprint similarity map (:func:`bartsmiles.attribution.fingerprint_map.fingerprint_atom_weights`)
RUNS = [
    ("ig", "ig", {"n_steps": 50}),
    ("gradient_x_input", "gradient_x_input", {}),
    ("gradient_x_input_atoms", "gradient_x_input", {"environment_radius": 0}),
    ("gradient_x_input_plain", "gradient_x_input", {"alpha": 1.0, "environment_radius": 0}),
    ("gradient_x_input_a075", "gradient_x_input", {"alpha": 0.75}),
    ("gradient_x_input_mask", "gradient_x_input", {"baselines": "mask"}),
    ("gradient_x_input_bf16", "gradient_x_input", {"precision": "bf16"}),
    ("mask_occlusion", "mask_occlusion", {}),
    ("mask_occlusion_attached", "mask_occlusion", {"attached": True}),
    ("edit_occlusion", "edit_occlusion", {}),
    ("edit_occlusion_single", "edit_occlusion", {"joint_copies": False}),
    ("edit_occlusion_fp32", "edit_occlusion", {"precision": "fp32"}),
    ("edit_occlusion_bf16", "edit_occlusion", {"precision": "bf16"}),
    ("edit_occlusion_full_decoder", "edit_occlusion", {"eos_only": False}),
    ("edit_occlusion_autocast", "edit_occlusion", {"bf16_copy": False}),
    ("edit_gradient", "edit_gradient", {}),
    ("edit_gradient_fp32", "edit_gradient", {"precision": "fp32"}),
    ("edit_gradient_bf16", "edit_gradient", {"precision": "bf16"}),
    ("edit_occlusion_fill", "edit_occlusion", {"branch_fill": True}),
    ("edit_gradient_fill", "edit_gradient", {"branch_fill": True}),
    ("edit_occlusion_nofill", "edit_occlusion", {"branch_fill": False}),
    ("edit_gradient_nofill", "edit_gradient", {"branch_fill": False}),
    ("gradient_x_input_full_decoder", "gradient_x_input", {"eos_only": False}),
    ("shapley", "shapley", {"n_samples": 10}),
    ("shapley_atoms", "shapley", {"n_samples": 10, "features": "atoms"}),
    ("shapley_ablation", "shapley", {"estimator": "ablation"}),
    ("ecfp_rf", "", {"n_estimators": 200}),
]
#: the runs timed on the first ``--n-slow`` molecules only (seconds per molecule, not per run, compare)
SLOW = ("ig", "shapley", "shapley_atoms", "shapley_ablation")


def read_smiles(path: Path, skip: int, n: int) -> list[str]:
    """``n`` parsable SMILES of the first column of ``path``, after the first ``skip`` data rows."""
    frame = pd.read_csv(path, skiprows=range(1, skip + 1), nrows=2 * n + 50)
    out = []
    for s in frame[frame.columns[0]].dropna().astype(str):
        try:
            parse_smiles(s)
        except InvalidSmilesError:
            continue
        out.append(s)
        if len(out) == n:
            break
    return out


def fine_tuning_data(args) -> pd.DataFrame:
    """MOSES rows after the timed ones, labelled 'has an aromatic nitrogen' (SMARTS ``n``)."""
    smiles = read_smiles(Path(args.moses), args.n_molecules, args.n_train + 100)
    return pd.DataFrame({"smiles": smiles, "aromatic_n": [float(bool(match_smarts(parse_smiles(s), "n"))) for s in smiles]})


def fine_tuned_model(args, work: Path) -> tuple[str, dict]:
    """A 1-epoch fine-tune on 'has an aromatic nitrogen' (MOSES rows after the timed ones)."""
    frame = fine_tuning_data(args)
    (work / "data").mkdir(parents=True, exist_ok=True)
    frame.iloc[: args.n_train].to_csv(work / "data" / "train.csv", index=False)
    frame.iloc[args.n_train:].to_csv(work / "data" / "valid.csv", index=False)
    start = time.perf_counter()
    result = finetune(FinetuneConfig(
        data=str(work / "data"), pretrained="" if args.smoke else args.pretrained,
        arch="bartsmiles_tiny" if args.smoke else "", save_dir=str(work / "run"), epochs=1, batch_size=32,
        lr=1e-4, keep_last_epochs=1, cpu=args.device == "cpu", num_workers=0, log_interval=100, score_test=False, progress=False,
        head_input=args.head_input))
    return result.best_checkpoint, {"task": "aromatic nitrogen (SMARTS n)", "n_train": args.n_train,
                                    "head_input": args.head_input,
                                    "n_valid": len(frame) - args.n_train, "epochs": 1,
                                    "pretrained": "" if args.smoke else args.pretrained,
                                    "seconds": round(time.perf_counter() - start, 1),
                                    "valid_metric": result.best_valid_metric}


def time_method(predictor, method: str, options: dict, smiles: list[str], device: str = "cpu") -> dict:
    """Seconds and molecules/s of one method on ``smiles`` (after a two-molecule warm-up) on ``device``."""
    settings = {k: v for k, v in options.items() if k not in ("precision", "eos_only", "bf16_copy")}
    attributor = Attributor(predictor, method=method, precision=options.get("precision"),  # None: the method's default
                            device=device)
    if options.get("eos_only") is False:  # fairseq's own forward: every decoder position of the last layer
        attributor.eos_only = False
    if options.get("bf16_copy") is False:  # bf16 as autocast on the float32 model, the way before the bf16 copy
        attributor._forward_only_model = lambda: attributor.model
    attributor.attribute(smiles[:2], on_delta="ignore", **settings)
    start, cpu = time.perf_counter(), time.process_time()
    results = attributor.attribute(smiles, on_delta="ignore", **settings)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    deltas = [abs(a.delta) for a in results]
    return {"method": method, "options": options, "precision": attributor.precision, "eos_only": attributor.eos_only,
            "device": str(attributor.device), "variant": results[0].method,
            "baseline": results[0].baseline,
            "n_molecules": len(results), "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
            "molecules_per_second": round(len(results) / seconds, 3),
            "molecules_per_cpu_second": round(len(results) / cpu, 3), "max_abs_delta": float(max(deltas)),
            "additive": results[0].converged is not None}


def median_round(results: list[dict]) -> dict:
    """One run's record over its rounds: the round of median molecules/s (of two, the slower), with
    every round's molecules/s beside it."""
    middle = sorted(results, key=lambda r: r["molecules_per_second"])[(len(results) - 1) // 2]
    return {**middle, "rounds": len(results), "molecules_per_second_by_round": [r["molecules_per_second"] for r in results]}


def time_fingerprint_map(args, options: dict, smiles: list[str]) -> dict:
    """Seconds and molecules/s of the ECFP4 + random forest similarity map (fit not timed)."""
    frame = fine_tuning_data(args).iloc[: args.n_train]
    forest = RandomForestClassifier(n_estimators=options["n_estimators"], random_state=0, n_jobs=1)
    forest.fit(ecfp4(list(frame.smiles)), frame.aromatic_n.to_numpy())
    column = list(forest.classes_).index(1.0) if 1.0 in forest.classes_ else 0
    start, cpu = time.perf_counter(), time.process_time()
    weights = fingerprint_atom_weights([parse_smiles(s) for s in smiles], lambda x: forest.predict_proba(x)[:, column])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"method": "ecfp_rf", "options": options, "variant": "batched similarity map", "n_molecules": len(weights),
            "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
            "molecules_per_second": round(len(weights) / seconds, 3),
            "molecules_per_cpu_second": round(len(weights) / cpu, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--moses", default=str(MOSES_TEST), help="MOSES CSV(.gz); SMILES in the first column")
    p.add_argument("--pretrained", default=str(ROOT / "pretrained"), help="pretrained model folder or .pt")
    p.add_argument("--n-molecules", type=int, default=100, help="molecules timed per method")
    p.add_argument("--n-slow", type=int, default=20, help="molecules timed for the slow runs (SLOW)")
    p.add_argument("--n-train", type=int, default=400, help="fine-tuning molecules (1 epoch)")
    p.add_argument("--runs", default=",".join(name for name, _, _ in RUNS), help="comma-separated names of RUNS")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--work-dir", default="runs/attribution_speed", help="fine-tuning data and checkpoint")
    p.add_argument("--head-input", default="decoder_eos", choices=("decoder_eos", "encoder_mean"),
                   help="what the fine-tuned model's head reads (bartsmiles.tasks.property_head); encoder_mean "
                        "writes attribution_speed_encoder_mean.json")
    p.add_argument("--device", default="cpu", help="where the model is fine-tuned and attributed: cpu (default) "
                                                   "or cuda (the ECFP4 + RF map always runs on the CPU)")
    p.add_argument("--rounds", type=int, default=1,
                   help="time every run this many times, round-robin, and report each run's median round "
                        "(the first pass over new batch shapes is slower, in bf16 above all)")
    p.add_argument("--smoke", action="store_true", help="tiny random-init model, 6 molecules, cheap settings")
    args = p.parse_args(argv)
    if args.smoke:
        args.n_molecules, args.n_train, args.n_slow = 6, 40, 6
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = sorted(set(names) - {name for name, _, _ in RUNS})
    if unknown:
        raise SystemExit(f"unknown run(s) {unknown}; choose from {[name for name, _, _ in RUNS]}")
    if not Path(args.moses).is_file():
        raise SystemExit(f"MOSES not found at {args.moses} (--moses)")
    try:
        resolve_device(args.device)
    except DeviceError as exc:
        raise SystemExit(f"--device: {exc}") from None

    smiles = read_smiles(Path(args.moses), 0, args.n_molecules)
    checkpoint, model_info = fine_tuned_model(args, Path(args.work_dir))
    predictor = PropertyPredictor(checkpoint)
    molecules = Attributor(predictor).prepare(smiles)
    timed: dict[str, list[dict]] = {}
    for round_ in range(args.rounds):  # round-robin, so that no method alone pays the first pass's warm-up
        for name, method, options in RUNS:
            if name not in names:
                continue
            if name == "ecfp_rf":
                result = time_fingerprint_map(args, options, smiles)
            else:
                options = {**options, "n_steps": 4, "n_samples": 2} if args.smoke else options
                result = time_method(predictor, method, options, smiles[: args.n_slow] if name in SLOW else smiles,
                                     args.device)
            timed.setdefault(name, []).append(result)
            print(f"round {round_ + 1} {name:26s} {result['molecules_per_second']:8.2f} molecules/s, "
                  f"{result['molecules_per_cpu_second']:8.2f} per CPU second "
                  f"({result['seconds']} s for {result['n_molecules']})", flush=True)
    runs = {name: median_round(results) for name, results in timed.items()}
    report = {"command": " ".join(["python", "benchmarks/attribution_speed.py", *(sys.argv[1:] if argv is None else argv)]),
              "environment": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                              "torch_threads": torch.get_num_threads(), "device": args.device},
              "machine": machine_info(), "model": model_info,
              "molecules": {"source": str(args.moses), "n": len(smiles),
                            "mean_atoms": round(sum(m.n_atoms for m in molecules) / len(molecules), 1),
                            "mean_tokens": round(sum(m.n_tokens for m in molecules) / len(molecules), 1)},
              "runs": runs,
              "speed_relative_to_ecfp_rf": {name: round(r["molecules_per_second"] / runs["ecfp_rf"]["molecules_per_second"], 4)
                                            for name, r in runs.items()} if "ecfp_rf" in runs else {},
              "cpu_speed_relative_to_ecfp_rf": {
                  name: round(r["molecules_per_cpu_second"] / runs["ecfp_rf"]["molecules_per_cpu_second"], 4)
                  for name, r in runs.items()} if "ecfp_rf" in runs else {}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "attribution_speed.json" if args.head_input == "decoder_eos" else f"attribution_speed_{args.head_input}.json"
    (out / name).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
