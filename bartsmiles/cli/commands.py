"""The handlers of the ``bartsmiles`` subcommands: each turns parsed arguments into one API call.

A handler checks where its output will go before the work starts
(:func:`bartsmiles.core.files.check_writable`), calls the library, and prints a short JSON
summary.  Errors are not handled here: :func:`bartsmiles.cli.main.main` turns them into one line
and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import fields
from pathlib import Path

from bartsmiles.cli.options import config_from_args
from bartsmiles.core.encoding import iter_smiles_file
from bartsmiles.core.files import check_writable
from bartsmiles.data.atom_mapping import build_root_aligned
from bartsmiles.data.audit import audit as run_audit
from bartsmiles.data.audit import audit_name
from bartsmiles.data.registry import locate
from bartsmiles.errors import MissingExtraError, Seq2SeqError
from bartsmiles.evaluation.benchmark import BenchmarkConfig, failed_runs, run_benchmark
from bartsmiles.evaluation.mainjob import MainJobConfig, run_main_job
from bartsmiles.evaluation.probe import ProbeConfig, run_probe
from bartsmiles.evaluation.report import summarize
from bartsmiles.evaluation.retro import RetroBenchmarkConfig, run_retro_benchmark
from bartsmiles.model.export import EXPORT_JSON
from bartsmiles.model.export import export as run_export
from bartsmiles.model.prediction import PredictConfig, predict_file
from bartsmiles.model.pretrained import encode_file
from bartsmiles.seq2seq import retrosynthesis
from bartsmiles.serve.config import ServeConfig
from bartsmiles.tasks import USER_DIR
from bartsmiles.training.finetuning import FinetuneConfig
from bartsmiles.training.finetuning import finetune as run_finetune
from bartsmiles.training.pretraining import (
    PretrainConfig,
    build_vocabulary,
    preprocess_descriptors,
    write_tokenized,
)
from bartsmiles.training.pretraining import (
    preprocess as run_preprocess,
)
from bartsmiles.training.pretraining import (
    pretrain as run_pretrain,
)

__all__ = ["run", "user_dir", "build_vocab", "tokenize", "preprocess", "descriptors", "pretrain", "encode", "finetune",
           "benchmark", "probe", "predict", "audit", "benchmark_retro", "export", "serve"]


def _config(cls, args: argparse.Namespace):
    return config_from_args(cls, args, getattr(args, "fairseq_args", ()))


def run(args: argparse.Namespace) -> int:
    run_main_job(_config(MainJobConfig, args))
    return 0


def user_dir(args: argparse.Namespace) -> int:
    print(USER_DIR)
    return 0


def build_vocab(args: argparse.Namespace) -> int:
    check_writable(args.output)
    vocab, per_file = build_vocabulary(args.files, column=args.smiles_column, min_count=args.min_count,
                                       n_jobs=args.workers)
    vocab.save(args.output)
    print(json.dumps({"output": args.output, "symbols": len(vocab.symbols), "smiles_read": per_file}, indent=2))
    return 0


def tokenize(args: argparse.Namespace) -> int:
    check_writable(args.output)
    n = write_tokenized(args.files, args.output, column=args.smiles_column, n_jobs=args.workers)
    print(f"wrote {n} tokenized SMILES to {args.output}")
    return 0


def preprocess(args: argparse.Namespace) -> int:
    report = run_preprocess(args.train, args.valid, args.vocab, args.dest, column=args.smiles_column,
                            n_jobs=args.workers, num_shards=args.num_shards)
    print(json.dumps(report.to_json(), indent=2))
    if args.descriptors:
        preprocess_descriptors(report.data_path, n_jobs=args.workers)
    return 0


def descriptors(args: argparse.Namespace) -> int:
    stats = preprocess_descriptors(args.data, n_jobs=args.workers, force=args.force)
    summary = {folder: {"descriptors": len(s["names"]), "splits": {k: {"rows": v["rows"], "unparsable": v["unparsable"]}
                                                                     for k, v in s["splits"].items()}}
               for folder, s in stats.items()}
    print(json.dumps(summary, indent=2))
    return 0


def pretrain(args: argparse.Namespace) -> int:
    argv = run_pretrain(_config(PretrainConfig, args), dry_run=args.print_command)
    if args.print_command:
        print("fairseq-train " + " ".join(shlex.quote(a) for a in argv))
    return 0


def encode(args: argparse.Namespace) -> int:
    """SMILES file in -> encoder features out (.npy array, or .csv with a smiles column + f0..f{d-1})."""
    summary = encode_file(args.input, args.output, model=args.model, smiles_column=args.smiles_column,
                          batch_size=args.batch_size, pooling=args.pooling, on_overflow=args.on_overflow,
                          errors=args.errors, device=args.device, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def finetune(args: argparse.Namespace) -> int:
    result = run_finetune(_config(FinetuneConfig, args))
    print(json.dumps({k: v for k, v in result.to_json().items() if k != "argv"}, indent=2))
    return 0


def benchmark(args: argparse.Namespace) -> int:
    """The PROTOCOL.md runner: models x datasets x seeds -> <out>.json/.md/.png (resumable)."""
    finetune_settings = {k: getattr(args, k) for k in ("pretrained", "epochs", "lr", "batch_size", "dropout")
                         if getattr(args, k) is not None}
    given = {f.name: getattr(args, f.name) for f in fields(BenchmarkConfig) if hasattr(args, f.name)}
    given.pop("finetune", None)
    cfg = BenchmarkConfig.from_json(args.config or "", finetune=finetune_settings, **given)
    check_writable(cfg.out + ".json", make_folder=True)
    results = run_benchmark(cfg, command=args.command_line.split(" "))
    table = summarize(results["runs"])
    print(json.dumps({f"{d}/{s}/{m}": {k: v[k] for k in ("metric", "mean", "std", "n", "wall_s_per_run")}
                      for (d, s, m), v in table.items()}, indent=2))
    return 1 if failed_runs(results, cfg) else 0


def probe(args: argparse.Namespace) -> int:
    """The frozen-feature neuron probe (L1 logistic regression over a C sweep) -> JSON + PNG."""
    cfg = _config(ProbeConfig, args)
    check_writable(cfg.out + ".json", make_folder=True)
    report = run_probe(cfg)
    print(json.dumps({"out": report["outputs"], "chosen": report["chosen"]}, indent=2))
    return 0


def predict(args: argparse.Namespace) -> int:
    """Fine-tuned model + CSV/.smi in -> the rows plus one column per task and bartsmiles_error (streamed, resumable)."""
    check_writable(args.output)
    summary = predict_file(args.model, args.input, args.output, _config(PredictConfig, args))
    print(json.dumps(summary))
    return 0


def audit(args: argparse.Namespace) -> int:
    """Data-trust report -> audit_<name>.md/.json in --out-dir; exit status 1 when it has warnings."""
    name = audit_name(args.data)
    out_dir = Path(args.out_dir)
    for suffix in (".md", ".json"):
        check_writable(out_dir / f"audit_{name}{suffix}", make_folder=True)
    report = run_audit(args.data, smiles_column=args.smiles_column, target_columns=args.target_columns,
                       split=args.split, data_dir=args.data_dir, seed=args.seed, max_rows=args.max_rows,
                       max_tasks=args.max_tasks, name=name)
    md, js = report.write(out_dir)
    print(report.summary())
    print(f"wrote {md} and {js}")
    return report.exit_code


def benchmark_retro(args: argparse.Namespace) -> int:
    """Retrosynthesis benchmark: (train,) generate on a split, top-k -> OUT.json + OUT.md."""
    result = run_retro_benchmark(_config(RetroBenchmarkConfig, args), command=args.command_line)
    print(json.dumps(result["scores"], indent=2))
    return 0


def retro(args: argparse.Namespace) -> int:
    """Products in -> the top-k reactant sets of each (a table, or JSON with --json)."""
    products = list(args.smiles)
    if args.input:
        products += list(iter_smiles_file(args.input, column=args.smiles_column))
    if not products:
        raise Seq2SeqError("give product SMILES, or --input FILE")
    results = retrosynthesis(products, args.model, top_k=args.top_k, beam=args.beam, augment=args.augment,
                             views=args.views, batch_size=args.batch_size)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    for result in results:
        print(result.product)
        for rank, candidate in enumerate(result.candidates, 1):
            print(f"  {rank:>2}. {candidate.reactants}   score {candidate.score:.4f}")
        if not result.candidates:
            print("  (no valid candidate)")
        if result.invalid_dropped:
            print(f"  ({result.invalid_dropped} invalid candidate(s) dropped)")
        if result.unchanged_dropped:
            print(f"  ({result.unchanged_dropped} candidate(s) that were the product itself dropped)")
    return 0


def prepare_retro(args: argparse.Namespace) -> int:
    """USPTO-50k split -> atom maps (cached) -> root-aligned train/valid/test CSVs and report.json in OUT."""
    check_writable(Path(args.out) / "report.json", make_folder=True)
    source = args.source or str(locate("uspto50k_train").parent)
    report = build_root_aligned(source, args.out, k_train=args.k_train, k_valid=args.k_valid, workers=args.workers,
                                seed=args.seed, limit=args.limit)
    print(json.dumps({k: getattr(report, k) for k in ("reactions", "mapped", "pairs_written", "edit_distance")},
                     indent=2))
    return 0


def export(args: argparse.Namespace) -> int:
    """Model in -> a transformers folder (--format hf) or model.onnx + tokenizer.json (--format onnx).

    ``MODEL`` ``shipped`` (when no such file or folder exists) is the shipped model.
    """
    check_writable(Path(args.out) / EXPORT_JSON, make_folder=True)
    model = None if args.model == "shipped" and not Path(args.model).exists() else args.model
    summary = run_export(model, args.out, format=args.format, verify=not args.no_verify, tolerance=args.tolerance,
                         opset=args.opset)
    print(json.dumps({k: summary[k] for k in ("out_dir", "format", "kind", "files", "self_check") if k in summary},
                     indent=2))
    return 0


def serve(args: argparse.Namespace) -> int:
    """Fine-tuned model -> a local web page and JSON API (bartsmiles.serve), until Ctrl-C."""
    cfg = _config(ServeConfig, args).check()
    try:
        from bartsmiles.serve.app import serve as run_server  # lazy: FastAPI and uvicorn are the optional serve extra
    except ImportError as exc:
        raise MissingExtraError(exc.name or "fastapi", "serve", ["fastapi", "uvicorn", "python-multipart"],
                                purpose="bartsmiles serve", reason=str(exc)) from None
    run_server(cfg)
    return 0
