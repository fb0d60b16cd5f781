"""A fine-tuned ``smiles_property`` checkpoint, loaded to predict without its training data.

:class:`PropertyPredictor` reads the checkpoint safely (:func:`bartsmiles.model.checkpoint.load_fairseq_state`),
rebuilds the task from the metadata stored in it and predicts probabilities (classification) or
values in the original units (regression); :func:`predict` is the one-call form.  Row-preserving
prediction of whole tables, with a reason for each row that cannot be predicted, is
:mod:`bartsmiles.model.prediction`.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import torch

from bartsmiles.core.chem import parse_smiles
from bartsmiles.errors import CheckpointError, InvalidSmilesError
from bartsmiles.model.checkpoint import load_fairseq_state
from bartsmiles.tasks.property import STATE_KEY, SmilesPropertyTask
from bartsmiles.tasks.property_criterion import to_predictions

logger = logging.getLogger(__name__)


class PropertyPredictor:
    """A fine-tuned checkpoint, loaded for prediction without its training data."""

    def __init__(self, checkpoint: str | os.PathLike):
        state = load_fairseq_state(checkpoint)
        task_state = state.get("task_state") or {}
        if STATE_KEY not in task_state:
            raise CheckpointError(f"{checkpoint} is not a fine-tuned smiles_property checkpoint (no task_state[{STATE_KEY!r}])")
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
        """(n, n_tasks) probabilities (classification) or values in the original units, in input order.

        A SMILES that RDKit cannot parse gets a row of NaN (and a warning).  Batches are cut from
        the molecules sorted by length, so that each pads to a similar length (the dataset's
        order); each output row goes back to its input position by the batch's ``id``.
        """
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
        out[ok] = self.predict_ids(ids, batch_size=batch_size)
        return out

    def predict_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 64) -> np.ndarray:
        """(n, n_tasks) predictions of already encoded molecules (``[<s>, ..., </s>]`` token ids), in input order.

        The molecules are sorted by length and cut into batches of ``batch_size``, so that each
        batch pads to a similar length; each output row goes back to its input position.
        """
        values = np.full((len(ids), len(self.task_names)), np.nan)
        if not len(ids):
            return values
        dataset = self.task.build_dataset_for_inference(ids)
        head = self.meta["classification_head_name"]
        device = next(self.model.parameters()).device  # the CPU unless moved (an Attributor's ``device``)
        order = dataset.ordered_indices()
        # no_grad, not inference_mode: fairseq caches its decoder's causal mask, and a mask made in inference
        # mode breaks a later backward pass through the same model (an Attributor sharing this predictor)
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                batch = dataset.collater([dataset[int(i)] for i in order[start:start + batch_size]])
                net_input = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch["net_input"].items()}
                logits, _ = self.model(**net_input, features_only=True, classification_head_name=head)
                values[batch["id"].numpy()] = to_predictions(logits.float(), self.meta).cpu().numpy()
        return values


def predict(checkpoint: str | os.PathLike, smiles: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Predictions of a fine-tuned checkpoint for ``smiles`` (see :meth:`PropertyPredictor.predict`)."""
    return PropertyPredictor(checkpoint).predict(smiles, batch_size=batch_size)


__all__ = ["PropertyPredictor", "predict"]
