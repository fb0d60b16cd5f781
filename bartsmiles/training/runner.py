"""Run fairseq's own trainer, in process, on an argument list -- the ``fairseq-train`` path.

:func:`fairseq_train` does what the ``fairseq-train`` console script does (parse, convert to a
config, ``call_main``), so ``bartsmiles pretrain`` and a hand-written ``fairseq-train`` command
share one code path.  Around it we add the checks fairseq lacks:

* a ``--restore-file`` that names a missing file is an error (fairseq silently starts afresh);
* several workers without a GPU: fairseq's spawn would start ``min(#GPUs, N) = 0`` processes
  and exit 0 having trained nothing.  We refuse that, and :func:`launch_cpu_workers` runs the
  one recipe that works on CPU instead: one process per rank with ``--distributed-no-spawn``,
  the gloo backend, ``legacy_ddp`` and a ``tcp://127.0.0.1`` rendezvous.

This is not a home-made distribution: each rank is a plain ``python -m fairseq_cli.train``.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.distributed import utils as distributed_utils

import bartsmiles.tasks  # noqa: F401  (register the plugin once, under its one name)
from bartsmiles.errors import TrainingSetupError

logger = logging.getLogger(__name__)


def _flag_value(argv: Sequence[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def check_restore_file(argv: Sequence[str]) -> None:
    """Refuse a ``--restore-file`` that does not exist (fairseq would train from scratch)."""
    restore = _flag_value(argv, "--restore-file")
    if restore in (None, "checkpoint_last.pt"):
        return
    save_dir = _flag_value(argv, "--save-dir") or "checkpoints"
    candidates = [Path(restore)] if os.path.isabs(restore) else [Path(restore), Path(save_dir) / restore]
    if not any(p.is_file() for p in candidates):
        raise FileNotFoundError(
            f"--restore-file {restore!r} does not exist (looked at {', '.join(map(str, candidates))}); "
            "fairseq would silently train from scratch"
        )


def parse_fairseq_args(argv: Sequence[str]):
    """fairseq's own parsing of a ``fairseq-train`` argument list, as an omegaconf config."""

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, input_args=list(argv))
    return convert_namespace_to_omegaconf(args)


def check_distributed(cfg) -> None:
    """Refuse multi-worker settings that fairseq would turn into a silent no-op on CPU."""

    dt = cfg.distributed_training
    if dt.distributed_world_size > 1 and not dt.distributed_no_spawn:
        n_gpu = torch.cuda.device_count() if not cfg.common.cpu else 0
        if n_gpu < dt.distributed_world_size:
            raise TrainingSetupError(
                f"--distributed-world-size {dt.distributed_world_size} asks fairseq to spawn one process per "
                f"GPU, but {n_gpu} GPU(s) are usable: fairseq would start {min(n_gpu, dt.distributed_world_size)} "
                "process(es) and exit 0 having trained nothing. On CPU use `bartsmiles pretrain --cpu "
                "--world-size N` (one process per rank, gloo, legacy_ddp), or the per-rank recipe in the README."
            )
    if dt.distributed_world_size > 1 and dt.ddp_backend == "pytorch_ddp" and cfg.common.cpu:
        raise TrainingSetupError("--ddp-backend pytorch_ddp refuses CPU modules: use --ddp-backend legacy_ddp")


def fairseq_train(argv: Sequence[str]) -> None:
    """Train in this process exactly as ``fairseq-train ARGV`` would."""
    # lazy: importing fairseq_cli.train configures the root logger (basicConfig); only when training starts
    from fairseq_cli import train as fairseq_train_cli

    check_restore_file(argv)
    cfg = parse_fairseq_args(argv)
    check_distributed(cfg)
    distributed_utils.call_main(cfg, fairseq_train_cli.main)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_args(rank: int, world_size: int, port: int) -> list[str]:
    """The per-rank flags of the CPU recipe (see the module docstring)."""
    return [
        "--distributed-init-method", f"tcp://127.0.0.1:{port}",
        "--distributed-world-size", str(world_size),
        "--distributed-rank", str(rank),
        "--distributed-no-spawn",
        "--device-id", "0",
        "--distributed-backend", "gloo",
        "--ddp-backend", "legacy_ddp",
        "--cpu",
    ]


def _strip_flags(argv: Sequence[str], flags_with_value: set[str], flags: set[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in flags_with_value:
            skip = True
            continue
        if a in flags:
            continue
        out.append(a)
    return out


def launch_cpu_workers(argv: Sequence[str], world_size: int, *, log_dir: str | None = None, timeout: float | None = None) -> None:
    """Run ``fairseq-train ARGV`` as ``world_size`` CPU processes, one per rank; wait for all.

    If any rank fails, the others are stopped and :class:`RuntimeError` names the rank and its
    exit code (and the log file, with ``log_dir``).
    """
    check_restore_file(argv)
    base = _strip_flags(
        argv,
        {"--distributed-world-size", "--distributed-backend", "--ddp-backend", "--distributed-init-method",
         "--distributed-rank", "--device-id"},
        {"--distributed-no-spawn", "--cpu"},
    )
    port = free_port()
    procs, logs = [], []
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    for rank in range(world_size):
        cmd = [sys.executable, "-m", "fairseq_cli.train", *base, *rank_args(rank, world_size, port)]
        out = None
        if log_dir:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            out = open(Path(log_dir) / f"rank{rank}.log", "w")
            logs.append(out)
        procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None, env=env))
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank, code = failed[0]
                where = f" (log: {Path(log_dir) / f'rank{rank}.log'})" if log_dir else ""
                raise RuntimeError(f"distributed worker rank {rank} exited with code {code}{where}")
            if all(c == 0 for c in codes):
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"distributed training did not finish within {timeout} s")
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for fh in logs:
            fh.close()
