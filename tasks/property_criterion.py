"""The ``smiles_property`` criterion: masked multi-task BCE or MSE, plus a whole-split metric.

* classification: binary cross-entropy with logits per (molecule, task), optionally with the
  task's ``pos_weight``; entries whose label is NaN contribute nothing, neither to the loss nor to
  the gradient (they are replaced by 0 *before* the loss is computed, then multiplied by 0);
* regression: squared error on standardized targets (the task's training mean/std), NaN masked.

``sample_size`` is the number of observed labels, so fairseq's gradient normalization makes the
loss a mean over observed labels; a batch with no label gives a zero loss and zero gradient.
The logged ``loss`` is that mean (natural log units for BCE).

In evaluation mode the criterion also returns the batch's predictions (probabilities, or values in
the original units) and labels; :meth:`reduce_metrics` feeds them to a meter that scores the
whole validation split at once (fairseq validates inside a fresh aggregator, so the meter starts
empty each time), and logs it as ``roc_auc``, ``prc_auc`` or ``rmse``.
"""

import numpy as np
import torch
import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from fairseq.logging.meters import Meter

from bartsmiles.core.metrics import score


class PredictionMeter(Meter):
    """Collects (prediction, label) rows and scores them with :func:`bartsmiles.core.metrics.score`.

    It is only ever used inside fairseq's temporary validation aggregators, which are not saved
    in checkpoints; its state_dict is therefore just the metric name.
    """

    def __init__(self, metric: str = "roc_auc"):
        self.metric = metric
        self.reset()

    def reset(self):
        self.preds, self.targets = [], []
        self._cache = None

    def update(self, preds, targets):
        self.preds.append(np.asarray(preds, dtype=np.float64))
        self.targets.append(np.asarray(targets, dtype=np.float64))
        self._cache = None

    def state_dict(self):
        return {"metric": self.metric}

    def load_state_dict(self, state_dict):
        self.metric = state_dict.get("metric", self.metric)
        self.reset()

    @property
    def smoothed_value(self) -> float:
        if self._cache is None:
            if not self.preds:
                return float("nan")
            try:
                self._cache = round(float(score(self.metric, np.concatenate(self.targets), np.concatenate(self.preds))), 6)
            except ValueError:  # e.g. a batch or split with a single class: undefined, not an error
                self._cache = float("nan")
        return self._cache


def scaling_tensors(meta, like: torch.Tensor):
    """The task's target (mean, std) as tensors like ``like``, or (None, None)."""
    if meta.get("target_mean") is None:
        return None, None
    mean = torch.tensor(meta["target_mean"], dtype=like.dtype, device=like.device)
    std = torch.tensor(meta["target_std"], dtype=like.dtype, device=like.device)
    return mean, std


def to_predictions(logits: torch.Tensor, meta) -> torch.Tensor:
    """Head outputs -> probabilities (classification) or values in the original units (regression)."""
    if meta["task_type"] == "classification":
        return torch.sigmoid(logits)
    mean, std = scaling_tensors(meta, logits)
    return logits * std + mean if mean is not None else logits


@register_criterion("smiles_property", dataclass=FairseqDataclass)
class SmilesPropertyCriterion(FairseqCriterion):
    """Masked BCE-with-logits (classification) or MSE on standardized targets (regression)."""

    def __init__(self, task):
        super().__init__(task)

    def _meta(self):
        return self.task.meta

    def forward(self, model, sample, reduce=True):
        meta = self._meta()
        logits, _ = model(
            **sample["net_input"], features_only=True, classification_head_name=meta["classification_head_name"]
        )
        logits = logits.float()
        target = sample["target"].to(logits)
        if target.dim() == 1:
            target = target.unsqueeze(-1)
        observed = ~torch.isnan(target)
        weight = observed.to(logits.dtype)
        if meta["task_type"] == "classification":
            safe = torch.where(observed, target, torch.zeros_like(target))
            pos_weight = meta.get("pos_weight")
            pw = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device) if pos_weight else None
            per_entry = F.binary_cross_entropy_with_logits(logits, safe, pos_weight=pw, reduction="none")
        else:
            mean, std = self._scaling(logits)
            scaled = (target - mean) / std if mean is not None else target
            safe = torch.where(observed, scaled, torch.zeros_like(scaled))
            per_entry = (logits - safe) ** 2
        loss = (per_entry * weight).sum()
        sample_size = int(observed.sum().item())
        logging_output = {
            "loss": loss.detach().item(),
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"] if "nsentences" in sample else target.size(0),
            "sample_size": sample_size,
        }
        if not model.training:
            logging_output["_metric"] = meta["metric"]
            logging_output["_pred"] = self.predictions(logits).detach().cpu().numpy()
            logging_output["_target"] = target.detach().cpu().numpy()
        return loss, sample_size, logging_output

    def _scaling(self, like: torch.Tensor):
        return scaling_tensors(self._meta(), like)

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """Model outputs -> probabilities (classification) or values in the original units."""
        return to_predictions(logits, self._meta())

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss_sum = sum(log.get("loss", 0.0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss_sum / sample_size if sample_size else 0.0, sample_size, round=4)
        with_preds = [log for log in logging_outputs if "_pred" in log]
        if with_preds:
            name = with_preds[0]["_metric"]
            preds = np.concatenate([log["_pred"] for log in with_preds])
            targets = np.concatenate([log["_target"] for log in with_preds])
            metrics.log_custom(lambda: PredictionMeter(name), name, preds, targets)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False  # evaluation outputs carry prediction arrays


__all__ = ["SmilesPropertyCriterion", "PredictionMeter", "to_predictions", "scaling_tensors"]
