"""The handlers of the ``bartsmiles`` subcommands: one ``_cmd_*`` per command, each calling the library.

:mod:`bartsmiles.cli` builds the parser and dispatches to these.
"""
from __future__ import annotations

import json
import os
from dataclasses import fields
from typing import Sequence


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
    too_long = [sk for sk in table.skipped if sk.too_long]
    bad = [sk for sk in table.skipped if not sk.too_long]
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
    md = "\n".join([f"Command: `{result['command']}`", f"Machine: {where}. {'Training' if args.train else 'Loading the model'} {result['train_s']} s, "
                    f"generation {result['generate_s']} s.", "", head, "|" + "---|" * (len(ks) + 3),
                    row + f" | {scores['invalid_top1']:.3f} |", ""])
    out.with_suffix(".md").write_text(md)
    print(json.dumps(scores, indent=2))
    return 0
