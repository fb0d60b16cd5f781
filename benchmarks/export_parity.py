"""Parity and speed of the exported models on 1,000 MoleculeNet molecules; writes a JSON record.

    OMP_NUM_THREADS=1 python benchmarks/export_parity.py                # shipped model + a 1-epoch ESOL fine-tune
    python benchmarks/export_parity.py --finetuned runs/esol_1ep        # reuse a fine-tuned run
    python benchmarks/export_parity.py --threads 2 --no-finetune

What it does, all in one process:

1. 1,000 molecules: an equal seeded sample from each of BBBP, ESOL, Lipophilicity and FreeSolv
   (``bartsmiles.data.datasets.load_dataset``, files from ``$BARTSMILES_DATA``), SMILES longer
   than the model's positions cut as ``on_overflow="truncate"`` does (counted).
2. The shipped model exported with ``bartsmiles export --format hf`` and ``--format onnx``;
   mean-pooled features from ``PretrainedModel.encode`` (fairseq), from the transformers folder
   (``AutoTokenizer`` + ``AutoModel``) and from onnxruntime (``tokenizer.json`` + ``model.onnx``):
   max and mean abs differences.
3. A fine-tuned model (by default 1 epoch of the shipped model on ESOL, scaffold split), exported
   both ways: logits of the fairseq model vs transformers' ``BartForSequenceClassification`` and
   vs onnxruntime; predictions in the original units too.
4. Throughput on the same 1,000 molecules: ``PretrainedModel.encode`` (torch) vs ``OnnxModel.encode``
   (onnxruntime) vs the transformers folder, each end to end from SMILES (tokenizing included),
   batch 64, the same number of threads (``--threads``; torch.set_num_threads and onnxruntime's
   intra-op threads); best and median of ``--repeats`` timed runs after one warm-up.

Output: ``benchmarks/results/export_parity.json`` (``--out``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("BARTSMILES_DATA") or REPO.parent / "shared" / "data")
DATASETS = ("bbbp", "esol", "lipo", "freesolv")


def sample_molecules(data_dir: Path, n: int, seed: int) -> tuple[list[str], dict[str, int]]:
    from bartsmiles.core.tokenizer import SmilesTokenizer
    from bartsmiles.data.datasets import load_dataset

    tokenizer, rng = SmilesTokenizer(), random.Random(seed)
    per = n // len(DATASETS)
    smiles, counts = [], {}
    for i, name in enumerate(DATASETS):
        pool = []
        for s in load_dataset(name, data_dir, download=False).smiles:
            try:
                tokenizer.tokenize(s)
                pool.append(s)
            except ValueError:
                continue
        take = per + (n - per * len(DATASETS) if i == len(DATASETS) - 1 else 0)
        chosen = rng.sample(pool, min(take, len(pool)))
        counts[name] = len(chosen)
        smiles += chosen
    return smiles, counts


def diff(a, b) -> dict[str, float]:
    import numpy as np

    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    scale = float(np.max(np.abs(np.asarray(b, dtype=np.float64))))
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "max_abs_reference_value": scale}


def timed(fn, repeats: int) -> dict[str, float]:
    fn()  # warm-up: sessions, allocators, first-call overheads
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
            "runs_s": [round(t, 3) for t in times]}


def finetune_once(dataset: str, data_dir: Path, save_dir: Path, epochs: int) -> Path:
    """The shipped model fine-tuned ``epochs`` epoch(s) on a registered dataset (scaffold split)."""
    from bartsmiles.model.resolve import shipped_model_dir
    from bartsmiles.training.finetuning import FinetuneConfig, finetune

    result = finetune(FinetuneConfig(data=dataset, data_dir=str(data_dir), pretrained=str(shipped_model_dir()),
                                     save_dir=str(save_dir), epochs=epochs, cpu=True, score_test=False,
                                     progress=False, keep_last_epochs=0, log_interval=1000))
    return Path(result.best_checkpoint)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=1000, help="molecules (default: 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="threads of torch and onnxruntime (default: 1)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default: 3)")
    parser.add_argument("--finetuned", default=None, help="a fine-tuned run folder / checkpoint to use instead")
    parser.add_argument("--finetune-data", default="esol", help="registered dataset of the 1-epoch fine-tune")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--no-finetune", action="store_true", help="features only")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "export_parity.json")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from bartsmiles.evaluation.machine import machine_info
    from bartsmiles.model.export import OnnxModel, export_hf, export_onnx, fairseq_outputs, hf_outputs, load_source
    from bartsmiles.model.pretrained import load_pretrained

    torch.set_num_threads(args.threads)
    record: dict = {"command": " ".join(["python", "benchmarks/export_parity.py", *map(shlex.quote, argv or sys.argv[1:])]),
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine_info(), "threads": {"torch": torch.get_num_threads(),
                                                           "onnxruntime_intra_op": args.threads,
                                                           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}}
    for name in ("transformers", "tokenizers", "onnx", "onnxruntime"):
        record["machine"]["versions"][name] = __import__(name).__version__
    smiles, counts = sample_molecules(args.data_dir, args.n, args.seed)
    model = load_pretrained(None)
    lengths = [len(ids) for ids in model.encode_ids(smiles, on_overflow="truncate")]
    record["molecules"] = {"n": len(smiles), "per_dataset": counts, "seed": args.seed,
                           "positions_mean": round(float(np.mean(lengths)), 1), "positions_max": max(lengths),
                           "truncated": sum(len(model.tokenizer.tokenize(s)) + 2 > model.max_positions for s in smiles)}

    with tempfile.TemporaryDirectory(prefix="export-parity-") as tmp:
        tmp = Path(tmp)
        # ---------------------------------------------------------------- features, shipped model
        source = load_source(None)
        t0 = time.perf_counter()
        hf_summary = export_hf(source, tmp / "hf")
        t1 = time.perf_counter()
        onnx_summary = export_onnx(source, tmp / "onnx")
        t2 = time.perf_counter()
        record["export_seconds"] = {"hf": round(t1 - t0, 1), "onnx": round(t2 - t1, 1)}
        record["self_check"] = {"hf": hf_summary["self_check"], "onnx": onnx_summary["self_check"]}
        fairseq_features = model.encode(smiles, batch_size=args.batch_size, progress=False, on_overflow="truncate")
        hf_features = hf_outputs(tmp / "hf", smiles, batch_size=args.batch_size)["features"]
        runtime = OnnxModel(tmp / "onnx", threads=args.threads)
        onnx_features = runtime.encode(smiles, batch_size=args.batch_size)
        record["features"] = {"model": "shipped (bartsmiles_small)", "dim": int(fairseq_features.shape[1]),
                              "hf_vs_fairseq": diff(hf_features, fairseq_features),
                              "onnx_vs_fairseq": diff(onnx_features, fairseq_features)}

        # ---------------------------------------------------------------- throughput
        n = len(smiles)
        speed = {
            "torch_encode": timed(lambda: model.encode(smiles, batch_size=args.batch_size, progress=False,
                                                       on_overflow="truncate"), args.repeats),
            "onnxruntime": timed(lambda: runtime.encode(smiles, batch_size=args.batch_size), args.repeats),
            "transformers": timed(lambda: hf_outputs(tmp / "hf", smiles, batch_size=args.batch_size), args.repeats),
        }
        for entry in speed.values():
            entry["molecules_per_s"] = round(n / entry["best_s"], 1)
        speed["onnxruntime_speedup_over_torch"] = round(speed["torch_encode"]["best_s"] / speed["onnxruntime"]["best_s"], 2)
        speed["note"] = ("end to end from SMILES (tokenizing included), batches of the molecules sorted by length, "
                         f"batch size {args.batch_size}; the transformers timing includes loading the folder")
        record["throughput"] = speed

        # ---------------------------------------------------------------- logits, a fine-tuned model
        if not args.no_finetune:
            t0 = time.perf_counter()
            checkpoint = (Path(args.finetuned) if args.finetuned else
                          finetune_once(args.finetune_data, args.data_dir, tmp / "finetune", args.finetune_epochs))
            finetune_s = None if args.finetuned else round(time.perf_counter() - t0, 1)
            tuned = load_source(checkpoint)
            export_hf(tuned, tmp / "hf_tuned")
            export_onnx(tuned, tmp / "onnx_tuned")
            reference = fairseq_outputs(tuned, smiles, batch_size=args.batch_size, on_overflow="truncate")
            via_hf = hf_outputs(tmp / "hf_tuned", smiles, batch_size=args.batch_size)
            via_onnx = OnnxModel(tmp / "onnx_tuned", threads=args.threads).run(smiles, batch_size=args.batch_size)
            record["finetuned"] = {
                "model": (str(args.finetuned) if args.finetuned else
                          f"shipped model fine-tuned {args.finetune_epochs} epoch(s) on {args.finetune_data} "
                          "(scaffold split)"),
                "finetune_seconds": finetune_s, "task": tuned.task,
                "logits": {"hf_vs_fairseq": diff(via_hf["logits"], reference["logits"]),
                           "onnx_vs_fairseq": diff(via_onnx["logits"], reference["logits"])},
                "predictions": {"hf_vs_fairseq": diff(via_hf["predictions"], reference["predictions"]),
                                "onnx_vs_fairseq": diff(via_onnx["predictions"], reference["predictions"])},
                "features": {"hf_vs_fairseq": diff(via_hf["features"], reference["features"]),
                             "onnx_vs_fairseq": diff(via_onnx["features"], reference["features"])},
            }

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("molecules", "features", "throughput") if k in record}, indent=2))
    if "finetuned" in record:
        print(json.dumps({k: record["finetuned"][k] for k in ("model", "logits", "predictions")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
