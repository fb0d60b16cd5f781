"""Property-model checkpoints: reading a pretrained model's shape, loading a fine-tuned one to predict.

* :func:`pretrained_model_args` reads the architecture and shape flags of a pretrained fairseq
  checkpoint; :func:`resolve_model` turns them into config changes (shared by property
  fine-tuning and seq2seq).
* :class:`PropertyPredictor` loads a fine-tuned ``smiles_property`` checkpoint for prediction
  without its training data; :func:`predict` is the one-call form.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: model-shape fields read from a pretrained checkpoint and passed on explicitly
SHAPE_FIELDS = (
    "encoder_layers", "decoder_layers", "encoder_embed_dim", "decoder_embed_dim",
    "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_embed_dim",
    "decoder_ffn_embed_dim", "max_source_positions", "max_target_positions",
)


def _load_state(path: str | os.PathLike) -> dict:
    import bartsmiles.tasks  # noqa: F401  (allowlist fairseq's globals for torch.load)
    from fairseq import checkpoint_utils

    return checkpoint_utils.load_checkpoint_to_cpu(str(path))


def pretrained_model_args(path: str | os.PathLike) -> tuple[str, list[str]]:
    """(arch, explicit shape flags) of a pretrained fairseq checkpoint."""
    from .checkpoint import config_value, model_config

    model_cfg = model_config(_load_state(path))
    arch = config_value(model_cfg, "arch") or config_value(model_cfg, "_name")
    flags: list[str] = []
    for name in SHAPE_FIELDS:
        value = config_value(model_cfg, name)
        if value is not None:
            flags += ["--" + name.replace("_", "-"), str(value)]
    return str(arch), flags


def untrained_like(source: str | os.PathLike, path: str | os.PathLike, seed: int = 0) -> str:
    """Write a randomly initialized checkpoint with ``source``'s shape and dictionary to ``path``.

    The control for anything that claims to measure pretraining: same architecture, same shape
    flags, same ``dict.txt`` (copied beside ``path``), fresh weights from ``seed``.
    """
    from .checkpoint import write_untrained_checkpoint

    source = Path(source)
    arch, flags = pretrained_model_args(source)
    return str(write_untrained_checkpoint(arch, source.with_name("dict.txt"), path, seed=seed,
                                          extra_args=tuple(flags)))


def resolve_model(pretrained: str, arch: str, model_args: Sequence[str], cpu: Optional[bool]) -> dict:
    """Config changes that make the model match ``pretrained`` and pick the device.

    The architecture and shape flags are read from the pretrained checkpoint (a different
    ``arch`` would fail to load, so the checkpoint wins with a warning); without a checkpoint the
    default is ``bartsmiles_small``.  ``cpu=None`` becomes "CPU exactly when no GPU is visible".
    Shared by property fine-tuning and seq2seq.
    """
    changes: dict = {}
    if pretrained:
        if not Path(pretrained).is_file():
            raise FileNotFoundError(
                f"pretrained checkpoint not found: {pretrained} (fairseq would silently train from scratch)"
            )
        found, flags = pretrained_model_args(pretrained)
        if arch and arch != found:
            logger.warning("arch %s given, but %s was pretrained as %s: using the checkpoint's shape",
                           arch, pretrained, found)
        changes["arch"] = found
        if not model_args:
            changes["model_args"] = tuple(flags)
    elif not arch:
        changes["arch"] = "bartsmiles_small"
    if cpu is None:
        import torch

        changes["cpu"] = not torch.cuda.is_available()
    return changes


class PropertyPredictor:
    """A fine-tuned checkpoint, loaded for prediction without its training data."""

    def __init__(self, checkpoint: str | os.PathLike):
        from bartsmiles.tasks.property import STATE_KEY, SmilesPropertyTask

        from .finetuning import FinetuneError

        state = _load_state(checkpoint)
        task_state = state.get("task_state") or {}
        if STATE_KEY not in task_state:
            raise FinetuneError(f"{checkpoint} is not a smiles_property checkpoint (no task_state[{STATE_KEY!r}])")
        cfg = state["cfg"]
        self.task = SmilesPropertyTask.for_inference(cfg.task, task_state)
        self.meta = self.task.meta
        self.model = self.task.build_model(cfg.model)
        self.model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
        self.model.eval()

    @property
    def task_names(self) -> list[str]:
        return list(self.meta["task_names"])

    def predict(self, smiles: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(n, n_tasks) probabilities (classification) or values in the original units.

        A SMILES that RDKit cannot parse gets a row of NaN (and a warning).
        """
        import torch

        from bartsmiles.chem import InvalidSmilesError, parse_smiles
        from bartsmiles.tasks.property_criterion import to_predictions

        smiles = [str(s).strip() for s in smiles]
        ok = []
        for i, s in enumerate(smiles):
            try:
                parse_smiles(s)
                ok.append(i)
            except InvalidSmilesError:
                pass
        if len(ok) < len(smiles):
            logger.warning("predict: %d SMILES do not parse; their rows are NaN", len(smiles) - len(ok))
        out = np.full((len(smiles), len(self.task_names)), np.nan)
        if not ok:
            return out
        ids, _, _ = self.task.encode([smiles[i] for i in ok], on_overflow="truncate")
        dataset = self.task.build_dataset_for_inference(ids)
        head = self.meta["classification_head_name"]
        preds = []
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                batch = dataset.collater([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
                logits, _ = self.model(**batch["net_input"], features_only=True, classification_head_name=head)
                preds.append(to_predictions(logits.float(), self.meta).numpy())
        out[ok] = np.concatenate(preds).astype(np.float64)
        return out


def predict(checkpoint: str | os.PathLike, smiles: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Predictions of a fine-tuned checkpoint for ``smiles`` (see :meth:`PropertyPredictor.predict`)."""
    return PropertyPredictor(checkpoint).predict(smiles, batch_size=batch_size)


__all__ = ["SHAPE_FIELDS", "pretrained_model_args", "untrained_like", "resolve_model", "PropertyPredictor", "predict"]
