"""What every attribution method shares: the loaded model, checked molecules, padded token batches.

Index spaces (ARCHITECTURE.md):

* **token index** ``t`` -- the position in ``tokenizer.tokenize(smiles)``;
* **position** ``p`` -- a column of a batch and a row of the encoder output: position 0 is ``<s>``,
  position ``t + 1`` is token ``t``, position ``n_tokens + 1`` is ``</s>``, then padding;
* **atom index** -- RDKit's numbering of ``Chem.MolFromSmiles(smiles)``.

A method sees the model through a :class:`ScoreModel`: ``score(emb, src, lengths, prev)`` is the
attributed scalar per sequence, computed from the encoder's input token embeddings ``emb``
(``(B, L, d)``, position space) while positions, padding mask and the head's ``</s>`` read-out come
from the real ids ``src``; the decoder reads ``prev`` itself.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from bartsmiles.core.chem import model_spelling, parse_smiles
from bartsmiles.core.tokenizer import SmilesTokenizer, TokenAlignment
from bartsmiles.errors import AttributionError, CheckpointError, InvalidSmilesError, SmilesTooLongError
from bartsmiles.model.predictor import PropertyPredictor
from bartsmiles.model.pretrained import load_pretrained
from bartsmiles.model.resolve import resolve_checkpoint

__all__ = ["BASELINES", "LoadedModel", "Molecule", "ScoreModel", "TokenBatch", "load_model", "encode_smiles",
           "prepare_molecules", "baseline_token_id", "pad_sequences", "make_batch", "replaced_positions", "baseline_ids",
           "sort_by_length", "TOKEN_BUDGET", "length_batches", "native_bf16", "native_int8"]

#: the tokens a baseline (or an occlusion) may put in place of a molecule's tokens
BASELINES = ("pad", "mask", "eos")

#: the most padded token positions (rows x longest row) one forward pass of gradient x input, mask
#: occlusion or :meth:`~bartsmiles.attribution.attributor.Attributor.predict_outputs` handles,
#: whatever ``batch_size`` allows: memory stays bounded for long molecules and large batches
TOKEN_BUDGET = 8192

#: ``score(emb (B, L, d), src (B, L), lengths (B,), prev (B, L)) -> (B,)``
ScoreFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LoadedModel:
    """A model ready for attribution: the fairseq model (eval mode), its vocabulary and tokenizer.

    ``canonical``: the model reads RDKit's canonical SMILES (a property checkpoint recording
    ``smiles_form="canonical"``), so every input is rewritten to it before it is attributed.
    """

    model: Any
    vocab: Any
    tokenizer: Any
    meta: dict
    max_positions: int
    canonical: bool = False


@dataclass(frozen=True)
class Molecule:
    """One checked input: ``ids`` are in position space (``[<s>, token ids.., </s>]``)."""

    smiles: str
    alignment: TokenAlignment
    ids: tuple[int, ...]
    n_atoms: int

    @property
    def n_tokens(self) -> int:
        """Tokens without the specials (``len(ids) - 2``)."""
        return len(self.ids) - 2


@dataclass(frozen=True)
class ScoreModel:
    """The model as the methods see it: the attributed scalar and the token-embedding lookup."""

    score: ScoreFunction
    embed: Callable[[torch.Tensor], torch.Tensor]
    pad: int
    device: torch.device


@dataclass(frozen=True)
class TokenBatch:
    """Padded ids of ``B`` sequences (position space) and what the model needs besides them.

    ``src``: ``(B, L)`` encoder ids; ``lengths``: ``(B,)`` real lengths, specials included;
    ``prev``: ``(B, L)`` decoder input (each sequence rolled right by one, as the task collates it).
    """

    src: torch.Tensor
    lengths: torch.Tensor
    prev: torch.Tensor


def load_model(model_or_checkpoint, *, need_head: bool) -> LoadedModel:
    """Model, vocabulary, tokenizer and metadata from a checkpoint path or a loaded object.

    Accepts a checkpoint path or folder, a :class:`PropertyPredictor`, a fitted
    ``BartSmilesClassifier``/``BartSmilesRegressor`` and (``need_head=False``) a pretrained model.
    """
    obj = model_or_checkpoint
    if hasattr(obj, "_get_predictor"):  # a fitted BartSmilesClassifier / BartSmilesRegressor
        obj = obj._get_predictor()
    if isinstance(obj, (str, os.PathLike)):
        path = resolve_checkpoint(obj)
        try:
            obj = PropertyPredictor(path)
        except CheckpointError:
            if need_head:
                raise AttributionError(f"{path} is not a fine-tuned property checkpoint (no prediction head): "
                                       f"use NeuronAttributor for a pretrained model") from None
            obj = load_pretrained(path)
    if hasattr(obj, "task") and hasattr(obj, "meta") and hasattr(obj, "model"):  # PropertyPredictor
        meta = dict(obj.meta)
        if meta.get("tokenizer", "regex") != "regex":
            raise AttributionError(f"tokenizer {meta.get('tokenizer')!r} is not supported for property checkpoints")
        model, vocab, tokenizer = obj.model, obj.task.vocab, SmilesTokenizer()
        limit = int(meta.get("max_positions") or model.encoder.max_positions())
    elif hasattr(obj, "encode_ids") and hasattr(obj, "vocab"):  # bartsmiles.model.pretrained.PretrainedModel
        if need_head:
            raise AttributionError("a pretrained model has no prediction head: use NeuronAttributor, or fine-tune it")
        model, vocab, tokenizer, meta = obj.model, obj.vocab, obj.tokenizer, dict(obj.metadata or {})
        limit = int(model.encoder.max_positions())
    else:
        raise TypeError(f"cannot attribute a {type(obj).__name__}: give a checkpoint path, a PropertyPredictor, "
                        f"a fitted BartSmilesClassifier/Regressor or (NeuronAttributor) a PretrainedModel")
    limit = min(limit, int(model.encoder.max_positions()))
    model.eval()
    return LoadedModel(model=model, vocab=vocab, tokenizer=tokenizer, meta=meta, max_positions=limit,
                       canonical=meta.get("smiles_form") == "canonical")


def _check_one(index: int, smiles: Any, tokenizer, vocab, max_positions: int, canonical: bool = False) -> Molecule:
    """One SMILES checked and encoded (rewritten to canonical form first when ``canonical``); errors
    name ``index`` (input index)."""
    if not isinstance(smiles, str) or not smiles.strip():
        raise InvalidSmilesError(smiles, index=index, reason="empty or not a string",
                                 message=f"SMILES at index {index} is empty or not a string: {smiles!r}")
    s = smiles.strip()
    if ">" in s:
        raise InvalidSmilesError(s, index=index, reason="a reaction, not a molecule",
                                 message=f"SMILES at index {index} is a reaction ({s!r}): attribute one molecule")
    try:
        mol = parse_smiles(s)
        if canonical:
            s = model_spelling(s, mol)
            mol = parse_smiles(s)
        alignment = tokenizer.align(s)
    except ValueError as exc:  # InvalidSmilesError and TokenizationError are ValueErrors
        raise InvalidSmilesError(s, index=index, reason=str(exc),
                                 message=f"invalid SMILES at index {index}: {s!r} ({exc})") from None
    length = len(alignment.tokens) + 2
    if length > max_positions:
        raise SmilesTooLongError(s, index=index, length=length, limit=max_positions,
                                 hint="attribution does not truncate")
    ids = tuple(int(i) for i in vocab.encode(alignment.tokens))
    return Molecule(smiles=s, alignment=alignment, ids=ids, n_atoms=mol.GetNumAtoms())


def encode_smiles(smiles: str, tokenizer, vocab, max_positions: int, canonical: bool = False) -> tuple[int, ...]:
    """The ids of one SMILES as :func:`prepare_molecules` encodes it (canonical form first when
    ``canonical``), without the atom alignment it builds: for molecules a method only runs and never
    maps onto atoms (edit occlusion's edited copies), where the alignment would be most of the cost.

    Raises :class:`InvalidSmilesError` or :class:`SmilesTooLongError` (index ``None``).
    """
    try:
        s = model_spelling(smiles) if canonical else smiles.strip()
        tokens = tokenizer.tokenize(s)
    except ValueError as exc:  # InvalidSmilesError and TokenizationError are ValueErrors
        raise InvalidSmilesError(smiles, index=None, reason=str(exc),
                                 message=f"invalid SMILES {smiles!r} ({exc})") from None
    if len(tokens) + 2 > max_positions:
        raise SmilesTooLongError(s, index=None, length=len(tokens) + 2, limit=max_positions,
                                 hint="attribution does not truncate")
    return tuple(int(i) for i in vocab.encode(tokens))


def prepare_molecules(smiles, tokenizer, vocab, max_positions: int, canonical: bool = False) -> list[Molecule]:
    """Check and encode ``smiles`` (a string is one SMILES), in input order.

    ``canonical``: rewrite each to RDKit's canonical SMILES first, the form a checkpoint trained with
    ``smiles_form="canonical"`` reads (:class:`Molecule`'s ``smiles`` is then the canonical one, and
    atom indices are RDKit's numbering of it).

    Raises :class:`InvalidSmilesError` / :class:`SmilesTooLongError` naming the input index, or
    :class:`AttributionError` for an empty list.
    """
    if isinstance(smiles, str):
        smiles = [smiles]
    out = [_check_one(i, s, tokenizer, vocab, max_positions, canonical) for i, s in enumerate(smiles)]
    if not out:
        raise AttributionError("no SMILES given")
    return out


def baseline_token_id(vocab, baselines: str) -> int:
    """The vocabulary id of baseline ``baselines`` (``"pad"``, ``"mask"`` or ``"eos"``).

    ``<mask>`` is the symbol appended after ``dict.txt`` for the denoising objective.
    """
    if baselines not in BASELINES:
        raise AttributionError(f"baselines must be one of {BASELINES}, got {baselines!r}")
    if baselines == "pad":
        return int(vocab.pad)
    if baselines == "eos":
        return int(vocab.eos)
    if "<mask>" not in vocab:
        raise AttributionError("this model's vocabulary has no <mask>: use baselines='pad' or 'eos'")
    return int(vocab.index("<mask>"))


def pad_sequences(sequences: Sequence[Sequence[int]], pad: int, *, roll: bool = False) -> torch.Tensor:
    """``(B, L)`` ids, padded with ``pad``; ``roll``: each sequence rolled right by one (decoder input)."""
    src = torch.full((len(sequences), max(len(s) for s in sequences)), pad, dtype=torch.long)
    for r, seq in enumerate(sequences):
        row = torch.tensor(seq, dtype=torch.long)
        src[r, : len(seq)] = torch.roll(row, 1) if roll else row
    return src


def make_batch(sequences: Sequence[Sequence[int]], pad: int, device: torch.device,
               decoder_sequences: Optional[Sequence[Sequence[int]]] = None) -> TokenBatch:
    """Pad ``sequences`` (position space) into a :class:`TokenBatch` on ``device``.

    ``decoder_sequences`` (default: ``sequences``; same lengths) are rolled right by one into ``prev``.
    """
    decoder_sequences = sequences if decoder_sequences is None else decoder_sequences
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    src = pad_sequences(sequences, pad)
    prev = pad_sequences(decoder_sequences, pad, roll=True)
    return TokenBatch(src=src.to(device), lengths=lengths.to(device), prev=prev.to(device))


def replaced_positions(batch: TokenBatch, replace_specials: bool) -> torch.Tensor:
    """``(B, L)`` bool: the positions a baseline replaces -- the molecule's tokens, and with
    ``replace_specials`` also ``<s>`` (position 0) and ``</s>`` (position ``length - 1``); never padding."""
    positions = torch.arange(batch.src.shape[1], device=batch.src.device).unsqueeze(0)
    last = batch.lengths.unsqueeze(1) - 1
    if replace_specials:
        return positions <= last
    return (positions > 0) & (positions < last)


def baseline_ids(batch: TokenBatch, baseline_id: int, replace_specials: bool) -> torch.Tensor:
    """``(B, L)`` ids of the baseline: every molecule token replaced by ``baseline_id``.

    ``<s>`` and ``</s>`` keep their ids unless ``replace_specials``; padding stays padding.
    """
    replaced = replaced_positions(batch, replace_specials)
    return torch.where(replaced, torch.full_like(batch.src, baseline_id), batch.src)


def sort_by_length(molecules: Sequence[Molecule]) -> list[int]:
    """Input indices of ``molecules``, shortest first (less padding when batched)."""
    return sorted(range(len(molecules)), key=lambda i: len(molecules[i].ids))


def length_batches(lengths: Sequence[int], max_rows: int, token_budget: int = TOKEN_BUDGET) -> list[list[int]]:
    """Indices of ``lengths`` sorted shortest first, cut into consecutive batches of at most
    ``max_rows`` rows whose ``rows x longest length`` stays within ``token_budget`` (a row longer
    than the budget gets a batch of its own).  Similar lengths batch together: little padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    rows = max(1, int(max_rows))
    for i in order:  # ascending, so lengths[i] is the longest of current + [i]
        if current and (len(current) + 1 > rows or (len(current) + 1) * lengths[i] > token_budget):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags to read
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) is not None


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 in hardware, so that ``precision="auto"`` picks bf16:
    a CUDA GPU that supports it, or a CPU whose flags (Linux ``/proc/cpuinfo``) include
    ``avx512_bf16`` or ``amx_bf16``.  ``False`` elsewhere, where bf16 would be emulated and slower."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and _cpu_has_bf16()


def native_int8(device: torch.device) -> bool:
    """Whether ``device`` runs dynamically quantized int8 layers, so that ``precision="auto"`` runs
    the passes without gradients in int8 (:func:`bartsmiles.model.precision.int8_copy`): a CPU for
    which torch has a quantized engine (fbgemm/x86 on x86 CPUs, qnnpack on ARM).  ``False`` on a GPU."""
    return device.type == "cpu" and torch.backends.quantized.engine != "none"
