"""Runs on the lent GPU (scripts/device/retro.sh), where there is no RDKit: fine-tune for
retrosynthesis on root-aligned USPTO-50k pairs, then beam-search the rooted test views.

* Training: ``fairseq-train`` (the ``smiles_seq2seq`` task, ``source_views="rooted"``, the
  shipped pretrained model as the start) in a child process, stopped by fairseq's
  ``--stop-time-hours`` at ``--train-share`` of the time left.  Every ~90 s the newest
  ``checkpoint_last.pt`` is exported in fp16 to ``OUT/retro_fp16.pt`` (atomically), so a hang or
  a cut-off call still returns a model.
* Generation: the exported model, on the GPU, beam 10, over ``test_views.csv.gz`` (view 0 of
  every product first, then view 1, ...), appended to ``OUT/beams.jsonl.gz`` chunk by chunk until
  the time is up.  Raw beams only: canonicalization and scoring need RDKit and run back home
  (``scripts/device/retro_kit.py score``).
* ``OUT/run.json``: the settings, the fairseq argument list, the timings and what was done.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from bartsmiles.model.checkpoint import export_model
from bartsmiles.seq2seq import BartSmilesSeq2Seq
from bartsmiles.training.seq2seq import Seq2SeqConfig, resolve_config, seq2seq_args

EXPORT_EVERY_S = 90
#: fairseq's --stop-time-hours counts training time only; its start-up (imports, reading the
#: pairs, building the model) and the final validation and save come on top
STARTUP_S = 40


def _prepare_data(kit: Path, data: Path, train_limit: int, valid_limit: int) -> int:
    """train.csv / valid.csv in ``data`` from the kit; returns the number of training pairs."""
    data.mkdir(parents=True, exist_ok=True)
    n = 0
    with gzip.open(kit / "train.csv.gz", "rt", newline="") as src, open(data / "train.csv", "w", newline="") as dst:
        for i, line in enumerate(src):
            if train_limit and i > train_limit:
                break
            dst.write(line)
            n += i > 0
    with open(kit / "valid.csv", newline="") as src, open(data / "valid.csv", "w", newline="") as dst:
        for i, line in enumerate(src):
            if i > valid_limit:
                break
            dst.write(line)
    return n


def _export(ckpt_dir: Path, out: Path, work: Path) -> bool:
    """fp16 export of checkpoint_last.pt to OUT/retro_fp16.pt; False if it could not be read yet."""
    last = ckpt_dir / "checkpoint_last.pt"
    if not last.is_file():
        return False
    tmp = work / "export"
    shutil.rmtree(tmp, ignore_errors=True)
    try:  # fairseq copies checkpoint_last.pt in place: a half-written file fails to load, try again later
        model = export_model(last, tmp, fp16=True, dict_path=ckpt_dir / "dict.txt",
                             extra_metadata={"task": "smiles_seq2seq"})
    except Exception as exc:  # noqa: BLE001 - any read failure means "not now"
        print(f"export skipped: {type(exc).__name__}: {exc}", flush=True)
        return False
    os.replace(model, out / "retro_fp16.pt")
    return True


def _train(args, record: dict) -> None:
    data = args.work / "data"
    n_train = _prepare_data(args.kit, data, args.train_limit, args.valid_limit)
    cuda = torch.cuda.is_available()
    cfg = Seq2SeqConfig(data=str(data), pretrained=args.pretrained, save_dir=str(args.work / "ckpt"),
                        arch=args.arch, source_views="rooted", check_smiles=False, epochs=1000, batch_size=4096,
                        lr=args.lr, precision=args.precision if cuda else "fp32", cpu=not cuda,
                        num_workers=4 if cuda else 0, log_interval=50, log_file=str(args.out / "train.log"))
    cfg = resolve_config(cfg)
    train_seconds = args.seconds * args.train_share
    argv = seq2seq_args(cfg, n_train) + [
        "--max-tokens", str(args.max_tokens), "--max-update", str(args.max_update),
        "--total-num-update", str(args.max_update), "--warmup-updates", str(args.warmup),
        "--stop-time-hours", f"{max(train_seconds - STARTUP_S, 10) / 3600:.5f}", "--save-interval-updates", str(args.save_every),
        "--keep-interval-updates", "1", "--validate-interval-updates", str(args.save_every),
        "--skip-invalid-size-inputs-valid-test"]
    record.update(n_train=n_train, argv=argv, train_seconds_planned=round(train_seconds))
    (args.work / "argv.json").write_text(json.dumps(argv))
    code = "import json, sys; from bartsmiles.training.runner import fairseq_train; fairseq_train(json.load(open(sys.argv[1])))"
    t0 = time.time()
    with open(args.out / "stdout.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, str(args.work / "argv.json")], stdout=log,
                                stderr=subprocess.STDOUT, cwd=args.work)
    deadline = t0 + train_seconds + 15  # fairseq's clock starts after its start-up: stop it ourselves if late
    last_export = time.time()
    while proc.poll() is None:
        time.sleep(2)
        text = (args.out / "stdout.log").read_text(errors="replace")
        if "done training in" in text:
            time.sleep(5)
            break
        if time.time() > deadline:
            print("training overran its deadline: stopping it", flush=True)
            break
        if time.time() - last_export > EXPORT_EVERY_S and _export(args.work / "ckpt", args.out, args.work):
            last_export = time.time()
            print(f"[+{time.time() - t0:.0f}s] exported checkpoint_last.pt", flush=True)
    if proc.poll() is None:  # the DataLoader teardown hang of session 1: stop it ourselves
        proc.kill()
    proc.wait()
    record["train_wall_s"] = round(time.time() - t0, 1)
    record["exported"] = _export(args.work / "ckpt", args.out, args.work)
    print(f"training ended after {record['train_wall_s']} s; final export: {record['exported']}", flush=True)


def _generate(args, record: dict, end: float) -> None:
    model = BartSmilesSeq2Seq.load(args.out / "retro_fp16.pt")
    if torch.cuda.is_available():
        model.to("cuda", half=args.precision != "fp32")
    with gzip.open(args.kit / "test_views.csv.gz", "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if args.test_limit:
        rows = [r for r in rows if int(r["product"]) < args.test_limit]
    done, t0 = 0, time.time()
    with gzip.open(args.out / "beams.jsonl.gz", "wt") as out:
        for start in range(0, len(rows), args.gen_chunk):
            if time.time() > end:
                print(f"generation stopped by the budget after {done} of {len(rows)} views", flush=True)
                break
            chunk = rows[start:start + args.gen_chunk]
            beams = model.generate([r["source"] for r in chunk], beam=10, n_best=10, canonicalize=False,
                                   views="random", batch_size=args.gen_batch)
            for r, cands in zip(chunk, beams):
                out.write(json.dumps({"product": int(r["product"]), "view": int(r["view"]),
                                      "beams": [[s, round(p, 5)] for s, p in cands]}) + "\n")
            out.flush()
            done += len(chunk)
            print(f"[gen +{time.time() - t0:.0f}s] {done}/{len(rows)} views", flush=True)
    record.update(views_total=len(rows), views_done=done, generation_wall_s=round(time.time() - t0, 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, required=True, help="train.csv.gz, valid.csv, test_views.csv.gz")
    parser.add_argument("--pretrained", default="", help="the model to start from ('' = random init, rehearsals)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seconds", type=float, required=True, help="time left for training and generation")
    parser.add_argument("--train-share", type=float, default=0.72, help="share of --seconds for training")
    parser.add_argument("--arch", default="", help="'' = the pretrained model's")
    parser.add_argument("--precision", default="fp16", choices=("fp16", "bf16", "fp32"))
    parser.add_argument("--max-tokens", type=int, default=32768)
    parser.add_argument("--max-update", type=int, default=4000, help="length of the LR schedule")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--save-every", type=int, default=250, help="updates between checkpoints")
    parser.add_argument("--train-limit", type=int, default=0, help="first N training pairs only (rehearsals)")
    parser.add_argument("--valid-limit", type=int, default=1000)
    parser.add_argument("--test-limit", type=int, default=0, help="first N test products only (rehearsals)")
    parser.add_argument("--gen-chunk", type=int, default=2000, help="views per appended chunk")
    parser.add_argument("--gen-batch", type=int, default=512, help="sources per beam search batch")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    end = start + args.seconds - 15
    record: dict = {"settings": {k: str(v) for k, v in vars(args).items()},
                    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                    "torch": torch.__version__}
    try:
        _train(args, record)
        if record.get("exported") or (args.out / "retro_fp16.pt").is_file():
            _generate(args, record, end)
    finally:
        record["total_wall_s"] = round(time.time() - start, 1)
        (args.out / "run.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
