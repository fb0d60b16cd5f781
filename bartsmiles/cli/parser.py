"""The ``bartsmiles`` argument parser: one subcommand per handler of :mod:`bartsmiles.cli.commands`.

A command whose settings are a config dataclass (``run``, ``pretrain``, ``finetune``, ``probe``,
``benchmark``, ``benchmark-retro``) gets one option per field
(:func:`bartsmiles.cli.options.add_dataclass_args`), so a default is written in one place: the
dataclass.  ``predict`` declares its files here and builds its settings from
:class:`~bartsmiles.model.prediction.PredictConfig`.  The other small file commands (``encode``,
``tokenize`` ...) have no config class; their options are declared here once.
"""
from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Callable

from bartsmiles._version import __version__
from bartsmiles.cli import commands
from bartsmiles.cli.options import add_dataclass_args
from bartsmiles.data.audit import MAX_ROWS, MAX_TASKS
from bartsmiles.evaluation.benchmark import BenchmarkConfig
from bartsmiles.evaluation.mainjob import MainJobConfig
from bartsmiles.evaluation.probe import ProbeConfig
from bartsmiles.evaluation.retro import RetroBenchmarkConfig
from bartsmiles.model.export import FORMATS, ONNX_OPSET, TOLERANCE
from bartsmiles.model.prediction import PredictConfig
from bartsmiles.model.pretrained import ENCODE_ERRORS, POOLINGS
from bartsmiles.serve.config import ServeConfig
from bartsmiles.training.finetuning import FinetuneConfig
from bartsmiles.training.pretraining import PretrainConfig

__all__ = ["build_parser"]

def _sub(sub, name: str, func: Callable, help_text: str, description: str = "") -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=description or help_text)
    p.set_defaults(func=func)
    return p


def _file_commands(sub) -> None:
    p = _sub(sub, "user-dir", commands.user_dir, "print the folder to give fairseq's --user-dir")

    p = _sub(sub, "build-vocab", commands.build_vocab, "build dict.txt from corpus files")
    p.add_argument("files", nargs="+", help="SMILES files (.csv[.gz] with --smiles-column, .smi, reaction lines)")
    p.add_argument("-o", "--output", required=True, help="dict.txt to write")
    p.add_argument("--smiles-column", default="SMILES", help="SMILES column of CSV files (default: SMILES)")
    p.add_argument("--min-count", type=int, default=1, help="drop tokens seen fewer times (default: 1)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: 0, all cores)")

    p = _sub(sub, "tokenize", commands.tokenize,
             "write SMILES files as space-separated tokens (input for fairseq-preprocess)")
    p.add_argument("files", nargs="+", help="SMILES files (.csv[.gz] with --smiles-column, .smi, reaction lines)")
    p.add_argument("-o", "--output", required=True, help="text file to write, one tokenized SMILES per line")
    p.add_argument("--smiles-column", default="SMILES", help="SMILES column of CSV files (default: SMILES)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: 0, all cores)")

    p = _sub(sub, "preprocess", commands.preprocess, "tokenize and binarize SMILES files for fairseq")
    p.add_argument("--train", nargs="+", required=True, help="training corpus files")
    p.add_argument("--valid", nargs="+", required=True, help="validation corpus files")
    p.add_argument("--vocab", required=True, help="dict.txt (see build-vocab)")
    p.add_argument("--dest", required=True, help="output folder")
    p.add_argument("--smiles-column", default="SMILES", help="SMILES column of CSV files (default: SMILES)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: 0, all cores)")
    p.add_argument("--num-shards", type=int, default=1, help="split the training data into this many shards")
    p.add_argument("--descriptors", action="store_true",
                   help="also build the RDKit descriptor cache that `pretrain --descriptor-loss` reads")

    p = _sub(sub, "preprocess-descriptors", commands.descriptors,
             "compute the RDKit descriptor targets of binarized data, once (for pretrain --descriptor-loss)")
    p.add_argument("data", help="binarized data folder from `bartsmiles preprocess` (colon-separated shards allowed)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: 0, all cores)")
    p.add_argument("--force", action="store_true", help="rebuild a cache that already exists")

    p = _sub(sub, "encode", commands.encode, "encoder features of SMILES (.smi/.csv[.gz] in, .npy/.csv out)")
    p.add_argument("input", help="SMILES file: .smi/.txt (one per line) or .csv[.gz] with --smiles-column")
    p.add_argument("-o", "--output", required=True, help="features file: .npy (array n x d) or .csv")
    p.add_argument("--model", default=None, help="model: .pt file, model folder or run folder (default: shipped)")
    p.add_argument("--smiles-column", default="SMILES", help="SMILES column of CSV input (default: SMILES)")
    p.add_argument("--batch-size", type=int, default=64, help="molecules per forward pass (default: 64)")
    p.add_argument("--pooling", default="mean", choices=POOLINGS, help="how token states become one vector")
    p.add_argument("--on-overflow", default="truncate", choices=["error", "truncate"],
                   help="SMILES longer than the model's positions: cut them, counted (default), or refuse them")
    p.add_argument("--errors", default="nan", choices=list(ENCODE_ERRORS),
                   help="a SMILES that is not a molecule: a NaN row, reported (default), or stop with an error")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = _sub(sub, "predict", commands.predict,
             "predict a CSV or .smi file with a fine-tuned model (rows kept; NaN + reason for bad rows)",
             "Streams the input in chunks (memory bounded whatever its size), sorts each chunk by length, and "
             "appends each finished chunk to the output in input order. A killed run started again with the same "
             "command continues after the last complete chunk (OUTPUT.progress.json, removed at the end).")
    p.add_argument("--model", required=True, help="fine-tuned model: .pt file, model folder or run folder")
    p.add_argument("--input", required=True,
                   help="input: CSV (.csv, or compressed: .csv.gz ...) or SMILES lines (.smi/.txt, optionally .gz)")
    p.add_argument("--output", required=True,
                   help="output CSV (.csv, or .csv.gz): the input columns, one column per task, bartsmiles_error")
    add_dataclass_args(p, PredictConfig)

    p = _sub(sub, "export", commands.export,
             "export a model for use elsewhere: a transformers folder (hf) or an ONNX graph (onnx)",
             "Writes OUT as a Hugging Face transformers folder (--format hf: config.json, model.safetensors, "
             "tokenizer.json; AutoTokenizer/AutoModel load it offline; a fine-tuned model becomes a "
             "BartForSequenceClassification) or as model.onnx + tokenizer.json (--format onnx: mean-pooled encoder "
             "features and, for a fine-tuned model, logits and predictions). The export is loaded back and compared "
             "with the fairseq model before the command succeeds. Needs the 'export' extra: "
             'pip install "bartsmiles[export]".')
    p.add_argument("model", help="model: .pt file, model folder or run folder ('shipped': the shipped model)")
    p.add_argument("out", help="folder to write (created if missing; files of the same names are replaced)")
    p.add_argument("--format", default="hf", choices=FORMATS, help="hf (transformers) or onnx (default: hf)")
    p.add_argument("--opset", type=int, default=ONNX_OPSET, help=f"ONNX opset (default: {ONNX_OPSET})")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help=f"largest max-abs difference from the fairseq model the self-check accepts (default: {TOLERANCE})")
    p.add_argument("--no-verify", action="store_true", help="skip the self-check (loading the export back)")

    p = _sub(sub, "audit", commands.audit,
             "data-trust report of a property dataset: invalid rows, duplicates, split overlap, spelling leak",
             "Checks a registered dataset or a CSV: invalid SMILES, duplicates (canonical SMILES, InChIKey) and "
             "their label conflicts, molecules shared between split parts, label balance, test scaffolds seen in "
             "train, and whether the labels can be predicted from how the SMILES are written. Writes "
             "audit_<name>.md and audit_<name>.json into --out-dir and prints a summary. Exit status 0: clean; "
             "1: warnings (spelling leak, conflicting duplicates, split overlap); 2: the data cannot be read.")
    p.add_argument("data", help="a registered dataset name (e.g. clintox) or a CSV file (an existing file wins)")
    p.add_argument("--smiles-column", default=None,
                   help="SMILES column (default: the registry's for a dataset name, smiles for a CSV)")
    p.add_argument("--target-columns", nargs="+", default=None,
                   help="label columns (default: the registry's; for a CSV every column but the SMILES one)")
    p.add_argument("--split", nargs="+", default=["scaffold"], metavar="SPLIT",
                   help="scaffold, random or a split JSON file (indices into the valid rows); several are each "
                        "audited (default: scaffold)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random split, the cross-validation and the row sample (default: 0)")
    p.add_argument("--data-dir", default=None, help="folder searched first for registered data files")
    p.add_argument("--out-dir", default=".", help="folder for audit_<name>.md/.json (default: current folder)")
    p.add_argument("--max-rows", type=int, default=MAX_ROWS,
                   help=f"rows used by the spelling-leak test (default: {MAX_ROWS}; the other checks use all rows)")
    p.add_argument("--max-tasks", type=int, default=MAX_TASKS,
                   help=f"tasks tested for a spelling leak (default: {MAX_TASKS}, those with the most minority rows)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bartsmiles",
        description="BARTSmiles: a BART model over SMILES -- pretraining, fine-tuning, attribution.")
    parser.add_argument("--version", action="version", version=f"bartsmiles {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _sub(sub, "run", commands.run,
             "the main job: fine-tune the shipped model on BBBP and compare with ECFP4+RF",
             "Data summary, scaffold split, ECFP4+RF, frozen features and fine-tuning of the shipped model; "
             "prints the test scores side by side.")
    add_dataclass_args(p, MainJobConfig)
    _file_commands(sub)

    p = _sub(sub, "pretrain", commands.pretrain,
             "BART denoising pretraining through fairseq (same path as fairseq-train)",
             "Arguments after `--` go to fairseq-train verbatim.")
    add_dataclass_args(p, PretrainConfig)
    p.add_argument("--print-command", action="store_true", help="print the equivalent fairseq-train command and exit")

    p = _sub(sub, "finetune", commands.finetune,
             "fine-tune for property prediction through fairseq (same path as fairseq-train)",
             "Fine-tune a pretrained model on a CSV or a registered dataset. Arguments after `--` go to "
             "fairseq-train verbatim.")
    add_dataclass_args(p, FinetuneConfig)

    p = _sub(sub, "benchmark", commands.benchmark, "run the PROTOCOL.md benchmark (models x datasets x seeds)",
             "Writes OUT.json (every run), OUT.md (mean ± std table) and OUT.png. Runs already in OUT.json are "
             "skipped. Options given here override --config.")
    p.add_argument("--config", default=None, help="JSON with BenchmarkConfig fields (incl. a 'finetune' object)")
    add_dataclass_args(p, BenchmarkConfig, defaults_none=True)
    group = p.add_argument_group("fine-tuning settings of the bartsmiles models (override the config's 'finetune')")
    group.add_argument("--model", dest="pretrained", default=None,
                       help=next(f for f in fields(FinetuneConfig) if f.name == "pretrained").metadata["help"])
    add_dataclass_args(group, FinetuneConfig, only=("epochs", "lr", "batch_size", "dropout"), defaults_none=True)

    p = _sub(sub, "probe", commands.probe, "neuron probe: L1 logistic regression on frozen features over a C sweep")
    add_dataclass_args(p, ProbeConfig)

    p = _sub(sub, "benchmark-retro", commands.benchmark_retro,
             "retrosynthesis top-k on USPTO-50k (or a data folder): train or load, generate, score",
             "Writes OUT.json (settings, top-k, timings) and OUT.md (top-k table).")
    add_dataclass_args(p, RetroBenchmarkConfig)

    p = _sub(sub, "retro", commands.retro, "propose reactants for products (retrosynthesis), best first",
             "Prints the top-k reactant sets of each product SMILES with their scores (the model's mean "
             "log-probability per generated token; with --augment, the aggregated score). Candidates that are not "
             "valid SMILES are dropped and counted. --json prints a list with one entry per input: "
             '{"product", "candidates": [{"reactants", "score"}], "invalid_dropped", "unchanged_dropped"}.')
    p.add_argument("smiles", nargs="*", help="product SMILES (or --input FILE)")
    p.add_argument("--input", default=None, help="a file with one product SMILES per line (.smi/.txt[.gz]), or a "
                                                 "CSV[.gz] with a --smiles-column")
    p.add_argument("--smiles-column", default="smiles", help="the SMILES column of a CSV --input (default: smiles)")
    p.add_argument("--model", default="retro", help="a seq2seq model file or folder; 'retro': the shipped model")
    p.add_argument("--top-k", type=int, default=5, help="candidates printed per product (default: 5)")
    p.add_argument("--beam", type=int, default=10, help="beam size (default: 10; at least --top-k)")
    p.add_argument("--augment", type=int, default=0, help="test-time augmentation: extra spellings per product "
                                                          "whose candidates are ranked together (default: 0)")
    p.add_argument("--views", choices=("random", "rooted"), default=None,
                   help="how the extra spellings are written (default: as the model was trained)")
    p.add_argument("--batch-size", type=int, default=32, help="products per generation batch (default: 32)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = _sub(sub, "prepare-retro", commands.prepare_retro,
             "atom-map a USPTO-50k split and write root-aligned train/valid/test CSVs for seq2seq training",
             "Maps each reaction with Indigo (the 'retro' extra; maps cached in OUT/maps, so a killed run resumes), "
             "then writes K root-aligned views per training reaction (product written from a root atom, reactants "
             "following it) to OUT/train.csv, OUT/valid.csv and the test reactions to OUT/test.csv; reactions the "
             "mapper fails on keep their canonical form and are listed in OUT/report.json with the mean edit "
             "distance between source and target before and after alignment.")
    p.add_argument("out", help="output folder")
    p.add_argument("--source", default=None, help="folder with retrosynthesis-{train,valid,test}.smi "
                                                  "(default: the registered USPTO-50k liu2017 split)")
    p.add_argument("--k-train", type=int, default=5, help="root-aligned views per training reaction (default: 5)")
    p.add_argument("--k-valid", type=int, default=1, help="views per validation reaction (default: 1)")
    p.add_argument("--limit", type=int, default=0, help="use the first N train and valid reactions only (0: all)")
    p.add_argument("--workers", type=int, default=1, help="processes for atom mapping (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the root choice (default: 0)")

    p = _sub(sub, "serve", commands.serve,
             "a local web page and JSON API for a fine-tuned model: predictions, intervals, attributions",
             "Loads MODEL once and answers on http://HOST:PORT/: a page to paste SMILES or upload a CSV and see the "
             "predictions (with conformal intervals when the model has a calibration), each molecule drawn with its "
             "atom attributions and its substructure table, and a CSV download; the JSON API (/predict, "
             "/predict/table, /attribute) is described at /docs. Listens on 127.0.0.1 unless --host says otherwise. "
             'Needs the \'serve\' extra: pip install "bartsmiles[serve]".')
    p.add_argument("model", help=next(f for f in fields(ServeConfig) if f.name == "model").metadata["help"])
    add_dataclass_args(p, ServeConfig, skip=("model",))
    return parser
