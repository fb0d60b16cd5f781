"""Where a fine-tuning epoch spends its time, and fine-tuning tokens/s against pretraining tokens/s.

    python benchmarks/finetune_profile.py                     # BBBP, scaffold split, batch 32, shipped model
    python benchmarks/finetune_profile.py --dataset esol --batch-size 16

One process, one machine, the same model, in this order:

1. **Pretraining** (``smiles_denoising``, BART noise, ``--max-tokens`` batches) of the same
   architecture for ``--pretrain-updates`` updates on MOSES molecules: real (non-pad) tokens/s.
2. **Fine-tuning** one epoch of the train split (``smiles_property``), twice: batches of random
   lengths (the default) and length-sorted buckets of the same number of molecules
   (``--length-sorted-batches``).  Each phase is timed on its own: data loading and collating, forward (the
   criterion), backward, optimizer step (clipping included); then a full validation pass (inference
   mode) and the writing of one checkpoint with its optimizer state.  Real tokens, padded
   positions and the padding fraction are counted.

The loop is fairseq's own pieces (task, model, criterion, optimizer and the batch iterator, built
from the exact ``fairseq-train`` arguments that :func:`bartsmiles.training.finetuning.finetune_args`
gives), without the trainer's logging around them, so the phases add up to the epoch.

Output: ``OUT.json`` and ``OUT.md`` (``--out``, default ``benchmarks/results/finetune_profile``)
with the command, machine, date and every number.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gzip
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from fairseq import tasks as fairseq_tasks
from fairseq.optim import build_optimizer

from bartsmiles.core.splits import make_split
from bartsmiles.data.datasets import load_dataset
from bartsmiles.data.registry import locate
from bartsmiles.evaluation.machine import _peak_rss_mb, machine_info
from bartsmiles.model.resolve import resolve_checkpoint
from bartsmiles.training.finetuning import FinetuneConfig, finetune_args, resolve_config
from bartsmiles.training.pretraining import PretrainConfig, preprocess, pretrain_args
from bartsmiles.training.runner import parse_fairseq_args

REPO = Path(__file__).resolve().parents[1]


def _build(argv: list[str]):
    cfg = parse_fairseq_args(argv)
    task = fairseq_tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    params = [p for p in model.parameters() if p.requires_grad] + list(criterion.parameters())
    optimizer = build_optimizer(cfg.optimizer, params)
    return cfg, task, model, criterion, optimizer


def _batches(task, split: str, cfg, epoch: int = 1):
    dataset = task.dataset(split)
    itr = task.get_batch_iterator(
        dataset=dataset, max_tokens=cfg.dataset.max_tokens, max_sentences=cfg.dataset.batch_size,
        max_positions=task.max_positions() if hasattr(task, "max_positions") else None,
        ignore_invalid_inputs=True, required_batch_size_multiple=1, seed=cfg.common.seed, epoch=epoch,
        num_workers=0)
    return itr.next_epoch_itr(shuffle=True)


def _train_epoch(cfg, task, model, criterion, optimizer, split: str, max_updates: int | None = None) -> dict:
    """One pass of fairseq's pieces over ``split``; seconds per phase and token counts."""
    model.train()
    times = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    real = positions = updates = 0
    iterator = _batches(task, split, cfg)
    t = time.perf_counter()
    for sample in iterator:
        times["data"] += time.perf_counter() - t
        t = time.perf_counter()
        loss, sample_size, _ = criterion(model, sample)
        times["forward"] += time.perf_counter() - t
        t = time.perf_counter()
        optimizer.backward(loss)
        times["backward"] += time.perf_counter() - t
        t = time.perf_counter()
        optimizer.multiply_grads(1.0 / max(float(sample_size), 1.0))
        optimizer.clip_grad_norm(cfg.optimization.clip_norm)
        optimizer.step()
        optimizer.zero_grad()
        times["optimizer"] += time.perf_counter() - t
        # the padded tensor the real tokens travel in: the target for denoising, the source here
        target = sample.get("target")
        tokens = target if target is not None and target.dtype == torch.long else sample["net_input"]["src_tokens"]
        real += int(sample["ntokens"])
        positions += int(tokens.numel())
        updates += 1
        if max_updates and updates >= max_updates:
            break
        t = time.perf_counter()
    seconds = sum(times.values())
    return {"seconds": round(seconds, 2), "phases_s": {k: round(v, 2) for k, v in times.items()},
            "updates": updates, "real_tokens": real, "padded_positions": positions,
            "padding_fraction": round(1.0 - real / positions, 4) if positions else None,
            "real_tokens_per_s": round(real / seconds, 1) if seconds else None}


def _validate(task, model, criterion, cfg) -> dict:
    model.eval()
    t = time.perf_counter()
    n = 0
    with torch.inference_mode():
        for sample in _batches(task, "valid", cfg):
            criterion(model, sample)
            n += int(sample["nsentences"])
    return {"seconds": round(time.perf_counter() - t, 2), "molecules": n}


def _checkpoint_write(model, optimizer, folder: Path) -> dict:
    path = folder / "checkpoint.pt"
    t = time.perf_counter()
    torch.save({"model": model.state_dict(), "last_optimizer_state": optimizer.state_dict()}, path)
    return {"seconds": round(time.perf_counter() - t, 2), "megabytes": round(path.stat().st_size / 2**20, 1)}


def _pretraining(arch_args: list[str], arch: str, work: Path, n_smiles: int, updates: int, seed: int) -> dict:
    source = locate("moses_train")
    lines = []
    with gzip.open(source, "rt") as handle:
        next(handle)
        for line in handle:
            lines.append(line.split(",")[0].strip())
            if len(lines) >= n_smiles:
                break
    (work / "train.smi").write_text("\n".join(lines[:-500]) + "\n")
    (work / "valid.smi").write_text("\n".join(lines[-500:]) + "\n")
    dict_path = resolve_checkpoint(None).with_name("dict.txt")
    preprocess([work / "train.smi"], [work / "valid.smi"], dict_path, work / "bin", n_jobs=1)
    cfg = PretrainConfig(data=str(work / "bin"), save_dir=str(work / "pre"), arch=arch, cpu=True, seed=seed,
                         max_update=updates, extra_args=tuple(arch_args))
    fcfg, task, model, criterion, optimizer = _build(pretrain_args(cfg))
    task.load_dataset("train")
    _train_epoch(fcfg, task, model, criterion, optimizer, "train", max_updates=2)  # warm up
    result = _train_epoch(fcfg, task, model, criterion, optimizer, "train", max_updates=updates)
    result["max_tokens"] = cfg.max_tokens
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="bbbp", help="registered property dataset (scaffold split, seed 0)")
    parser.add_argument("--model", default=None, help="pretrained model (default: the shipped one)")
    parser.add_argument("--batch-size", type=int, default=32, help="molecules per fine-tuning batch (main job: 32)")
    parser.add_argument("--pretrain-updates", type=int, default=20, help="pretraining updates to time")
    parser.add_argument("--pretrain-smiles", type=int, default=20000, help="MOSES molecules binarized for it")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "finetune_profile"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bartsmiles-profile-") as tmp:
        work = Path(tmp)
        dataset = load_dataset(args.dataset)
        split = make_split("scaffold", dataset.smiles, seed=args.seed)
        split.save(work / "split.json")
        base = resolve_config(FinetuneConfig(
            data=args.dataset, pretrained=str(resolve_checkpoint(args.model)), split=str(work / "split.json"),
            save_dir=str(work / "ft"), batch_size=args.batch_size, seed=args.seed, cpu=True))
        n_train = len(split.train)
        results: dict = {"finetune": {}}
        for mode, sorted_lengths in (("random_length_batches", False), ("length_sorted_buckets", True)):
            cfg = dataclasses.replace(base, length_sorted_batches=sorted_lengths)
            fcfg, task, model, criterion, optimizer = _build(finetune_args(cfg, n_train))
            for name in ("train", "valid"):
                task.load_dataset(name)
            torch.manual_seed(args.seed)
            epoch = _train_epoch(fcfg, task, model, criterion, optimizer, "train")
            epoch["validation"] = _validate(task, model, criterion, fcfg)
            epoch["checkpoint_write"] = _checkpoint_write(model, optimizer, work)
            epoch["epoch_total_s"] = round(epoch["seconds"] + epoch["validation"]["seconds"]
                                           + epoch["checkpoint_write"]["seconds"], 2)
            results["finetune"][mode] = epoch
            print(mode, json.dumps(epoch), file=sys.stderr)
        results["pretraining"] = _pretraining(list(base.model_args), base.arch, work, args.pretrain_smiles,
                                              args.pretrain_updates, args.seed)
    pre = results["pretraining"]["real_tokens_per_s"]
    for mode, epoch in results["finetune"].items():
        epoch["ratio_to_pretraining"] = round(epoch["real_tokens_per_s"] / pre, 3) if pre else None
    record = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
        "torch_threads": torch.get_num_threads(), "dataset": args.dataset, "batch_size": args.batch_size,
        "arch": base.arch, "n_train": n_train, "seed": args.seed, **results,
        "peak_rss_mb": round(_peak_rss_mb(), 1), "wall_s": round(time.perf_counter() - started, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    out.with_suffix(".md").write_text(_markdown(record))
    print(_markdown(record))
    return 0


def _markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# Fine-tuning profile: {r['dataset']}, batch {r['batch_size']}, {r['arch']}", "",
             f"Command: `{r['command']}`  ", f"Machine: {m.get('cpu', '?')}, {m.get('usable_cpus', '?')} usable CPUs, "
             f"{r['torch_threads']} torch threads; {r['date']}; seed {r['seed']}.", "",
             "| one epoch of the train split | data | forward | backward | optimizer | validation | checkpoint write "
             "| total s | padding | real tokens/s | vs pretraining |", "|" + "---|" * 11]
    for mode, e in r["finetune"].items():
        p = e["phases_s"]
        lines.append(f"| {mode.replace('_', ' ')} ({e['updates']} updates) | {p['data']} | {p['forward']} | "
                     f"{p['backward']} | {p['optimizer']} | {e['validation']['seconds']} | "
                     f"{e['checkpoint_write']['seconds']} ({e['checkpoint_write']['megabytes']} MB) | "
                     f"{e['epoch_total_s']} | {100 * e['padding_fraction']:.1f}% | {e['real_tokens_per_s']:.0f} | "
                     f"{e['ratio_to_pretraining']:.2f} |")
    pre = r["pretraining"]
    lines += ["", f"Pretraining the same architecture (denoising, --max-tokens {pre['max_tokens']}, "
              f"{pre['updates']} updates): {pre['real_tokens_per_s']:.0f} real tokens/s, padding "
              f"{100 * pre['padding_fraction']:.1f}%. Peak RSS {r['peak_rss_mb']} MB; wall {r['wall_s']} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
