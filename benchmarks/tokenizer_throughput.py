"""Throughput of tokenize + encode over a SMILES corpus (default: all of MOSES train).

Measures end to end: reading the (gzipped) CSV, regex tokenization and encoding to
token ids with :func:`bartsmiles.core.encoding.encode_many`. The vocabulary comes from
``--vocab`` (a fairseq dict.txt) or is built first with
:func:`bartsmiles.core.encoding.count_tokens` over the same input (timed separately).
Writes ``benchmarks/results/tokenizer_throughput.json``.

    python benchmarks/tokenizer_throughput.py --input ../shared/data/pretrain/moses/train.csv.gz
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bartsmiles.core.encoding import count_tokens, encode_many, iter_smiles_file, resolve_n_jobs  # noqa: E402
from bartsmiles.core.vocab import Vocabulary  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("BARTSMILES_DATA") or ROOT.parent / "shared" / "data")
TARGET_SECONDS = 60.0


def _smiles(args: argparse.Namespace):
    it = iter_smiles_file(args.input, column=args.column)
    return itertools.islice(it, args.limit) if args.limit else it


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path,
                        default=DEFAULT_DATA / "pretrain" / "moses" / "train.csv.gz")
    parser.add_argument("--column", default="SMILES", help="CSV column holding SMILES")
    parser.add_argument("--n-jobs", type=int, default=0, help="worker processes (0 = all cores)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N SMILES (0 = all)")
    parser.add_argument("--chunk-size", type=int, default=10000)
    parser.add_argument("--vocab", type=Path, default=None, help="fairseq dict.txt to use")
    parser.add_argument("--output", type=Path,
                        default=ROOT / "benchmarks" / "results" / "tokenizer_throughput.json")
    args = parser.parse_args(argv)

    vocab_seconds = None
    if args.vocab:
        vocab = Vocabulary.load(args.vocab)
    else:
        t0 = time.perf_counter()
        vocab = Vocabulary.from_counter(count_tokens(_smiles(args), n_jobs=args.n_jobs,
                                                     chunk_size=args.chunk_size))
        vocab_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    encoded, stats = encode_many(_smiles(args), vocab, n_jobs=args.n_jobs,
                                 chunk_size=args.chunk_size)
    wall = time.perf_counter() - t0
    assert len(encoded) == stats.n

    result = {
        "what": "read + regex tokenize + encode to ids (encode_many, lists of ints)",
        "input": str(args.input),
        "n_smiles": stats.n,
        "n_tokens": stats.n_tokens,
        "n_unk": stats.n_unk,
        "vocab_size": len(vocab),
        "wall_seconds": round(wall, 3),
        "smiles_per_second": round(stats.n / wall, 1),
        "tokens_per_second": round(stats.n_tokens / wall, 1),
        "target_seconds": TARGET_SECONDS,
        "meets_target": wall < TARGET_SECONDS,
        "vocab_build_seconds": None if vocab_seconds is None else round(vocab_seconds, 3),
        "n_jobs": resolve_n_jobs(args.n_jobs),
        "chunk_size": args.chunk_size,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor(), "cpu_count": os.cpu_count()},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
