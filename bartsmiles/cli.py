"""The ``bartsmiles`` command line: it parses arguments and calls the library, nothing more."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, fields
from typing import Sequence

from ._version import __version__


def _add_dataclass_args(parser: argparse.ArgumentParser, cls, skip: Sequence[str] = ()) -> None:
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_text = f.metadata.get("help", "")
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action="store_true", help=help_text)
        elif f.name == "extra_args":
            continue
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            parser.add_argument(flag, type=typ, default=default, help=f"{help_text} (default: {default})")


def _cmd_run(args) -> int:
    from .summary import run_summary

    return run_summary(args.dataset, data_dir=args.data_dir, split=args.split, seed=args.seed, out=args.out)


def _cmd_user_dir(args) -> int:
    from .tasks import USER_DIR

    print(USER_DIR)
    return 0


def _cmd_build_vocab(args) -> int:
    from .pretraining import build_vocabulary

    vocab, per_file = build_vocabulary(args.files, column=args.smiles_column, min_count=args.min_count, n_jobs=args.workers)
    vocab.save(args.output)
    print(json.dumps({"output": args.output, "symbols": len(vocab.symbols), "smiles_read": per_file}, indent=2))
    return 0


def _cmd_preprocess(args) -> int:
    from .pretraining import preprocess

    report = preprocess(
        args.train,
        args.valid,
        args.vocab,
        args.dest,
        column=args.smiles_column,
        n_jobs=args.workers,
        num_shards=args.num_shards,
    )
    print(json.dumps(report.to_json(), indent=2))
    return 0


def _cmd_pretrain(args) -> int:
    from .config import PretrainConfig
    from .pretraining import pretrain

    values = {f.name: getattr(args, f.name) for f in fields(PretrainConfig) if f.name != "extra_args"}
    cfg = PretrainConfig(**values, extra_args=tuple(args.fairseq_args))
    argv = pretrain(cfg, dry_run=args.print_command)
    if args.print_command:
        import shlex

        print("fairseq-train " + " ".join(shlex.quote(a) for a in argv))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bartsmiles",
        description="BARTSmiles: a BART model over SMILES -- pretraining, fine-tuning, attribution.",
    )
    parser.add_argument("--version", action="version", version=f"bartsmiles {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="the main job on the shipped defaults (see README)")
    p.add_argument("--dataset", default="bbbp", help="MoleculeNet dataset name (default: bbbp)")
    p.add_argument("--data-dir", default=None, help="folder holding the data (default: $BARTSMILES_DATA, then the cache)")
    p.add_argument("--split", default="scaffold", choices=["scaffold", "random"], help="split kind")
    p.add_argument("--seed", type=int, default=0, help="seed (random split only)")
    p.add_argument("--out", default=None, help="folder for the split JSON and invalid-row report")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("user-dir", help="print the folder to give fairseq's --user-dir")
    p.set_defaults(func=_cmd_user_dir)

    p = sub.add_parser("build-vocab", help="build dict.txt from corpus files")
    p.add_argument("files", nargs="+", help="SMILES files (.csv[.gz] with --smiles-column, .smi, reaction lines)")
    p.add_argument("-o", "--output", required=True, help="dict.txt to write")
    p.add_argument("--smiles-column", default="SMILES", help="SMILES column of CSV files")
    p.add_argument("--min-count", type=int, default=1, help="drop tokens seen fewer times")
    p.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    p.set_defaults(func=_cmd_build_vocab)

    p = sub.add_parser("preprocess", help="tokenize and binarize SMILES files for fairseq")
    p.add_argument("--train", nargs="+", required=True, help="training corpus files")
    p.add_argument("--valid", nargs="+", required=True, help="validation corpus files")
    p.add_argument("--vocab", required=True, help="dict.txt (see build-vocab)")
    p.add_argument("--dest", required=True, help="output folder")
    p.add_argument("--smiles-column", default="SMILES", help="SMILES column of CSV files")
    p.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    p.add_argument("--num-shards", type=int, default=1, help="split the training data into this many shards")
    p.set_defaults(func=_cmd_preprocess)

    from .config import PretrainConfig

    p = sub.add_parser(
        "pretrain",
        help="BART denoising pretraining through fairseq (same path as fairseq-train)",
        description="Arguments after `--` go to fairseq-train verbatim.",
    )
    _add_dataclass_args(p, PretrainConfig)
    p.add_argument("--print-command", action="store_true", help="print the equivalent fairseq-train command and exit")
    p.set_defaults(func=_cmd_pretrain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    fairseq_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, fairseq_args = argv[:i], argv[i + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.fairseq_args = fairseq_args
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
