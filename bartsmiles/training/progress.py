"""A progress bar per epoch for fairseq training runs (fine-tuning, seq2seq, pretraining).

fairseq reports through :mod:`logging`: with ``--log-format json`` its progress bar logs one JSON
object per ``--log-interval`` updates (``{"epoch": 2, "loss": ..., "num_updates": ...}``), one
per finished training epoch (keys prefixed ``train_``) and one per validation (keys prefixed by
the subset name, ``valid_``).  :class:`EpochProgress` listens to those records and drives a
:mod:`tqdm` bar with one step per epoch, whose postfix shows the latest training loss and the
validation metric.

While the bar is shown, fairseq's INFO lines are kept off the console (they would tear the bar)
but still reach every file handler, so ``--log-file`` keeps the whole log.  Warnings and errors
still reach the console.
"""
from __future__ import annotations

import json
import logging
import warnings
from typing import Optional

from tqdm.auto import tqdm

#: the logger fairseq's JSON progress bar writes to
FAIRSEQ_PROGRESS_LOGGER = "fairseq.logging.progress_bar"
_QUIET_PREFIXES = ("fairseq", "fairseq_cli", "hydra")
#: warnings fairseq and torch repeat every epoch on CPU, harmless here, hidden while the bar shows
HARMLESS_WARNINGS = (
    r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",
    r"Support for mismatched key_padding_mask and attn_mask is deprecated",
    r"'pin_memory' argument is set as true but no accelerator is found",
)
#: fairseq renames its progress logger to the stats tag while it logs a record
_QUIET_TAGS = ("train", "train_inner", "valid")


def parse_record(message: str) -> Optional[dict]:
    """The JSON object of one fairseq progress line, or None for any other line."""
    message = message.strip()
    if not message.startswith("{"):
        return None
    try:
        stats = json.loads(message)
    except ValueError:
        return None
    return stats if isinstance(stats, dict) else None


class _ConsoleFilter(logging.Filter):
    """Drop fairseq's INFO records on console handlers (file handlers are not filtered)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not (record.name.startswith(_QUIET_PREFIXES) or record.name in _QUIET_TAGS)


class _StatsHandler(logging.Handler):
    def __init__(self, progress: "EpochProgress"):
        super().__init__(level=logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stats = parse_record(record.getMessage())
        except Exception:  # a logging handler must never raise into the trainer
            return
        if stats:
            self.progress.update(stats)


class EpochProgress:
    """Context manager: a tqdm bar over ``epochs`` fed by fairseq's JSON log records.

    ``metric`` names the validation statistic to show (``roc_auc``, ``rmse``, ``loss``, ...);
    ``first_epoch`` lets a resumed run start the bar where it left off.  ``enabled=False``
    makes it a no-op, so callers need no branches.
    """

    def __init__(self, epochs: int, metric: str = "loss", *, desc: str = "fine-tuning",
                 first_epoch: int = 1, enabled: bool = True, valid_subset: str = "valid"):
        self.epochs = int(epochs)
        self.metric = metric
        self.desc = desc
        self.first_epoch = int(first_epoch)
        self.enabled = enabled
        self.valid_prefix = valid_subset + "_"
        self.postfix: dict[str, str] = {}
        self.history: list[dict] = []  # one entry per finished epoch: epoch, train_loss, valid metric
        self._bar = None
        self._handler: Optional[_StatsHandler] = None
        self._filter = _ConsoleFilter()
        self._filtered: list[logging.Handler] = []
        self._done_epochs: set[int] = set()
        self._warnings: Optional[warnings.catch_warnings] = None

    # -------------------------------------------------------------------------- context
    def __enter__(self) -> "EpochProgress":
        if not self.enabled:
            return self

        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        for pattern in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        self.postfix = {"loss": "-", f"valid {self.metric}": "-"}
        # a finished run that is "resumed" validates once more: the bar never passes its total
        initial = max(0, self.first_epoch - 1)
        self._bar = tqdm(total=self.epochs, initial=min(initial, self.epochs) if self.epochs else initial, desc=self.desc,
                         unit="epoch", dynamic_ncols=True)
        # lazy: fairseq_cli.train adds its console handler when first imported (root logger
        # configuration); let it exist before we filter it, and only when training starts
        import fairseq_cli.train  # noqa: F401
        self._handler = _StatsHandler(self)
        logging.getLogger(FAIRSEQ_PROGRESS_LOGGER).addHandler(self._handler)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.addFilter(self._filter)
                self._filtered.append(handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._handler is not None:
            logging.getLogger(FAIRSEQ_PROGRESS_LOGGER).removeHandler(self._handler)
            self._handler = None
        for handler in self._filtered:
            handler.removeFilter(self._filter)
        self._filtered = []
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._warnings is not None:
            self._warnings.__exit__(*exc)
            self._warnings = None

    # -------------------------------------------------------------------------- records
    def update(self, stats: dict) -> None:
        """Take one fairseq stats record (also usable without a bar, e.g. in tests)."""
        if "loss" in stats and "num_updates" in stats:  # within an epoch
            self.postfix["loss"] = str(stats["loss"])
        elif "train_loss" in stats:  # training part of an epoch finished
            self.postfix["loss"] = str(stats["train_loss"])
            self._epoch_entry(stats.get("epoch"))["train_loss"] = _number(stats["train_loss"])
        else:
            key = self.valid_prefix + self.metric
            if key not in stats:
                return
            epoch = stats.get("epoch")
            self.postfix[f"valid {self.metric}"] = str(stats[key])
            self._epoch_entry(epoch)[f"valid_{self.metric}"] = _number(stats[key])
            if epoch not in self._done_epochs:
                self._done_epochs.add(epoch)
                if self._bar is not None and (not self.epochs or self._bar.n < self.epochs):
                    self._bar.update(1)
        if self._bar is not None:
            self._bar.set_postfix(self.postfix, refresh=True)

    def _epoch_entry(self, epoch) -> dict:
        for entry in self.history:
            if entry["epoch"] == epoch:
                return entry
        entry = {"epoch": epoch}
        self.history.append(entry)
        return entry


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
