"""Resuming an interrupted fine-tuning run from ``SAVE_DIR/checkpoint_last.pt`` (same config and data only)."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .property_model import _load_state

if TYPE_CHECKING:
    from .finetuning import FinetuneConfig

logger = logging.getLogger(__name__)


#: config fields that may differ between a killed run and its continuation
RESUME_IGNORED_FIELDS = ("log_file", "log_interval", "score_test", "num_workers", "valid_batch_size", "progress")
_RESET_FLAGS = ("--reset-optimizer", "--reset-dataloader", "--reset-meters", "--reset-lr-scheduler")


def _last_epoch(save_dir: Path) -> int:
    """The epoch of ``checkpoint_last.pt`` in ``save_dir`` (0 when there is none)."""
    last = save_dir / "checkpoint_last.pt"
    if not last.is_file():
        return 0
    try:
        return int(((_load_state(last).get("extra_state") or {}).get("train_iterator") or {}).get("epoch", 0))
    except Exception:  # an unreadable checkpoint: the resume check reports it
        return 0


def _same_run(saved: dict, current: dict) -> list[str]:
    """Names of the config fields that differ (ignoring :data:`RESUME_IGNORED_FIELDS`)."""
    keys = (set(saved) | set(current)) - set(RESUME_IGNORED_FIELDS)
    return sorted(k for k in keys if saved.get(k) != current.get(k))


def _data_fingerprint(cfg: FinetuneConfig) -> dict:
    """sha256 of the data file(s) and of the split file, so edited data is never resumed."""
    from .datasets import sha256_file as digest
    from .finetuning import split_file_path

    data = Path(cfg.data)
    files = sorted(data.glob("*.csv*")) if data.is_dir() else [data]
    split = split_file_path(cfg)
    if split and Path(split).is_file():
        files.append(Path(split))
    return {str(f): digest(f) for f in files if f.is_file()}


def resume_args(cfg: FinetuneConfig, argv: Sequence[str], resume: bool = True) -> list[str]:
    """The argument list to run: ``argv``, or its continuation of an interrupted run.

    :func:`~bartsmiles.finetuning.finetune_args` restores the *pretrained* checkpoint with ``--reset-*`` flags, so
    rerunning an interrupted run with the same ``save_dir`` would start again from the
    pretrained weights (and overwrite the epoch checkpoints).  When ``resume`` is true,
    ``SAVE_DIR/checkpoint_last.pt`` exists and ``SAVE_DIR/finetune_config.json`` records the
    same configuration (fields in :data:`RESUME_IGNORED_FIELDS` may differ) and
    ``SAVE_DIR/resume_fingerprint.json`` the same sha256 of the data and split files (this
    function writes it for the current run), the pretrained
    ``--restore-file`` and the reset flags are replaced by ``--restore-file checkpoint_last.pt``:
    fairseq then continues with the next epoch, the optimizer, learning-rate schedule, data
    order and best-so-far value as they were saved.  A finished run "continues" with no
    training at all.  With a different configuration the run starts afresh, with a warning.

    (Without a pretrained checkpoint fairseq's default ``--restore-file checkpoint_last.pt``
    already continues from ``SAVE_DIR``; the list is returned unchanged.)
    """
    argv = list(argv)
    last = Path(cfg.save_dir) / "checkpoint_last.pt"
    fingerprint_file = Path(cfg.save_dir) / "resume_fingerprint.json"
    fingerprint = _data_fingerprint(cfg)
    previous = None
    if fingerprint_file.is_file():
        try:
            previous = json.loads(fingerprint_file.read_text())
        except ValueError:
            previous = None
    Path(cfg.save_dir).mkdir(parents=True, exist_ok=True)
    fingerprint_file.write_text(json.dumps(fingerprint, indent=2))
    if not resume or not cfg.pretrained or not last.is_file():
        return argv
    record = Path(cfg.save_dir) / "finetune_config.json"
    current = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError):
        logger.warning("%s exists but %s does not describe its run: starting afresh from %s",
                       last, record, cfg.pretrained)
        return argv
    differ = _same_run(saved, current) + (["data or split file contents"] if previous != fingerprint else [])
    if differ:
        logger.warning("%s is from a run with a different configuration (%s): starting afresh from %s",
                       last, ", ".join(differ), cfg.pretrained)
        return argv
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--restore-file":
            i += 2
            continue
        if argv[i] not in _RESET_FLAGS:
            out.append(argv[i])
        i += 1
    logger.info("resuming the interrupted run in %s from %s", cfg.save_dir, last)
    return out + ["--restore-file", "checkpoint_last.pt"]


__all__ = ["RESUME_IGNORED_FIELDS", "resume_args"]
