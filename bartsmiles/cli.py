"""The ``bartsmiles`` command line: it parses arguments and calls the library, nothing more."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import MISSING, fields
from typing import Sequence

from ._version import __version__


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


def _config_from_args(cls, args, extra: Sequence[str]):
    values = {}
    for f in fields(cls):
        if f.name == "extra_args":
            continue
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values, extra_args=tuple(extra))


def _cmd_run(args) -> int:
    from .mainjob import MainJobConfig, run_main_job

    run_main_job(MainJobConfig(dataset=args.dataset, data_dir=args.data_dir or "", split=args.split, seed=args.seed,
                               out=args.out or "", model=args.model or "", finetune=args.finetune,
                               epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, rf_trees=args.rf_trees,
                               progress=not args.no_progress))
    return 0


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


def _cmd_tokenize(args) -> int:
    from .pretraining import write_tokenized

    n = write_tokenized(args.files, args.output, column=args.smiles_column, n_jobs=args.workers)
    print(f"wrote {n} tokenized SMILES to {args.output}")
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

    cfg = _config_from_args(PretrainConfig, args, args.fairseq_args)
    argv = pretrain(cfg, dry_run=args.print_command)
    if args.print_command:
        import shlex

        print("fairseq-train " + " ".join(shlex.quote(a) for a in argv))
    return 0


def _cmd_encode(args) -> int:
    """SMILES file in -> encoder features out (.npy array, or .csv with a smiles column + f0..f{d-1})."""
    import numpy as np

    from .api import load_pretrained
    from .encoding import iter_smiles_file

    smiles = list(iter_smiles_file(args.input, column=args.smiles_column))
    model = load_pretrained(args.model, device=args.device)
    features = model.encode(smiles, batch_size=args.batch_size, pooling=args.pooling,
                            progress=not args.no_progress, on_overflow=args.on_overflow)
    if args.output.lower().endswith(".npy"):
        np.save(args.output, features)
    else:
        import csv

        with open(args.output, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["smiles", *(f"f{j}" for j in range(features.shape[1]))])
            for s, row in zip(smiles, features):
                writer.writerow([s, *(f"{v:.7g}" for v in row)])
    print(json.dumps({"output": args.output, "n": len(smiles), "dim": int(features.shape[1])}))
    return 0


def _cmd_finetune(args) -> int:
    from .finetuning import FinetuneConfig, finetune

    cfg = _config_from_args(FinetuneConfig, args, args.fairseq_args)
    result = finetune(cfg)
    print(json.dumps({k: v for k, v in result.to_json().items() if k != "argv"}, indent=2))
    return 0


def _cmd_benchmark(args) -> int:
    """The PROTOCOL.md runner: models x datasets x seeds -> <out>.json/.md/.png (resumable)."""
    import logging

    from .benchmark import BenchmarkConfig, run_benchmark, summarize

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    finetune = {k: v for k, v in {"pretrained": args.model, "epochs": args.epochs, "lr": args.lr,
                                  "batch_size": args.batch_size, "dropout": args.dropout}.items()
                if v is not None}
    cfg = BenchmarkConfig.from_json(
        args.config or "", datasets=args.datasets, models=args.models, seeds=args.seeds, split=args.split,
        data_dir=args.data_dir, out=args.out, n_jobs=args.n_jobs, rf_n_estimators=args.rf_trees,
        work_dir=args.work_dir, isolate=False if args.no_isolate else None,
        resume=False if args.no_resume else None, keep_checkpoints=True if args.keep_checkpoints else None,
        finetune=finetune)
    results = run_benchmark(cfg, command=args.command_line.split(" "))
    table = summarize(results["runs"])
    print(json.dumps({f"{d}/{s}/{m}": {k: v[k] for k in ("metric", "mean", "std", "n", "wall_s_per_run")}
                      for (d, s, m), v in table.items()}, indent=2))
    failed = [r for r in results["runs"] if r.get("status") == "error"]
    return 1 if failed else 0


def _cmd_probe(args) -> int:
    """The frozen-feature neuron probe (L1 logistic regression over a C sweep) -> JSON + PNG."""
    from .probe import ProbeConfig, run_probe

    cfg = ProbeConfig(model=args.model, dataset=args.dataset, data_dir=args.data_dir or "", split=args.split,
                      seed=args.seed, c_exponents=tuple(args.c_exponents), target=args.target,
                      tolerance=args.tolerance, standardize=not args.no_standardize, pooling=args.pooling,
                      batch_size=args.batch_size, out=args.out, random_init=args.random_init)
    report = run_probe(cfg)
    print(json.dumps({"out": report["outputs"], "chosen": report["chosen"]}, indent=2))
    return 0


def _cmd_predict(args) -> int:
    """Fine-tuned model + CSV in -> the same CSV plus one column per task and bartsmiles_error."""
    from .prediction import ERROR_COLUMN, predict_table

    out = predict_table(args.model, args.input, smiles_column=args.smiles_column, batch_size=args.batch_size,
                        on_overflow=args.on_overflow)
    out.to_csv(args.output, index=False)
    n_bad = int((out[ERROR_COLUMN] != "").sum())
    print(json.dumps({"output": args.output, "n": len(out), "n_errors": n_bad}))
    return 0


def _cmd_benchmark_retro(args) -> int:
    """Retrosynthesis benchmark: (train,) generate on a split, top-k -> OUT.json + OUT.md."""
    import logging
    import time
    from pathlib import Path

    from .seq2seq import BartSmilesSeq2Seq, Seq2SeqConfig, topk_accuracy

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.data:
        data = args.data
    else:
        from .datasets import locate

        data = str(locate("uspto50k_train").parent)
    t0 = time.perf_counter()
    if args.train:
        extra = ("--stop-time-hours", str(args.max_hours)) if args.max_hours else ()
        model = BartSmilesSeq2Seq(Seq2SeqConfig(data=data, pretrained=args.model, save_dir=args.save_dir,
                                                epochs=args.epochs, lr=args.lr, batch_size=args.train_batch_size,
                                                seed=args.seed, skip_invalid=args.skip_invalid, log_file=os.path.join(args.save_dir, "train.log"),
                                                extra_args=extra))
        model.fit_data()
    else:
        model = BartSmilesSeq2Seq.load(args.model)
    t_train = time.perf_counter() - t0
    from .tasks.seq2seq import read_pairs, split_file

    import copy

    read_cfg = copy.copy(model.task.cfg)
    read_cfg.skip_invalid = True
    src_limit, tgt_limit = model.model.max_positions()  # the model's position tables, whatever the task says
    read_cfg.max_source_positions = min(int(read_cfg.max_source_positions), int(src_limit))
    read_cfg.max_target_positions = min(int(read_cfg.max_target_positions), int(tgt_limit))
    path = split_file(data, args.split)
    table, _, _ = read_pairs(path, read_cfg, model.task.vocab)  # with the vocabulary: lengths are checked
    # a valid reaction longer than the model's positions is scored as a miss (never dropped);
    # a malformed line is a data error, left out only with --skip-invalid
    too_long = [sk for sk in table.skipped if "positions (<s>, </s> included)" in sk.reason]
    bad = [sk for sk in table.skipped if sk not in too_long]
    if bad and not args.skip_invalid:
        listing = "; ".join(f"line {sk.line}: {sk.reason}" for sk in bad[:20])
        raise ValueError(f"{path}: {len(bad)} bad line(s): {listing}. Fix them, or pass --skip-invalid "
                         "to leave them out (reported)")
    pairs = sorted([(line, s, t) for line, s, t in zip(table.lines, table.sources, table.targets)]
                   + [(sk.line, None, None) for sk in too_long])
    if args.limit:
        pairs = pairs[: args.limit]
    kept = [(s, t) for _, s, t in pairs if s is not None]
    unreadable = [line for line, s, _ in pairs if s is None]
    sources, targets = [s for s, _ in kept], [t for _, t in kept]
    t1 = time.perf_counter()
    preds = model.generate(sources, beam=args.beam, n_best=args.beam, augment=args.augment,
                           aggregate=args.aggregate, batch_size=args.batch_size)
    ks = [k for k in (1, 3, 5, 10) if k <= args.beam]
    scores = topk_accuracy(preds, targets, ks=ks)
    if unreadable:  # rescale to all reactions: an unreadable one is a miss (and an invalid top-1)
        n_all = len(pairs)
        for k in ks:
            scores[f"top{k}"] = scores[f"top{k}"] * len(kept) / n_all
        scores["invalid_top1"] = (scores["invalid_top1"] * len(kept) + len(unreadable)) / n_all
    scores["n"], scores["n_generated"] = len(pairs), len(kept)
    scores["unreadable_lines"] = unreadable
    scores["skipped_bad_lines"] = [{"line": sk.line, "reason": sk.reason} for sk in bad]
    from .benchmark import machine_info

    result = {"command": args.command_line, "machine": machine_info(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": args.seed if args.train else None,
              "data": data, "split": args.split, "n": len(pairs), "model": args.model, "trained": args.train,
              "checkpoint": model.checkpoint, "beam": args.beam, "augment": args.augment,
              "aggregate": args.aggregate, "scores": scores, "train_s": round(t_train, 1),
              "generate_s": round(time.perf_counter() - t1, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    head = "| model | n | " + " | ".join(f"top-{k}" for k in ks) + " | invalid top-1 |"
    row = f"| {Path(args.model).name} | {len(pairs)} | " + " | ".join(f"{scores[f'top{k}']:.3f}" for k in ks)
    machine = result["machine"]
    where = f"{machine.get('cpu', '?')}, {machine.get('usable_cpus', '?')} usable CPUs, GPU: {machine.get('gpu') or 'none'}"
    md = "\n".join([f"Command: `{result['command']}`", f"Machine: {where}. Training {result['train_s']} s, "
                    f"generation {result['generate_s']} s.", "", head, "|" + "---|" * (len(ks) + 3),
                    row + f" | {scores['invalid_top1']:.3f} |", ""])
    out.with_suffix(".md").write_text(md)
    print(json.dumps(scores, indent=2))
    return 0


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
                   help="with --train: stop training after this many hours, saving a checkpoint (0: no limit)")
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
