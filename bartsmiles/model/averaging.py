"""Checkpoint averaging: the parameter-wise mean of several fairseq checkpoints.

BARTSmiles scores the average of 4 consecutive epoch checkpoints ending near the best validation
epoch.  Two functions do that here:

* :func:`average_checkpoints` -- ``paths -> out_path``: every floating-point tensor of
  ``state["model"]`` is replaced by the mean over the checkpoints (accumulated in float64, then
  cast back to the dtype of the last checkpoint's tensor); integer tensors (e.g. step counters)
  must agree and are copied.  Everything else -- ``cfg``, ``task_state`` (label names, target
  scaling, dictionary), ``extra_state`` -- is taken from the **last** path.  The optimizer state
  is dropped (an average has no meaningful one), so the result is for prediction and export, not
  for resuming training.  Checkpoints are read with :func:`bartsmiles.model.checkpoint.safe_load`.
* :func:`average_last_epochs` -- picks ``k`` consecutive ``checkpointN.pt`` files of a fairseq
  ``save_dir`` and writes ``SAVE_DIR/checkpoint_avg.pt``.

Which epoch is "best": fairseq stores, in each epoch checkpoint, the value of
``--best-checkpoint-metric`` for that epoch as ``extra_state["val_loss"]`` (for the
``smiles_property`` task that is the validation ``roc_auc``/``prc_auc``/``rmse``, despite the
name), and whether larger is better as ``cfg.checkpoint.maximize_best_checkpoint_metric``.
With ``around="best"`` the window is the ``k`` consecutive epochs *ending* at the best epoch;
when fewer than ``k`` epochs precede it, the window starts at the first available epoch and
extends past the best one.  ``around="last"`` takes the ``k`` newest epochs.
"""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch

from bartsmiles.model.checkpoint import config_value, safe_load

__all__ = ["average_checkpoints", "average_last_epochs", "epoch_checkpoints", "epoch_metrics",
           "choose_window", "AVERAGE_NAME"]

logger = logging.getLogger(__name__)

AVERAGE_NAME = "checkpoint_avg.pt"
_EPOCH_FILE = re.compile(r"^checkpoint(\d+)\.pt$")


def average_checkpoints(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> Path:
    """Write the parameter-wise mean of the fairseq checkpoints ``paths`` to ``out_path``.

    All checkpoints must hold the same parameter names and shapes (a :class:`ValueError` names
    the first difference). See the module docstring for what is kept. Returns ``out_path``.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("average_checkpoints: no checkpoints given")
    sums: dict[str, torch.Tensor] = {}
    exact: dict[str, torch.Tensor] = {}
    last: dict = {}
    reference: Path | None = None
    for path in paths:
        state = safe_load(path)
        if "model" not in state:
            raise ValueError(f"{path} is not a fairseq checkpoint (no 'model' entry)")
        weights = state["model"]
        if reference is None:
            reference = path
            for name, tensor in weights.items():
                if tensor.is_floating_point():
                    sums[name] = tensor.detach().to(torch.float64).clone()
                else:
                    exact[name] = tensor.detach().clone()
        else:
            names = set(weights)
            known = set(sums) | set(exact)
            if names != known:
                extra, missing = sorted(names - known), sorted(known - names)
                raise ValueError(f"{path} and {reference} hold different parameters "
                                 f"(only in {path.name}: {extra[:5]}, only in {reference.name}: {missing[:5]})")
            for name, tensor in weights.items():
                ref = sums.get(name, exact.get(name))
                if tuple(tensor.shape) != tuple(ref.shape):
                    raise ValueError(f"parameter {name}: shape {tuple(tensor.shape)} in {path} but "
                                     f"{tuple(ref.shape)} in {reference}")
                if name in sums:
                    sums[name] += tensor.detach().to(torch.float64)
                elif not torch.equal(tensor, exact[name]):
                    raise ValueError(f"integer tensor {name} differs between {reference} and {path}: "
                                     f"cannot average it")
        last = state
    n = float(len(paths))
    model = {}
    for name, tensor in last["model"].items():
        model[name] = (sums[name] / n).to(tensor.dtype) if name in sums else exact[name]
    out = dict(last)
    out["model"] = model
    out["last_optimizer_state"] = None
    extra = dict(out.get("extra_state") or {})
    extra["averaged_from"] = [p.name for p in paths]
    out["extra_state"] = extra
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    torch.save(out, tmp)
    os.replace(tmp, out_path)
    return out_path


def epoch_checkpoints(save_dir: str | os.PathLike) -> dict[int, Path]:
    """``{epoch: path}`` of the ``checkpointN.pt`` files in ``save_dir``."""
    found = {}
    for path in Path(save_dir).iterdir():
        match = _EPOCH_FILE.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def epoch_metrics(paths: Mapping[int, Path]) -> tuple[dict[int, float], bool]:
    """``({epoch: validation metric}, maximize)`` read from the epoch checkpoints.

    Epochs whose checkpoint stores no finite metric are left out.
    """
    values: dict[int, float] = {}
    maximize = False
    for epoch, path in paths.items():
        state = safe_load(path)
        value = (state.get("extra_state") or {}).get("val_loss")
        cfg = state.get("cfg")
        maximize = bool(config_value(config_value(cfg, "checkpoint"), "maximize_best_checkpoint_metric", maximize))
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            values[epoch] = float(value)
    return values, maximize


def choose_window(epochs: Iterable[int], k: int, best: int | None, around: str = "best") -> list[int]:
    """``k`` consecutive epochs out of ``epochs`` (see the module docstring); fewer if not enough exist."""
    available = sorted(set(epochs))
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if around not in ("best", "last"):
        raise ValueError(f"around must be 'best' or 'last', got {around!r}")
    if around == "last" or best is None:
        end = available[-1]
    else:
        # end at the best epoch, or as soon after it as k epochs are reachable from the start
        end = max(best, available[0] + k - 1)
        end = min(end, available[-1])
    window = [e for e in range(end - k + 1, end + 1) if e in available]
    if len(window) < k:
        # gaps (epochs removed by --keep-last-epochs): take the k available epochs closest to `end`
        before = [e for e in available if e <= end][-k:]
        window = before
    return window


def average_last_epochs(save_dir: str | os.PathLike, k: int = 4, around: str = "best",
                        out_name: str = AVERAGE_NAME) -> Path:
    """Average ``k`` consecutive epoch checkpoints of ``save_dir`` into ``SAVE_DIR/checkpoint_avg.pt``.

    ``around="best"``: the window ends at the epoch with the best stored validation metric (see
    the module docstring); ``"last"``: the ``k`` newest epochs.  Fewer than ``k`` available epoch
    checkpoints are averaged with a warning (train with ``keep_last_epochs=-1`` or ``>= k``).
    Raises FileNotFoundError when ``save_dir`` has no ``checkpointN.pt``.
    """
    paths = epoch_checkpoints(save_dir)
    if not paths:
        raise FileNotFoundError(f"no epoch checkpoints (checkpointN.pt) in {save_dir}")
    best = None
    if around == "best":
        values, maximize = epoch_metrics(paths)
        if values:
            # the best value; on a tie, the earliest epoch (as fairseq keeps the first best)
            if maximize:
                best = max(values, key=lambda e: (values[e], -e))
            else:
                best = min(values, key=lambda e: (values[e], e))
        else:
            logger.warning("no validation metric stored in the epoch checkpoints of %s: averaging the last "
                           "epochs", save_dir)
    window = choose_window(paths, k, best, around)
    if len(window) < k:
        logger.warning("averaging %d epoch checkpoint(s) instead of %d: only epochs %s are in %s",
                       len(window), k, sorted(paths), save_dir)
    logger.info("averaging epochs %s (best epoch: %s) of %s", window, best, save_dir)
    out = average_checkpoints([paths[e] for e in window], Path(save_dir) / out_name)
    return out
