"""What a results file records about where it ran: the machine and a process's peak memory.

:func:`machine_info` (platform, CPU, memory, library versions, git commit) and
:func:`_peak_rss_mb` (this process's peak resident set size) -- used by the protocol runner
(:mod:`bartsmiles.evaluation.benchmark`) and the retrosynthesis benchmark.
"""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["machine_info"]


def _peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process image.
    ``getrusage(RUSAGE_SELF).ru_maxrss`` is *not* used there because Linux carries it over
    ``exec``: a subprocess started from a large parent would report the parent's size.
    Children the run waited for (``RUSAGE_CHILDREN``) are included by taking the maximum.
    Elsewhere ``ru_maxrss`` (KiB on Linux/BSD, bytes on macOS) is the fallback.
    """
    own_kib = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                own_kib = float(line.split()[1])
                break
    except OSError:
        pass
    scale = 1024.0 if sys.platform == "darwin" else 1.0  # ru_maxrss -> KiB
    if own_kib is None:
        own_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    kids_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / scale
    return round(max(own_kib, kids_kib) / 1024.0, 1)


def machine_info() -> dict:
    """Platform, CPU, memory and library versions of this machine (for the results file)."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count()}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gb"] = round(int(line.split()[1]) / 1024 ** 2, 1)
                break
    except OSError:
        pass
    try:
        info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    versions = {}
    for name in ("numpy", "sklearn", "rdkit", "torch", "fairseq", "bartsmiles"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except Exception:  # not installed, or broken: record that
            versions[name] = None
    info["versions"] = versions
    try:
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        info["gpu"] = None
    try:
        repo = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                   capture_output=True, text=True, timeout=10)
            info["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info
