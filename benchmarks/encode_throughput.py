"""Molecules per second of ``PretrainedModel.encode`` on MOSES SMILES; writes a JSON record.

    python benchmarks/encode_throughput.py                         # the shipped model
    python benchmarks/encode_throughput.py --model path/to/folder  # any model folder / .pt
    python benchmarks/encode_throughput.py --random-init bartsmiles_small
        # a randomly initialized model of that shape, exported with the shipped dict.txt
        # (speed depends on the shape only, so this stands in until the shipped model exists)

Output: ``benchmarks/results/encode_throughput.json`` (``--out``) with the command, machine,
date, model description and the measured rate.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("BARTSMILES_DATA") or REPO.parent / "shared" / "data")


def read_smiles(path: Path, n: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as handle:
        rows = csv.DictReader(handle)
        out = []
        for row in rows:
            out.append(row["SMILES"])
            if len(out) == n:
                break
    return out


def random_model(arch: str, folder: Path) -> Path:
    from bartsmiles.model.checkpoint import export_model, write_untrained_checkpoint
    from bartsmiles.model.resolve import shipped_model_dir

    raw = write_untrained_checkpoint(arch, shipped_model_dir() / "dict.txt", folder / "raw" / "checkpoint.pt")
    export_model(raw, folder / "model")
    return folder / "model"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or .pt (default: the shipped model)")
    parser.add_argument("--random-init", default=None, metavar="ARCH",
                        help="time a randomly initialized model of this architecture instead")
    parser.add_argument("--n", type=int, default=10_000, help="molecules to encode")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pooling", default="mean", choices=["mean", "bos", "eos"])
    parser.add_argument("--smiles", type=Path, default=DEFAULT_DATA / "pretrain" / "moses" / "train.csv.gz",
                        help="CSV(.gz) with a SMILES column")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "encode_throughput.json")
    args = parser.parse_args(argv)

    import torch

    from bartsmiles.model.pretrained import load_pretrained

    if args.threads:
        torch.set_num_threads(args.threads)
    smiles = read_smiles(args.smiles, args.n)
    with tempfile.TemporaryDirectory() as tmp:
        source = random_model(args.random_init, Path(tmp)) if args.random_init else args.model
        model = load_pretrained(source, device=args.device)
        model.encode(smiles[:args.batch_size], batch_size=args.batch_size, progress=False)  # warm-up
        start = time.perf_counter()
        features = model.encode(smiles, batch_size=args.batch_size, pooling=args.pooling,
                                progress=False, on_overflow="truncate")
        seconds = time.perf_counter() - start
    lengths = [len(model.tokenizer.tokenize(s)) + 2 for s in smiles]
    record = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]) if argv is None
        else "encode_throughput.py " + " ".join(map(shlex.quote, argv)),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": str(model.device), "torch": str(torch.__version__),
                    "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "model": {"source": str(args.model or "shipped") if not args.random_init
                  else f"random init {args.random_init} (exported with export_model, fp16 -> fp32 on load)",
                  "arch": model.metadata.get("arch"), "architecture": model.metadata.get("architecture"),
                  "parameters_encoder": sum(p.numel() for p in model.model.encoder.parameters())},
        "data": {"file": str(args.smiles), "n": len(smiles),
                 "mean_positions": sum(lengths) / len(lengths), "max_positions": max(lengths)},
        "batch_size": args.batch_size, "pooling": args.pooling,
        "seconds": round(seconds, 3), "molecules_per_second": round(len(smiles) / seconds, 1),
        "feature_shape": list(features.shape),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
