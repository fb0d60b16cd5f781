"""The ``smiles_denoising`` criterion: BART's token cross-entropy, plus an optional descriptor loss.

Without the task's ``--descriptor-loss`` it is fairseq's ``cross_entropy`` (same loss, same
``sample_size`` = target tokens). With it, a small head on the **mean-pooled encoder output**
(non-pad positions, ``<s>`` and ``</s>`` included: the pooling of
:meth:`bartsmiles.model.pretrained.PretrainedModel.encode`) regresses the molecule's standardized
RDKit descriptors (:mod:`.descriptors`):

    loss / sample_size = cross-entropy per target token + descriptor_weight x descriptor MSE

where the MSE is the mean, over molecules with any target, of the mean squared error over that
molecule's finite targets (standardized units). The encoder sees the *corrupted* SMILES, as in
the denoising loss, so no extra forward pass is spent.

The head belongs to the criterion, not the model: fairseq saves it in the checkpoint's
``criterion`` entry (so a killed run resumes it), while the model's weights, and every consumer
of them (fine-tuning, ``load_pretrained``), stay exactly those of a plain BART.

Logged: ``loss`` (bits per token, descriptor term included), ``nll_loss`` (the denoising
cross-entropy alone, bits per token: compare it across objectives) and ``descriptor_mse``.
"""
import logging
import math

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from torch import nn

logger = logging.getLogger(__name__)


def mean_pool(states: torch.Tensor, padding_mask) -> torch.Tensor:
    """``(T, B, C)`` encoder states -> ``(B, C)`` mean over non-pad positions."""
    states = states.transpose(0, 1)
    if padding_mask is None:
        return states.mean(dim=1)
    keep = (~padding_mask).unsqueeze(-1).to(states.dtype)
    return (states * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


class DescriptorHead(nn.Module):
    """dense -> GELU -> dense: pooled encoder output to one value per descriptor."""

    def __init__(self, dim: int, n_out: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.dense(x)))


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over molecules of each molecule's MSE over its finite targets, molecules with any target)."""
    have = torch.isfinite(target)
    err = torch.where(have, (pred - torch.nan_to_num(target)) ** 2, torch.zeros_like(pred))
    per_molecule_n = have.sum(dim=1)
    counted = per_molecule_n > 0
    per_molecule = err.sum(dim=1) / per_molecule_n.clamp(min=1)
    return (per_molecule * counted).sum(), counted.sum()


@register_criterion("smiles_denoising", dataclass=FairseqDataclass)
class SmilesDenoisingCriterion(FairseqCriterion):
    def __init__(self, task):
        super().__init__(task)
        cfg = task.cfg
        self.weight = float(getattr(cfg, "descriptor_weight", 0.0)) if getattr(cfg, "descriptor_loss", False) else 0.0
        self.head = None
        if self.weight > 0:
            dim = int(task.descriptor_model_dim)
            self.head = DescriptorHead(dim, task.descriptor_dim)

    def load_state_dict(self, state_dict, strict=True):
        # a checkpoint written without the head (the shipped model, a plain denoising run) starts it fresh
        if state_dict is None:
            logger.info("the checkpoint has no descriptor head: it starts from random weights")
            return
        return super().load_state_dict(state_dict, strict=strict)

    def forward(self, model, sample, reduce=True):
        captured = {}
        hook = None
        if self.head is not None:
            hook = model.encoder.register_forward_hook(lambda _m, _i, out: captured.setdefault("out", out))
        try:
            net_output = model(**sample["net_input"])
        finally:
            if hook is not None:
                hook.remove()
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        target = model.get_targets(sample, net_output)
        nll = F.nll_loss(lprobs.view(-1, lprobs.size(-1)), target.view(-1),
                         ignore_index=self.padding_idx, reduction="sum" if reduce else "none")
        sample_size = sample["ntokens"]
        loss = nll
        logging_output = {"loss": nll.data, "nll_loss": nll.data, "ntokens": sample["ntokens"],
                          "nsentences": sample["target"].size(0), "sample_size": sample_size}
        if self.head is not None:
            if "descriptors" not in sample:
                raise KeyError("--descriptor-loss is on but the batch has no descriptor targets")
            enc = captured["out"]
            padding = enc["encoder_padding_mask"][0] if enc.get("encoder_padding_mask") else None
            pooled = mean_pool(enc["encoder_out"][0], padding)
            pred = self.head(pooled).float()
            sse, n = masked_mse(pred, sample["descriptors"].to(pred.device).float())
            mse = sse / n.clamp(min=1)
            loss = loss + self.weight * mse * sample_size
            logging_output.update(loss=loss.data, descriptor_sse=sse.data, descriptor_n=n.data)
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(utils.item(log.get(key, 0)) for log in logging_outputs)

        sample_size = total("sample_size")
        loss, nll = total("loss"), total("nll_loss")
        if sample_size:
            metrics.log_scalar("loss", loss / sample_size / math.log(2), sample_size, round=3)
            metrics.log_scalar("nll_loss", nll / sample_size / math.log(2), sample_size, round=3)
            metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))
        n = total("descriptor_n")
        if n:
            metrics.log_scalar("descriptor_mse", total("descriptor_sse") / n, n, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
