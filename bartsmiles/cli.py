"""The ``bartsmiles`` command line: it parses arguments and calls the library, nothing more.

The parser (:func:`build_parser`) and the entry point (:func:`main`) are here; the subcommand
handlers are in :mod:`bartsmiles.cli_commands`.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import MISSING, fields
from typing import Sequence

from ._version import __version__
from .cli_commands import (  # noqa: F401  (_config_from_args re-exported)
    _cmd_benchmark,
    _cmd_benchmark_retro,
    _cmd_build_vocab,
    _cmd_encode,
    _cmd_finetune,
    _cmd_predict,
    _cmd_pretrain,
    _cmd_preprocess,
    _cmd_probe,
    _cmd_run,
    _cmd_tokenize,
    _cmd_user_dir,
    _config_from_args,
)


def _add_dataclass_args(parser: argparse.ArgumentParser, cls, skip: Sequence[str] = ()) -> None:
    """One option per field of a config dataclass, with the field's help text and default."""
    scalar = {"int": int, "float": float, "str": str}
    for f in fields(cls):
        if f.name in skip or f.name == "extra_args":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_text = f.metadata.get("help", "")
        kind = str(f.type).replace("typing.", "")
        if kind in ("bool", "<class 'bool'>"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif kind == "Optional[bool]":
            parser.add_argument(flag, action="store_const", const=True, default=default, help=help_text)
        elif kind.startswith("tuple["):
            inner = kind[len("tuple["):].split(",")[0].strip("] ")
            parser.add_argument(flag, nargs="+", type=scalar.get(inner, str), default=default,
                                help=f"{help_text} (default: {' '.join(map(str, default)) or 'none'})")
        else:
            typ = scalar.get(kind.replace("<class '", "").replace("'>", ""), str)
            parser.add_argument(flag, type=typ, default=default, help=f"{help_text} (default: {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bartsmiles",
        description="BARTSmiles: a BART model over SMILES -- pretraining, fine-tuning, attribution.",
    )
    parser.add_argument("--version", action="version", version=f"bartsmiles {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="the main job: fine-tune the shipped model on BBBP and compare with ECFP4+RF",
                       description="Data summary, scaffold split, ECFP4+RF, frozen features and fine-tuning of "
                                   "the shipped model; prints the test scores side by side (under 10 minutes on "
                                   "2 CPU cores for BBBP).")
    p.add_argument("--dataset", default="bbbp", help="MoleculeNet dataset name (default: bbbp)")
    p.add_argument("--data-dir", default=None, help="folder holding the data (default: $BARTSMILES_DATA, then the cache)")
    p.add_argument("--split", default="scaffold", choices=["scaffold", "random"], help="split kind")
    p.add_argument("--seed", type=int, default=0, help="seed of training, of the forest and of a random split")
    p.add_argument("--out", default=None, help="output folder (default: runs/<dataset>_<split>)")
    p.add_argument("--model", default=None, help="pretrained model, .pt or folder (default: the shipped model)")
    p.add_argument("--finetune", action=argparse.BooleanOptionalAction, default=True,
                   help="fine-tune the model (--no-finetune: the data summary and the quick peers only)")
    p.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs (default: 5)")
    p.add_argument("--batch-size", type=int, default=32, help="molecules per fine-tuning batch (default: 32)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak fine-tuning learning rate (default: 1e-4)")
    p.add_argument("--rf-trees", type=int, default=500, help="trees of the ECFP4 random forest (default: 500)")
    p.add_argument("--no-progress", action="store_true", help="fairseq's log lines instead of a progress bar")
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

    p = sub.add_parser("tokenize", help="write SMILES files as space-separated tokens (input for fairseq-preprocess)")
    p.add_argument("files", nargs="+", help="SMILES files (.csv[.gz] with --smiles-column, .smi, reaction lines)")
    p.add_argument("-o", "--output", required=True, help="text file to write, one tokenized SMILES per line")
    p.add_argument("--smiles-column", default="SMILES", help="SMILES column of CSV files")
    p.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    p.set_defaults(func=_cmd_tokenize)

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

    from .finetuning import FinetuneConfig

    p = sub.add_parser(
        "finetune",
        help="fine-tune for property prediction through fairseq (same path as fairseq-train)",
        description="Fine-tune a pretrained model on a CSV or a registered dataset. Arguments after `--` go to fairseq-train verbatim.",
    )
    _add_dataclass_args(p, FinetuneConfig)
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("encode", help="encoder features of SMILES (.smi/.csv[.gz] in, .npy/.csv out)")
    p.add_argument("input", help="SMILES file: .smi/.txt (one per line) or .csv[.gz] with --smiles-column")
    p.add_argument("-o", "--output", required=True, help="features file: .npy (array n x d) or .csv")
    p.add_argument("--model", default=None, help="model folder or .pt (default: the shipped model)")
    p.add_argument("--smiles-column", default="SMILES", help="SMILES column of CSV input")
    p.add_argument("--batch-size", type=int, default=64, help="molecules per forward pass")
    p.add_argument("--pooling", default="mean", choices=["mean", "bos", "eos"], help="how token states become one vector")
    p.add_argument("--on-overflow", default="error", choices=["error", "truncate"], help="SMILES longer than the model's positions")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser("benchmark", help="run the PROTOCOL.md benchmark (models x datasets x seeds)",
                       description="Writes OUT.json (every run), OUT.md (mean ± std table) and OUT.png. "
                                   "Runs already in OUT.json are skipped. Options given here override --config.")
    p.add_argument("--config", default=None, help="JSON with BenchmarkConfig fields (incl. a 'finetune' object)")
    p.add_argument("--datasets", nargs="+", default=None, help="registered dataset names (default: bbbp)")
    p.add_argument("--models", nargs="+", default=None,
                   help="ecfp4_rf, bartsmiles, bartsmiles_random_init, chemprop (default: ecfp4_rf)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: 0 1 2)")
    p.add_argument("--split", default=None, choices=["scaffold", "random"], help="split kind (default: scaffold)")
    p.add_argument("--data-dir", default=None, help="data folder (default: $BARTSMILES_DATA, then the cache)")
    p.add_argument("--out", default=None, help="output prefix (default: benchmarks/results/benchmark)")
    p.add_argument("--model", default=None, help="pretrained model (.pt or folder) for the bartsmiles models")
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs")
    p.add_argument("--lr", type=float, default=None, help="fine-tuning peak learning rate")
    p.add_argument("--batch-size", type=int, default=None, help="fine-tuning batch size")
    p.add_argument("--dropout", type=float, default=None, help="fine-tuning dropout")
    p.add_argument("--n-jobs", type=int, default=None, help="cores per random forest (default: 1)")
    p.add_argument("--rf-trees", type=int, default=None, help="trees per forest (protocol: 500)")
    p.add_argument("--work-dir", default=None, help="fine-tuning runs and logs (default: runs/benchmark/<out name>)")
    p.add_argument("--no-isolate", action="store_true", help="run in this process (peak memory is then an upper bound)")
    p.add_argument("--no-resume", action="store_true", help="ignore runs already in OUT.json")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep fine-tuned checkpoints")
    p.set_defaults(func=_cmd_benchmark)

    p = sub.add_parser("probe", help="neuron probe: L1 logistic regression on frozen features over a C sweep")
    p.add_argument("--model", default=None, help="model folder or .pt (default: the shipped model)")
    p.add_argument("--dataset", default="clintox", help="classification dataset (default: clintox)")
    p.add_argument("--data-dir", default=None, help="data folder (default: $BARTSMILES_DATA, then the cache)")
    p.add_argument("--split", default="scaffold", choices=["scaffold", "random"], help="split kind")
    p.add_argument("--seed", type=int, default=0, help="random split seed and liblinear's random_state")
    p.add_argument("--c-exponents", nargs="+", type=float, default=list(range(-8, 1)),
                   help="C = 2**e for each e (default: -8 ... 0)")
    p.add_argument("--target", type=float, default=None, help="validation ROC-AUC to reach (absolute)")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="without --target: reach the best validation ROC-AUC minus this")
    p.add_argument("--no-standardize", action="store_true", help="do not standardize features (train mean/std)")
    p.add_argument("--pooling", default="mean", choices=["mean", "bos", "eos"], help="feature pooling")
    p.add_argument("--batch-size", type=int, default=64, help="molecules per forward pass")
    p.add_argument("--out", default="benchmarks/results/probe", help="output prefix (.json, .png)")
    p.add_argument("--random-init", action="store_true",
                   help="probe a randomly initialized model of --model's shape and dictionary (seeded by "
                        "--seed): the control that shows what pretraining adds")
    p.set_defaults(func=_cmd_probe)

    p = sub.add_parser("predict", help="predict a CSV with a fine-tuned model (rows kept; NaN + reason for bad rows)")
    p.add_argument("--model", required=True, help="fine-tuned checkpoint (.pt) or folder (model.pt, checkpoint_avg/best/last.pt)")
    p.add_argument("--input", required=True, help="input CSV")
    p.add_argument("--output", required=True, help="output CSV: the input columns, one column per task, bartsmiles_error")
    p.add_argument("--smiles-column", default="smiles", help="SMILES column of the input (default: smiles)")
    p.add_argument("--batch-size", type=int, default=64, help="molecules per forward pass")
    p.add_argument("--on-overflow", default="error", choices=["error", "truncate"],
                   help="SMILES longer than the model's positions: an error row (default) or cut and predicted")
    p.set_defaults(func=_cmd_predict)
    p = sub.add_parser("benchmark-retro", help="retrosynthesis top-k on USPTO-50k (or a data folder): train or load, generate, score",
                       description="Writes OUT.json (settings, top-k, timings) and OUT.md (top-k table).")
    p.add_argument("--model", required=True, help="a trained smiles_seq2seq model (file or folder), or with --train a pretrained checkpoint")
    p.add_argument("--train", action="store_true", help="fine-tune --model on DATA's train/valid files first")
    p.add_argument("--data", default=None, help="folder with train/valid/test files (default: the USPTO-50k liu2017 split)")
    p.add_argument("--split", default="test", help="split to generate on (default: test)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N reactions of the split (0: all)")
    p.add_argument("--beam", type=int, default=10, help="beam size (= candidates per reaction)")
    p.add_argument("--augment", type=int, default=0, help="test-time augmentation: randomized copies per product")
    p.add_argument("--aggregate", default="prob", choices=["prob", "rank"], help="TTA rank aggregation")
    p.add_argument("--batch-size", type=int, default=32, help="reactions per generation batch")
    p.add_argument("--epochs", type=int, default=30, help="with --train: epochs")
    p.add_argument("--lr", type=float, default=1e-4, help="with --train: peak learning rate")
    p.add_argument("--train-batch-size", type=int, default=32, help="with --train: pairs per batch")
    p.add_argument("--save-dir", default="runs/retro", help="with --train: checkpoints (and train.log)")
    p.add_argument("--seed", type=int, default=1, help="with --train: training seed")
    p.add_argument("--skip-invalid", action="store_true",
                   help="leave bad lines (malformed, invalid SMILES) out of training and scoring, reported; "
                        "valid test reactions longer than the model's positions always count as misses")
    p.add_argument("--max-hours", type=float, default=0.0,
                   help="with --train: stop training after this many hours, saving a checkpoint (0: no limit); fairseq "
                        "counts the training time stored in the --model checkpoint too")
    p.add_argument("--out", default="benchmarks/results/retro", help="output prefix (.json, .md)")
    p.set_defaults(func=_cmd_benchmark_retro)
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
    args.command_line = " ".join(["bartsmiles", *argv, *(["--", *fairseq_args] if fairseq_args else [])])
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
        if os.environ.get("BARTSMILES_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"bartsmiles {args.command}: error: {message}", file=sys.stderr)
        print("(set BARTSMILES_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
