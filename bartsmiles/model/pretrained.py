"""Load a pretrained BARTSmiles model and turn SMILES into feature vectors.

>>> model = load_pretrained()                      # the shipped model (bartsmiles/pretrained/)
>>> X = model.encode(["CCO", "c1ccccc1"])           # (2, d) float32, mean-pooled encoder states

Index spaces
------------
* **input index** -- position of a SMILES in the sequence given to :meth:`PretrainedModel.encode`;
  every output is in input order and every error names it.
* **token index** -- position in ``model.tokenizer.tokenize(smiles)``.
* **position** -- row of the encoder output: position 0 is ``<s>``, position ``t + 1`` is token
  index ``t``, the last position is ``</s>``. Per-token outputs are indexed by position.

Two model folders load (see :func:`load_pretrained`): ours, written by
:func:`bartsmiles.model.checkpoint.export_model` (``model.pt`` + ``dict.txt``, regex tokenizer), and the
published BARTSmiles release (a fairseq ``bart_large`` checkpoint of task ``denoising`` +
``dict.txt`` + the SentencePiece ``chem.model``).
"""
from __future__ import annotations

import csv
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from fairseq import checkpoint_utils
from omegaconf import open_dict
from tqdm.auto import tqdm

import bartsmiles.tasks  # noqa: F401  (registers our archs/tasks, allowlists Namespace)
from bartsmiles.core.chem import parse_smiles
from bartsmiles.core.encoding import iter_smiles_file
from bartsmiles.core.files import check_writable
from bartsmiles.core.sp_tokenizer import SentencePieceTokenizer
from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import InvalidSmilesError, SequenceTooLongError, SmilesTooLongError, TokenizationError
from bartsmiles.model.checkpoint import METADATA_KEY, prepare_fairseq_state, safe_load
from bartsmiles.model.device import resolve_device
from bartsmiles.model.resolve import resolve_checkpoint

__all__ = ["load_pretrained", "encode_file", "PretrainedModel", "TokenFeatures", "EncodeReport", "POOLINGS",
           "ENCODE_ERRORS"]

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "bos", "eos")
#: what :meth:`PretrainedModel.encode` does with a bad SMILES: a NaN row, or raise
ENCODE_ERRORS = ("nan", "raise")
#: Config entries that hold paths or tokenizer settings of the machine that trained a model;
#: they are neutralized on loading (the data folder becomes the model's own folder).
_NEUTRAL = {"user_dir": None, "bpe": None, "sentencepiece_model": None, "tokenizer": None,
            "save_dir": ".", "log_file": None, "tensorboard_logdir": None}


@dataclass
class EncodeReport:
    """What one :meth:`PretrainedModel.encode` call did with its input (input indices)."""

    n: int
    #: SMILES cut to the model's positions
    truncated: list[int] = field(default_factory=list)
    #: ``(input index, reason)`` of SMILES that gave a NaN row
    invalid: list[tuple[int, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "n_truncated": len(self.truncated), "truncated": self.truncated,
                "n_invalid": len(self.invalid),
                "invalid": [{"index": i, "reason": reason} for i, reason in self.invalid]}


def _first(indices: Sequence[int], k: int = 10) -> str:
    shown = ", ".join(str(i) for i in indices[:k])
    return shown + (f", ... ({len(indices) - k} more)" if len(indices) > k else "")


class TokenFeatures(NamedTuple):
    """``encode(..., per_token=True)``: pooled ``(n, d)``; per input, a ``(positions, d)`` array and
    the tokens of those positions (``'<s>'``, the tokenizer's tokens, ``'</s>'``)."""

    pooled: np.ndarray
    per_token: list[np.ndarray]
    tokens: list[list[str]]


@dataclass
class PretrainedModel:
    """A loaded BART model with its tokenizer and vocabulary; :meth:`encode` runs the encoder only.

    ``model`` is the fairseq ``BARTModel`` (eval mode), ``vocab`` the dictionary without the
    ``<mask>`` the task appends (same token ids), ``metadata`` the checkpoint's "bartsmiles" entry
    (``{}`` for checkpoints without one, e.g. the published release).
    """

    model: Any
    task: Any
    tokenizer: SmilesTokenizer | SentencePieceTokenizer
    vocab: Vocabulary
    metadata: dict[str, Any]
    path: Path
    device: torch.device
    _tmp: Any = field(default=None, repr=False)
    #: what the last :meth:`encode` / :meth:`encode_ids` call truncated or could not encode
    last_report: "EncodeReport | None" = field(default=None, repr=False)

    @property
    def max_positions(self) -> int:
        """Encoder positions, ``<s>`` and ``</s>`` included (read from the checkpoint's model)."""
        return int(self.model.encoder.max_positions())

    @property
    def embedding_dim(self) -> int:
        return int(self.model.encoder.embed_tokens.embedding_dim)

    # ---------------------------------------------------------------------------- encoding
    def encode_ids(self, smiles: Sequence[str], *, on_overflow: str = "truncate",
                   errors: str = "raise") -> list[list[int] | None]:
        """Token ids (bos/eos added) per SMILES, in input order.

        ``on_overflow``: ``"truncate"`` (default) keeps the first ``max_positions - 1`` ids and ends
        with ``</s>``; ``"error"`` makes an over-long SMILES an error. ``errors``: ``"raise"``
        raises for the first bad SMILES (naming its input index); ``"nan"`` gives ``None`` for it
        and goes on. A SMILES is bad when it is empty or not a string, RDKit cannot parse it (where
        RDKit is installed), or the tokenizer cannot split it. What was cut or refused is in
        :attr:`last_report`.
        """
        if on_overflow not in ("error", "truncate"):
            raise ValueError(f"on_overflow must be 'error' or 'truncate', got {on_overflow!r}")
        if errors not in ENCODE_ERRORS:
            raise ValueError(f"errors must be one of {ENCODE_ERRORS}, got {errors!r}")
        if isinstance(smiles, str):
            raise TypeError("encode takes a sequence of SMILES, not one string: wrap it in a list")
        out: list[list[int] | None] = []
        report = EncodeReport(n=0)
        limit, n_unk = self.max_positions, 0
        for index, s in enumerate(smiles):
            report.n += 1
            try:
                ids = self._ids(s, index, on_overflow)
            except (InvalidSmilesError, SmilesTooLongError) as error:
                if errors == "raise":
                    raise
                report.invalid.append((index, error.reason if isinstance(error, InvalidSmilesError)
                                       else f"too long: {error.length} tokens > {limit} positions"))
                out.append(None)
                continue
            if len(ids) == limit and ids[-1] == self.vocab.eos and self._was_cut(s, limit):
                report.truncated.append(index)
            n_unk += ids.count(self.vocab.unk)
            out.append(ids)
        self.last_report = report
        if n_unk:
            logger.warning("%d tokens are not in the model's vocabulary and were encoded as <unk>", n_unk)
        if report.truncated:
            logger.warning("%d SMILES longer than %d positions were truncated (input indices %s)",
                           len(report.truncated), limit, _first(report.truncated))
        if report.invalid:
            logger.warning("%d SMILES could not be encoded and give NaN rows (input indices %s)",
                           len(report.invalid), _first([i for i, _ in report.invalid]))
        return out

    def _ids(self, s: Any, index: int, on_overflow: str) -> list[int]:
        if not isinstance(s, str) or not s.strip():
            raise InvalidSmilesError(s, index=index, reason="empty or not a string",
                                     message=f"SMILES at index {index} is empty or not a string: {s!r}")
        try:
            parse_smiles(s)
        except InvalidSmilesError as error:
            raise InvalidSmilesError(s, index=index, reason=error.reason,
                                     message=f"SMILES at index {index} is not a valid molecule: "
                                             f"{error.reason}") from None
        except ModuleNotFoundError:  # no RDKit (GPU images): the tokenizer is the only check
            pass
        try:
            tokens = self.tokenizer.tokenize(s)
        except TokenizationError as error:
            raise InvalidSmilesError(s, index=index, reason=f"cannot tokenize: {error}",
                                     message=f"SMILES at index {index} cannot be tokenized: {error}") from None
        try:
            return self.vocab.encode(tokens, max_positions=self.max_positions, on_overflow=on_overflow)
        except SequenceTooLongError as error:
            raise SmilesTooLongError(s, index=index, length=error.length, limit=self.max_positions,
                                     hint="pass on_overflow='truncate' to cut it") from None

    def _was_cut(self, s: str, limit: int) -> bool:
        return len(self.tokenizer.tokenize(s)) + 2 > limit

    @torch.inference_mode()
    def encode(self, smiles: Sequence[str], *, batch_size: int = 64, pooling: str = "mean",
               per_token: bool = False, progress: bool = True, on_overflow: str = "truncate",
               errors: str = "nan") -> np.ndarray | TokenFeatures:
        """Encoder features of ``smiles``: a float32 ``(n, embedding_dim)`` array in input order.

        ``pooling``: ``"mean"`` over all non-pad positions (``<s>`` and ``</s>`` included),
        ``"bos"`` the ``<s>`` position, ``"eos"`` the ``</s>`` position. Batches are sorted by
        length internally. With ``per_token`` a :class:`TokenFeatures` is returned instead.

        Real data has SMILES longer than the model and SMILES that are not molecules, so by default
        an over-long SMILES is truncated (``on_overflow="truncate"``; ``"error"`` refuses it) and a
        bad one gives a row of NaN (``errors="nan"``; ``"raise"`` raises
        :class:`InvalidSmilesError` / :class:`SmilesTooLongError` naming its input index). Both are
        counted in :attr:`last_report` and logged as warnings; nothing is dropped.
        """

        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        encoded = self.encode_ids(smiles, on_overflow=on_overflow, errors=errors)
        n, dim, pad = len(encoded), self.embedding_dim, self.vocab.pad
        pooled = np.full((n, dim), np.nan, dtype=np.float32)
        rows: list[np.ndarray | None] = [None] * n
        good = [i for i in range(n) if encoded[i] is not None]
        order = sorted(good, key=lambda i: -len(encoded[i]))
        with tqdm(total=n, disable=not progress, desc="encoding", unit="mol") as bar:
            bar.update(n - len(good))
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                lengths = torch.tensor([len(encoded[i]) for i in chunk])
                tokens = torch.full((len(chunk), int(lengths.max())), pad, dtype=torch.long)
                for row, i in enumerate(chunk):
                    tokens[row, : len(encoded[i])] = torch.tensor(encoded[i])
                states = self._encoder_states(tokens.to(self.device), lengths.to(self.device))
                mask = (tokens != pad).to(self.device).unsqueeze(-1).to(states.dtype)
                if pooling == "mean":
                    result = (states * mask).sum(1) / mask.sum(1)
                elif pooling == "bos":
                    result = states[:, 0]
                else:
                    result = states[torch.arange(len(chunk)), (lengths - 1).to(self.device)]
                pooled[chunk] = result.float().cpu().numpy()
                if per_token:
                    host = states.float().cpu().numpy()
                    for row, i in enumerate(chunk):
                        rows[i] = host[row, : len(encoded[i])].copy()
                bar.update(len(chunk))
        if not per_token:
            return pooled
        names = [self.vocab.decode(ids, strip_special=False) if ids is not None else [] for ids in encoded]
        rows = [r if r is not None else np.empty((0, dim), dtype=np.float32) for r in rows]
        return TokenFeatures(pooled, rows, names)  # type: ignore[arg-type]

    def _encoder_states(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(batch, positions, d)`` encoder output for right-padded ``tokens``."""
        out = self.model.encoder(tokens, src_lengths=lengths)
        return out["encoder_out"][0].transpose(0, 1)


# ------------------------------------------------------------------------------------ loading
def _dictionary_folder(model_file: Path, folder: Path, metadata: dict) -> tuple[Path, Any]:
    """The folder holding dict.txt; written from the metadata into a temp folder if missing."""
    if (folder / "dict.txt").is_file():
        return folder, None
    if metadata.get("vocabulary"):
        tmp = tempfile.TemporaryDirectory(prefix="bartsmiles-dict-")
        Vocabulary(symbols=list(metadata["vocabulary"]),
                   counts=[0] * len(metadata["vocabulary"])).save(Path(tmp.name) / "dict.txt")
        return Path(tmp.name), tmp
    raise FileNotFoundError(f"no dict.txt beside {model_file} (looked in {folder}) and the checkpoint "
                            f"carries no vocabulary metadata")


def load_pretrained(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu") -> PretrainedModel:
    """Load a model for feature extraction.

    ``path``: ``None`` for the shipped model; a folder with ``model.pt`` (or ``checkpoint_last.pt``)
    and ``dict.txt``, plus ``chem.model`` for a SentencePiece model such as the published
    BARTSmiles; or a ``.pt`` file with ``dict.txt`` beside it. The checkpoint is read weights-only
    (:func:`bartsmiles.model.checkpoint.safe_load`), the stored data folder, user dir, bpe and
    tokenizer settings are replaced by this folder / ``None``, and the number of positions comes
    from the checkpoint. On CPU the weights are cast to float32. The model is in eval mode.
    """
    device = resolve_device(device)  # before the load: a missing GPU is one line, not a CUDA traceback
    model_file = resolve_checkpoint(path)
    folder = model_file.parent
    raw = safe_load(model_file)
    metadata = dict(raw.get(METADATA_KEY) or {})
    dict_folder, tmp = _dictionary_folder(model_file, folder, metadata)
    overrides = {"data": str(dict_folder), **_NEUTRAL}
    state = prepare_fairseq_state(raw, overrides)
    with open_dict(state["cfg"]):
        for key in ("bpe", "tokenizer"):  # top-level sections: the hub's bpe would download gpt2 files
            state["cfg"][key] = None

    vocab = Vocabulary.load(dict_folder / "dict.txt")
    if metadata.get("vocabulary") and list(metadata["vocabulary"]) != vocab.symbols:
        raise ValueError(f"{dict_folder / 'dict.txt'} does not match the vocabulary stored in "
                         f"{model_file} ({len(vocab)} vs {len(metadata['vocabulary'])} symbols)")
    rows = int(state["model"]["encoder.embed_tokens.weight"].shape[0])
    if rows not in (len(vocab), len(vocab) + 1):  # +1: the <mask> denoising tasks append
        raise ValueError(f"{dict_folder / 'dict.txt'} has {len(vocab)} symbols but the model in "
                         f"{model_file} embeds {rows}: wrong dict.txt for this model")
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(model_file)], arg_overrides=overrides, state=state)
    model = models[0]
    model = model.float() if device.type == "cpu" else model
    model.to(device).eval()

    sp_model = folder / "chem.model"
    if sp_model.is_file():
        tokenizer: SmilesTokenizer | SentencePieceTokenizer = SentencePieceTokenizer(sp_model)
    elif metadata.get("tokenizer") == "sentencepiece":
        raise FileNotFoundError(f"{model_file} uses a SentencePiece tokenizer but {sp_model} is missing")
    else:
        tokenizer = SmilesTokenizer()
    return PretrainedModel(model=model, task=task, tokenizer=tokenizer, vocab=vocab,
                           metadata=metadata, path=model_file, device=device, _tmp=tmp)


def encode_file(input: str | os.PathLike, output: str | os.PathLike, *, model: str | os.PathLike | None = None,
                smiles_column: str = "SMILES", batch_size: int = 64, pooling: str = "mean",
                on_overflow: str = "truncate", errors: str = "nan", device: str = "cpu",
                progress: bool = True) -> dict[str, Any]:
    """Encoder features of every SMILES in ``input`` written to ``output`` (``.npy``, or ``.csv`` with a
    ``smiles`` column and ``f0 .. f{d-1}``), one row per input row, in input order.

    Returns ``{"output", "n", "dim", "n_truncated", "n_invalid", "invalid"}`` (invalid: input row
    index and reason; those rows are NaN, see :meth:`PretrainedModel.encode`). With
    ``errors="raise"`` a bad SMILES is an error naming its row and nothing is written. The output
    location is checked before the model is loaded.
    """
    output = check_writable(output)
    smiles = list(iter_smiles_file(input, column=smiles_column))
    loaded = load_pretrained(model, device=device)
    features = loaded.encode(smiles, batch_size=batch_size, pooling=pooling, progress=progress,
                             on_overflow=on_overflow, errors=errors)
    if output.suffix.lower() == ".npy":
        np.save(output, features)
    else:
        with open(output, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["smiles", *(f"f{j}" for j in range(features.shape[1]))])
            for s, row in zip(smiles, features):
                writer.writerow([s, *(f"{v:.7g}" for v in row)])
    report = loaded.last_report.to_json() if loaded.last_report else {}
    return {"output": str(output), "n": len(smiles), "dim": int(features.shape[1]),
            "n_truncated": report.get("n_truncated", 0), "n_invalid": report.get("n_invalid", 0),
            "invalid": report.get("invalid", [])}
