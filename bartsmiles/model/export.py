"""Models people can take elsewhere: a Hugging Face ``transformers`` folder or an ONNX graph.

>>> export(None, "bartsmiles-hf", format="hf")           # the shipped model as a transformers BartModel
>>> export("runs/bbbp_scaffold", "bbbp-onnx", format="onnx")  # a fine-tuned model as one ONNX graph

Both formats come from the fairseq model that :func:`bartsmiles.model.pretrained.load_pretrained`
(a pretrained model) or :class:`bartsmiles.model.predictor.PropertyPredictor` (a fine-tuned
``smiles_property`` checkpoint) loads, and both end with a self-check: the written folder is loaded
back the way a user would (``AutoModel.from_pretrained``, or onnxruntime with ``tokenizer.json``),
run on :data:`PROBE_SMILES` and compared with the fairseq model; a difference over ``tolerance``
is an :class:`~bartsmiles.errors.ExportError` and nothing is claimed.

What is written
---------------
``format="hf"`` (needs ``transformers`` and ``tokenizers``; ``pip install "bartsmiles[export]"``)::

    config.json, model.safetensors   BartModel (pretrained), or BartForSequenceClassification
                                     (fine-tuned: one output per task, config.bartsmiles says how
                                     to read them)
    tokenizer.json                   our regex tokenizer as a tokenizers WordLevel model
    tokenizer_config.json            special tokens, model_max_length = the model's positions
    bartsmiles_export.json           what was exported, from what, and the self-check

so that ``AutoTokenizer.from_pretrained(folder)`` and ``AutoModel.from_pretrained(folder)``
(``AutoModelForSequenceClassification`` for a fine-tuned model) work from the folder alone.

``format="onnx"`` (needs ``onnx``, ``onnxruntime`` and ``tokenizers``)::

    model.onnx              inputs  input_ids, attention_mask   int64 (batch, sequence)
                            outputs features                    float32 (batch, d): mean-pooled encoder states
                                    logits, predictions         float32 (batch, tasks): fine-tuned models only
    tokenizer.json          as above, plus right padding with <pad> and truncation to the model's positions
    bartsmiles_export.json  as above (also stored in model.onnx's metadata_props["bartsmiles"])

:class:`OnnxModel` runs such a folder (tokenizer.json, then onnxruntime) without torch.

Index spaces
------------
* **token id** -- the row of the embedding matrix: ``<s>=0, <pad>=1, </s>=2, <unk>=3``, then
  ``dict.txt`` order, then ``<mask>`` where the model embeds one (the tokenizer's vocabulary is
  exactly this list, so its ids are ours).
* **position** -- a column of ``input_ids`` / ``attention_mask``: position 0 is ``<s>``, position
  ``t + 1`` is token index ``t`` (``SmilesTokenizer.tokenize``), the last real position is ``</s>``;
  ``attention_mask`` is 1 on real positions and 0 on padding, which must be on the right.
* **output index** -- column ``j`` of ``logits`` / ``predictions`` is task ``task_names[j]``
  (``config.id2label[j]``).
* **input index** -- the position of a SMILES in the list given to a call; outputs are in input
  order.

``features`` is the mean of the encoder states over the positions whose ``attention_mask`` is 1
(``<s>`` and ``</s>`` included), as :meth:`PretrainedModel.encode` computes it. ``logits`` are the
classification head's outputs; ``predictions`` are ``sigmoid(logits)`` (classification) or
``logits * target_std + target_mean`` (regression, in the training data's units), as
:meth:`PropertyPredictor.predict` returns them.

How fairseq's BART maps onto transformers'
------------------------------------------
* Parameter names are the same (``encoder.layers.{i}.self_attn.q_proj.weight`` ...), under
  ``model.`` in the sequence-classification model; the token embedding is ``shared.weight``
  (tied to both embed_tokens and, in fairseq, to the output projection, which is not exported).
  fairseq's ``*.version`` buffers are dropped.
* Learned positions: fairseq numbers the non-pad tokens from ``padding_idx + 1 = 2``
  (``make_positions``); transformers' ``BartLearnedPositionalEmbedding`` adds an offset of 2 to
  ``0, 1, ...``. With right padding the real positions get the same rows, and both tables have
  ``max_positions + 2`` rows, so the table is copied as is.
* ``no_scale_embedding=True`` is ``scale_embedding=False``; ``layernorm_embedding`` exists in both;
  post-norm layers (``normalize_before=False``) are the only BART layout transformers has; fairseq's
  ``gelu`` is the exact (erf) GELU, transformers' ``"gelu"``.
* The head: fairseq's ``BARTClassificationHead`` (dropout, dense, tanh, dropout, out_proj) reads the
  decoder state at the last ``</s>`` of the input, with the decoder fed the input rolled right by
  one (``[</s>, <s>, ids...]``, :class:`bartsmiles.tasks.property_data.PropertyDataset`).
  ``BartForSequenceClassification`` has the same head, reads the last ``eos_token_id`` (2) and feeds
  ``shift_tokens_right(input_ids, pad, decoder_start_token_id=2)``: the same tokens up to that
  ``</s>`` (it differs only after it, which the causal decoder cannot see from there). So the
  stock class is exact and no custom head is needed; regression scaling and task names travel in
  ``config.bartsmiles`` (and ``id2label``, ``problem_type``).

Anything else (pre-norm layers, no embedding layer norm, unshared embeddings, a non-tanh pooler, a
spectral-norm head, an activation transformers lacks, a SentencePiece tokenizer) is refused with an
:class:`~bartsmiles.errors.ExportError` rather than exported approximately.
"""
from __future__ import annotations

import importlib
import contextlib
import datetime as _dt
import json
import os
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from bartsmiles._version import __version__
from bartsmiles.core.files import check_writable
from bartsmiles.core.tokenizer import SMILES_REGEX, SmilesTokenizer
from bartsmiles.core.vocab import SPECIAL_SYMBOLS, Vocabulary
from bartsmiles.errors import ExportError, InvalidSmilesError, MissingExtraError, SmilesTooLongError, TokenizationError
from bartsmiles.model.checkpoint import METADATA_KEY, safe_load
from bartsmiles.model.predictor import PropertyPredictor
from bartsmiles.model.pretrained import load_pretrained
from bartsmiles.model.resolve import resolve_checkpoint
from bartsmiles.tasks.property import STATE_KEY

__all__ = [
    "FORMATS", "EXTRA", "EXTRA_PACKAGES", "PROBE_SMILES", "TOLERANCE", "ONNX_OPSET", "EXPORT_JSON",
    "ExportSource", "load_source", "export", "export_hf", "export_onnx",
    "build_tokenizer", "hf_config", "hf_state_dict", "fairseq_outputs", "hf_outputs", "FeaturesGraph", "OnnxModel",
]

#: The formats :func:`export` writes.
FORMATS = ("hf", "onnx")
#: The setup.cfg extra that brings the packages export needs, and those packages (pip names).
EXTRA = "export"
EXTRA_PACKAGES = ("transformers", "tokenizers", "onnx", "onnxruntime")
#: Molecules of the self-check: brackets, charges, isotopes, stereo, ring closures %10, Cl/Br,
#: salts, aromatic heteroatoms; lengths from 3 to ~90 positions (so padding is exercised).
PROBE_SMILES = (
    "CCO",
    "C[C@@H](N)C(=O)O",
    "c1ccc2c(c1)C%10CC%10CC2",
    "[NH4+].[Cl-]",
    "BrC/C=C\\CCl",
    "[2H]C([2H])([2H])c1ccc(Br)cc1",
    "CC(C)(C)OC(=O)N[C@H]1CC[C@@H](C(=O)O)CC1",
    "O=C([O-])c1cc[n+](C)cc1",
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",
    "CC(=O)Oc1ccccc1C(=O)O.CC(=O)Oc1ccccc1C(=O)O.CC(=O)Oc1ccccc1C(=O)O.CCCCCCCCCCCCCCCC",
)
#: Largest absolute difference the self-check accepts (features, logits).
TOLERANCE = 1e-4
#: ONNX opset of the exported graph.
ONNX_OPSET = 17
#: Name of the description file written into every export folder.
EXPORT_JSON = "bartsmiles_export.json"
_FORMAT_VERSION = 1
#: fairseq activation name -> transformers' ACT2FN name (same function).
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "tanh": "tanh", "gelu_accurate": "gelu_new", "gelu_fast": "gelu_new"}


# ---------------------------------------------------------------------------- optional packages
def _missing(name: str, purpose: str, error: ImportError) -> MissingExtraError:
    return MissingExtraError(name, EXTRA, EXTRA_PACKAGES, purpose, reason=str(error))


def _optional(module: str, purpose: str):
    """Import one package of the optional extra "export", or say in one line how to install it."""
    try:
        return importlib.import_module(module)  # optional extra "export": imported only when exporting
    except ImportError as error:
        raise _missing(module, purpose, error) from None


def _transformers(purpose: str = "export to transformers (--format hf)"):
    return _optional("transformers", purpose)


def _tokenizers(purpose: str = "writing tokenizer.json"):
    return _optional("tokenizers", purpose)


def _onnx(purpose: str = "export to ONNX (--format onnx)"):
    return _optional("onnx", purpose)


def _onnxruntime(purpose: str = "running an ONNX export"):
    return _optional("onnxruntime", purpose)


# ------------------------------------------------------------------------------------ the source
@dataclass
class ExportSource:
    """A loaded model to export: the fairseq model and what is needed to describe it.

    ``kind`` is ``"pretrained"`` or ``"property"`` (a fine-tuned ``smiles_property`` model);
    ``symbols`` lists the vocabulary by **token id**, one per embedding row (``<mask>`` included
    where the model embeds it); ``task`` (property models only) holds ``task_names``,
    ``task_type``, ``target_mean``, ``target_std`` (``None`` without scaling) and
    ``classification_head_name``, ``metric`` and ``smiles_form`` (``canonical``: the model reads RDKit's
    canonical isomeric SMILES, which a caller of the exported model must write itself); ``metadata`` is the checkpoint's "bartsmiles" entry (``{}`` if none).
    """

    path: Path
    kind: str
    model: Any
    symbols: list[str]
    tokenizer: str
    max_positions: int
    task: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def args(self) -> Any:
        return self.model.args

    @property
    def embedding_dim(self) -> int:
        return int(self.model.encoder.embed_tokens.embedding_dim)

    @property
    def head(self) -> nn.Module | None:
        if self.task is None:
            return None
        return self.model.classification_heads[self.task["classification_head_name"]]

    def vocabulary(self) -> Vocabulary:
        """The symbols as a :class:`Vocabulary` (token ids unchanged)."""
        return Vocabulary(symbols=list(self.symbols), counts=[0] * len(self.symbols))

    def encode_ids(self, smiles: Sequence[str], *, on_overflow: str = "error") -> list[list[int]]:
        """``[<s>, ids, </s>]`` per SMILES with our tokenizer; errors name the input index."""
        if isinstance(smiles, str):
            raise TypeError("pass a sequence of SMILES, not one string: wrap it in a list")
        tokenizer, vocab, out = SmilesTokenizer(), self.vocabulary(), []
        for index, s in enumerate(smiles):
            try:
                tokens = tokenizer.tokenize(s)
            except (TokenizationError, TypeError) as error:
                raise InvalidSmilesError(s, index=index, reason=f"cannot tokenize: {error}") from None
            ids = vocab.encode(tokens, max_positions=None)
            if len(ids) > self.max_positions:
                if on_overflow == "error":
                    raise SmilesTooLongError(s, index=index, length=len(ids), limit=self.max_positions,
                                             hint="pass on_overflow='truncate' to cut it")
                ids = ids[: self.max_positions - 1] + [vocab.eos]
            out.append(ids)
        return out


def load_source(model: str | os.PathLike | None = None) -> ExportSource:
    """Load ``model`` for export: ``None`` is the shipped model; else any path
    :func:`bartsmiles.model.resolve.resolve_checkpoint` accepts (a .pt file, a model folder, a run folder).

    A checkpoint with ``task_state["bartsmiles"]`` is a fine-tuned property model (loaded with
    :class:`PropertyPredictor`); any other is a pretrained model (:func:`load_pretrained`). The
    model is float32, on the CPU, in eval mode.
    """
    path = resolve_checkpoint(model)
    raw = safe_load(path)
    metadata = dict(raw.get(METADATA_KEY) or {})
    property_meta = (raw.get("task_state") or {}).get(STATE_KEY)
    del raw
    if property_meta is not None:
        predictor = PropertyPredictor(path)
        meta = predictor.meta
        fairseq_model = predictor.model.float().eval()
        symbols = list(meta["dictionary"])
        tokenizer = str(meta.get("tokenizer", "regex"))
        positions = min(int(meta.get("max_positions") or 10**9), int(fairseq_model.encoder.max_positions()))
        task = {"task_names": list(meta["task_names"]), "task_type": str(meta["task_type"]),
                "target_mean": _float_list(meta.get("target_mean")), "target_std": _float_list(meta.get("target_std")),
                "classification_head_name": str(meta["classification_head_name"]), "metric": meta.get("metric"),
                "smiles_form": predictor.task.smiles_form, "head_input": predictor.task.head_input}
        kind = "property"
    else:
        loaded = load_pretrained(path)
        fairseq_model = loaded.model.float().eval()
        symbols = list(loaded.vocab.symbols)
        tokenizer = str(loaded.tokenizer.kind)
        positions = loaded.max_positions
        task, kind = None, "pretrained"
    rows = int(fairseq_model.encoder.embed_tokens.weight.shape[0])
    if rows == len(symbols) + 1 and "<mask>" not in symbols:
        symbols.append("<mask>")  # the denoising and property tasks append it after dict.txt
    if rows != len(symbols):
        raise ExportError(f"{path}: the model embeds {rows} tokens but its vocabulary has {len(symbols)} symbols")
    return ExportSource(path=path, kind=kind, model=fairseq_model, symbols=symbols, tokenizer=tokenizer,
                        max_positions=int(positions), task=task, metadata=metadata)


def _float_list(value: Any) -> list[float] | None:
    if value is None:
        return None
    return [float(v) for v in np.atleast_1d(np.asarray(value, dtype=np.float64))]


def _check_hf_head(source: ExportSource) -> None:
    """transformers' ``BartForSequenceClassification`` reads the decoder: refuse an encoder-mean head."""
    if source.task is not None and source.task.get("head_input") == "encoder_mean":
        raise ExportError(f"{source.path}: its head reads the mean-pooled encoder output (head_input=encoder_mean), "
                          "which BartForSequenceClassification cannot express; export it with --format onnx")


def _check_mappable(source: ExportSource) -> None:
    """Refuse a fairseq layout that transformers' BART (and our graph's assumptions) lacks."""
    args, where = source.args, source.path
    problems = []
    if source.tokenizer != "regex":
        problems.append(f"its tokenizer is {source.tokenizer!r} (only the regex tokenizer has a tokenizers "
                        "equivalent here)")
    if getattr(args, "encoder_normalize_before", False) or getattr(args, "decoder_normalize_before", False):
        problems.append("it uses pre-norm layers (normalize_before); transformers' BART is post-norm")
    if not getattr(args, "layernorm_embedding", True):
        problems.append("it has no layernorm_embedding; transformers' BART always has one")
    if str(getattr(args, "activation_fn", "gelu")) not in _ACTIVATIONS:
        problems.append(f"its activation {getattr(args, 'activation_fn', None)!r} has no transformers equivalent")
    encoder_embed, decoder_embed = source.model.encoder.embed_tokens, source.model.decoder.embed_tokens
    if encoder_embed.weight.data_ptr() != decoder_embed.weight.data_ptr() and not torch.equal(
            encoder_embed.weight, decoder_embed.weight):
        problems.append("its encoder and decoder embeddings differ (transformers' BART shares one)")
    if getattr(args, "encoder_learned_pos", True) is False or getattr(args, "no_token_positional_embeddings", False):
        problems.append("it has no learned positional embeddings")
    if source.task is not None:
        head = source.head
        if str(getattr(args, "pooler_activation_fn", "tanh")) != "tanh":
            problems.append("its classification head's activation is not tanh")
        if getattr(args, "spectral_norm_classification_head", False):
            problems.append("its classification head uses spectral norm")
        if head.dense.out_features != source.embedding_dim:
            problems.append(f"its classification head's inner dimension ({head.dense.out_features}) is not "
                            f"d_model ({source.embedding_dim})")
    if problems:
        raise ExportError(f"cannot export {where}: " + "; ".join(problems))


# ------------------------------------------------------------------------------------ tokenizer
def build_tokenizer(symbols: Sequence[str], max_positions: int, *, pad_and_truncate: bool = False):
    """Our regex tokenizer as a ``tokenizers.Tokenizer`` over ``symbols`` (listed by **token id**).

    WordLevel model (an unknown token is ``<unk>``, as :meth:`Vocabulary.index`), the SMILES regex
    (:data:`bartsmiles.core.tokenizer.SMILES_REGEX`) as a ``Split`` pre-tokenizer with
    ``behavior="isolated"``, a post-processor that adds ``<s> … </s>``, and a decoder that joins
    the tokens without spaces. On every SMILES our tokenizer accepts the ids are ours, token for
    token; where ours raises :class:`TokenizationError` (a character no token starts with), this
    one gives ``<unk>`` for the uncovered characters instead. ``pad_and_truncate`` turns on right
    padding with ``<pad>`` and truncation to ``max_positions`` (``<s>``/``</s>`` included), as
    ``on_overflow="truncate"`` does.
    """
    tokenizers = _tokenizers()
    vocab = {symbol: i for i, symbol in enumerate(symbols)}
    if [symbols[i] for i in range(4)] != list(SPECIAL_SYMBOLS):
        raise ExportError(f"vocabulary must start with {SPECIAL_SYMBOLS}, got {list(symbols[:4])}")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex(SMILES_REGEX), behavior="isolated")
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.decoder = tokenizers.decoders.Fuse()
    tok.add_special_tokens([s for s in (*SPECIAL_SYMBOLS, "<mask>") if s in vocab])
    if pad_and_truncate:
        tok.enable_padding(direction="right", pad_id=1, pad_token="<pad>")
        tok.enable_truncation(max_length=int(max_positions))
    return tok


def _hf_tokenizer(source: ExportSource):
    transformers = _transformers()
    mask = {"mask_token": "<mask>"} if "<mask>" in source.symbols else {}
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(source.symbols, source.max_positions),
        bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", **mask,
        model_max_length=source.max_positions, padding_side="right",
        model_input_names=["input_ids", "attention_mask"])


# ---------------------------------------------------------------------------------- transformers
def _task_description(source: ExportSource) -> dict[str, Any] | None:
    task = source.task
    if task is None:
        return None
    scaling = None
    if task["target_mean"] is not None:
        scaling = {"kind": "standardize", "mean": task["target_mean"], "std": task["target_std"]}
    rule = ("sigmoid(logits)" if task["task_type"] == "classification"
            else "logits * std + mean" if scaling else "logits")
    form = task.get("smiles_form", "as_written")
    return {"task_names": task["task_names"], "task_type": task["task_type"], "target_scaling": scaling,
            "predictions": rule, "metric": task.get("metric"), "smiles_form": form,
            "head_input": task.get("head_input", "decoder_eos"),
            "input": ("rewrite each SMILES to RDKit's canonical isomeric form (Chem.MolToSmiles(Chem.MolFromSmiles(s))) "
                      "before tokenizing, as the model was trained" if form == "canonical"
                      else "tokenize each SMILES as written")}


def _description(source: ExportSource, fmt: str) -> dict[str, Any]:
    """What bartsmiles_export.json (and config.bartsmiles) says about the export."""
    return {
        "format_version": _FORMAT_VERSION,
        "format": fmt,
        "kind": source.kind,
        "source": f"{source.path.parent.name}/{source.path.name}",
        "arch": source.metadata.get("arch") or str(getattr(source.args, "arch", "") or getattr(source.args, "_name", "")),
        "tokenizer": source.tokenizer,
        "max_positions": source.max_positions,
        "embedding_dim": source.embedding_dim,
        "vocab_size": len(source.symbols),
        "special_tokens": {"bos": 0, "pad": 1, "eos": 2, "unk": 3,
                           **({"mask": source.symbols.index("<mask>")} if "<mask>" in source.symbols else {})},
        "pooling": "mean of the encoder states over the positions with attention_mask 1 (<s> and </s> included)",
        "task": _task_description(source),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"bartsmiles": str(__version__), "torch": str(torch.__version__),
                     "python": platform.python_version()},
        "source_metadata": {k: source.metadata[k] for k in ("arch", "architecture", "num_updates", "tokens_seen",
                                                             "objective", "versions", "created")
                            if k in source.metadata},
    }


def hf_config(source: ExportSource):
    """The ``transformers.BartConfig`` of ``source`` (with ``num_labels`` etc. for a property model)."""
    transformers = _transformers()
    _check_mappable(source)
    _check_hf_head(source)
    args, encoder, decoder = source.args, source.model.encoder, source.model.decoder
    kwargs: dict[str, Any] = dict(
        vocab_size=len(source.symbols),
        max_position_embeddings=source.max_positions,
        d_model=source.embedding_dim,
        encoder_layers=len(encoder.layers), decoder_layers=len(decoder.layers),
        encoder_attention_heads=encoder.layers[0].self_attn.num_heads,
        decoder_attention_heads=decoder.layers[0].self_attn.num_heads,
        encoder_ffn_dim=encoder.layers[0].fc1.out_features, decoder_ffn_dim=decoder.layers[0].fc1.out_features,
        activation_function=_ACTIVATIONS[str(getattr(args, "activation_fn", "gelu"))],
        dropout=float(getattr(args, "dropout", 0.1) or 0.0),
        attention_dropout=float(getattr(args, "attention_dropout", 0.0) or 0.0),
        activation_dropout=float(getattr(args, "activation_dropout", 0.0) or 0.0),
        classifier_dropout=float(getattr(args, "pooler_dropout", 0.0) or 0.0),
        scale_embedding=not bool(getattr(args, "no_scale_embedding", True)),
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2,
        is_encoder_decoder=True, tie_word_embeddings=True, use_cache=False,
    )
    description = _description(source, "hf")
    if source.task is not None:
        names = source.task["task_names"]
        kwargs.update(num_labels=len(names), id2label=dict(enumerate(names)),
                      label2id={name: i for i, name in enumerate(names)},
                      problem_type=("multi_label_classification" if source.task["task_type"] == "classification"
                                    else "regression"))
    config = transformers.BartConfig(**kwargs)
    config.bartsmiles = {k: description[k] for k in ("format_version", "kind", "tokenizer", "pooling", "task",
                                                      "special_tokens", "source_metadata")}
    return config


def hf_state_dict(source: ExportSource) -> dict[str, torch.Tensor]:
    """fairseq parameter names -> transformers' (see the module docstring), float32 copies.

    ``BartModel`` names for a pretrained model; ``BartForSequenceClassification`` names
    (``model.`` prefix, ``classification_head.``) for a property model, with only its own head.
    """
    prefix = "model." if source.task is not None else ""
    head = f"classification_heads.{source.task['classification_head_name']}." if source.task else None
    out: dict[str, torch.Tensor] = {}
    for name, tensor in source.model.state_dict().items():
        if name.endswith(".version") or name == "decoder.output_projection.weight":
            continue
        if name.startswith("classification_heads."):
            if head is not None and name.startswith(head):
                out["classification_head." + name[len(head):]] = tensor.detach().float().clone()
            continue
        out[prefix + name] = tensor.detach().float().clone()
    embed = out[prefix + "encoder.embed_tokens.weight"]
    out[prefix + "shared.weight"] = embed
    out[prefix + "decoder.embed_tokens.weight"] = embed
    return out


def _hf_model(source: ExportSource):
    transformers = _transformers()
    config = hf_config(source)
    cls = transformers.BartForSequenceClassification if source.task is not None else transformers.BartModel
    model = cls(config)
    state = hf_state_dict(source)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ExportError(f"cannot map {source.path} onto transformers' {cls.__name__}: "
                          f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict(state, strict=True)
    return model.eval()


# ------------------------------------------------------------------------------------ reference
def _batches(ids: Sequence[Sequence[int]], batch_size: int, pad: int = 1) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """``(input indices, input_ids, attention_mask)`` per batch, cut from the inputs sorted by length
    (right padding; int64 arrays of shape (batch, longest))."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        input_ids = np.full((len(chunk), width), pad, dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, i in enumerate(chunk):
            input_ids[row, : len(ids[i])] = ids[i]
            mask[row, : len(ids[i])] = 1
        yield chunk, input_ids, mask


def _collect(n: int, parts: list[tuple[list[int], dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for chunk, values in parts:
        for key, value in values.items():
            if key not in out:
                out[key] = np.zeros((n, *value.shape[1:]), dtype=np.float32)
            out[key][chunk] = value
    return out


@torch.inference_mode()
def fairseq_outputs(source: ExportSource, smiles: Sequence[str], *, batch_size: int = 64,
                    on_overflow: str = "error") -> dict[str, np.ndarray]:
    """What the fairseq model computes, in input order: ``features`` ``(n, d)`` (mean-pooled
    encoder states, as :meth:`PretrainedModel.encode`) and, for a property model, ``logits`` and
    ``predictions`` ``(n, tasks)`` (the head on the decoder state at ``</s>``, as the
    ``smiles_property`` criterion runs it: decoder input from :class:`PropertyDataset`'s collater)."""
    ids = source.encode_ids(smiles, on_overflow=on_overflow)
    parts = []
    for chunk, input_ids, mask in _batches(ids, batch_size):
        tokens = torch.from_numpy(input_ids)
        lengths = torch.from_numpy(mask.sum(1))
        encoded = source.model.encoder(tokens, src_lengths=lengths)
        states = encoded["encoder_out"][0].transpose(0, 1)
        keep = torch.from_numpy(mask).unsqueeze(-1).to(states.dtype)
        values = {"features": ((states * keep).sum(1) / keep.sum(1)).float().numpy()}
        if source.task is not None:
            # the property task's collater: the decoder reads each source rolled right by one
            prev = torch.full_like(tokens, 1)
            for row, i in enumerate(chunk):
                prev[row, : len(ids[i])] = torch.roll(torch.tensor(ids[i]), 1)
            logits, _ = source.model(tokens, lengths, prev, features_only=True,
                                     classification_head_name=source.task["classification_head_name"])
            values["logits"] = logits.float().numpy()
            values["predictions"] = _predictions(values["logits"], source.task)
        parts.append((chunk, values))
    return _collect(len(ids), parts)


def _predictions(logits: np.ndarray, task: dict[str, Any]) -> np.ndarray:
    if task["task_type"] == "classification":
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    if task.get("target_mean") is None:
        return logits
    return (logits * np.asarray(task["target_std"], dtype=np.float32)
            + np.asarray(task["target_mean"], dtype=np.float32)).astype(np.float32)


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    return {key: float(np.max(np.abs(a[key].astype(np.float64) - b[key].astype(np.float64))))
            for key in a if key in b}


def _check(source: ExportSource, found: dict[str, float], tolerance: float, what: str) -> None:
    over = {k: v for k, v in found.items() if k in ("features", "logits") and not v <= tolerance}
    if over:
        raise ExportError(f"the {what} export of {source.path} does not reproduce the fairseq model on the "
                          f"self-check molecules: max abs diff {over} > {tolerance}")


def _prepare_folder(source: ExportSource, out_dir: str | os.PathLike, names: Sequence[str]) -> Path:
    folder = Path(out_dir)
    if folder.resolve() == source.path.parent.resolve():
        raise ExportError(f"refusing to export into the model's own folder {folder}: choose another OUT folder")
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"cannot export into {folder}: it is a file")
    for name in names:
        check_writable(folder / name, make_folder=True)
    return folder


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# -------------------------------------------------------------------------------------- hf export
def hf_outputs(folder: str | os.PathLike, smiles: Sequence[str], *, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Run an exported transformers folder the way a user would (``AutoTokenizer`` then
    ``AutoModel`` / ``AutoModelForSequenceClassification``, offline); outputs as :func:`fairseq_outputs`."""
    transformers = _transformers("running a transformers export")
    folder = Path(folder)
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    task = (getattr(config, "bartsmiles", None) or {}).get("task")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    auto = transformers.AutoModelForSequenceClassification if task else transformers.AutoModel
    with _quiet_transformers():
        model = auto.from_pretrained(folder, local_files_only=True).eval()
    ids = [tokenizer(s, truncation=True)["input_ids"] for s in smiles]
    parts = []
    with torch.inference_mode():
        for chunk, input_ids, mask in _batches(ids, batch_size, pad=tokenizer.pad_token_id):
            input_ids, mask = torch.from_numpy(input_ids), torch.from_numpy(mask)
            states = model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
            keep = mask.unsqueeze(-1).to(states.dtype)
            values = {"features": ((states * keep).sum(1) / keep.sum(1)).float().numpy()}
            if task:
                values["logits"] = model(input_ids=input_ids, attention_mask=mask).logits.float().numpy()
                values["predictions"] = _predictions(values["logits"], _task_for_predictions(task))
            parts.append((chunk, values))
    return _collect(len(ids), parts)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No per-shard progress bars from transformers while saving or loading (restored after)."""
    hf_logging = _transformers().utils.logging
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _task_for_predictions(task: dict[str, Any]) -> dict[str, Any]:
    scaling = task.get("target_scaling") or {}
    return {"task_type": task["task_type"], "target_mean": scaling.get("mean"), "target_std": scaling.get("std")}


def export_hf(model: str | os.PathLike | None | ExportSource, out_dir: str | os.PathLike, *,
              verify: bool = True, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Write ``model`` as a transformers folder (see the module docstring); returns the description
    written to ``bartsmiles_export.json`` plus ``out_dir`` and ``files``.

    With ``verify`` the folder is loaded back offline and compared with the fairseq model on
    :data:`PROBE_SMILES` (``self_check``: max abs diff of features, logits and predictions);
    over ``tolerance`` (features, logits) is an :class:`ExportError`.
    """
    _transformers()
    source = model if isinstance(model, ExportSource) else load_source(model)
    _check_mappable(source)
    _check_hf_head(source)
    folder = _prepare_folder(source, out_dir, ("config.json", "model.safetensors", "tokenizer.json", EXPORT_JSON))
    hf_model = _hf_model(source)
    with _quiet_transformers():
        hf_model.save_pretrained(folder)
    _hf_tokenizer(source).save_pretrained(folder)
    # the class name transformers 4 and 5 both resolve (5 writes its own new name)
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    _write_json(folder / "tokenizer_config.json", tokenizer_config)
    description = _description(source, "hf")
    description["model_class"] = type(hf_model).__name__
    if verify:
        found = _max_diff(fairseq_outputs(source, PROBE_SMILES, on_overflow="truncate"),
                          hf_outputs(folder, PROBE_SMILES))
        description["self_check"] = {"molecules": len(PROBE_SMILES), "max_abs_diff": found, "tolerance": tolerance}
        _check(source, found, tolerance, "transformers")
    _write_json(folder / EXPORT_JSON, description)
    return {**description, "out_dir": str(folder), "files": sorted(p.name for p in folder.iterdir())}


# ------------------------------------------------------------------------------------ onnx export
class FeaturesGraph(nn.Module):
    """The exported computation: ``(input_ids, attention_mask) -> features[, logits, predictions]``.

    Positions with ``attention_mask`` 0 are set to ``<pad>`` before the encoder (fairseq derives its
    padding mask from the tokens); the decoder input is the input rolled right by one with
    ``</s>`` first and padding kept (the property task's collater); the head reads the decoder
    state at the last real position, which is the ``</s>`` every encoded SMILES ends with -- or,
    for a model with ``head_input="encoder_mean"``, reads ``features`` and never runs the decoder.
    """

    def __init__(self, source: ExportSource) -> None:
        super().__init__()
        self.encoder, self.decoder, self.head = source.model.encoder, source.model.decoder, source.head
        self.pad, self.eos = 1, 2
        task = source.task or {}
        self.classification = task.get("task_type") == "classification"
        self.encoder_head = task.get("head_input") == "encoder_mean"
        mean, std = task.get("target_mean"), task.get("target_std")
        self.register_buffer("target_mean", torch.tensor(mean if mean is not None else [0.0], dtype=torch.float32))
        self.register_buffer("target_std", torch.tensor(std if std is not None else [1.0], dtype=torch.float32))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        keep = attention_mask > 0
        tokens = torch.where(keep, input_ids, torch.full_like(input_ids, self.pad))
        encoded = self.encoder(tokens, src_lengths=None)
        states = encoded["encoder_out"][0].transpose(0, 1)
        weights = keep.unsqueeze(-1).to(states.dtype)
        features = (states * weights).sum(1) / weights.sum(1)
        if self.head is None:
            return features
        if self.encoder_head:
            logits = self.head(features)
            predictions = torch.sigmoid(logits) if self.classification else logits * self.target_std + self.target_mean
            return features, logits, predictions
        prev = torch.cat([torch.full_like(tokens[:, :1], self.eos), tokens[:, :-1]], dim=1)
        prev = torch.where(keep, prev, torch.full_like(prev, self.pad))
        decoded, _ = self.decoder(prev, encoder_out=encoded, features_only=True)
        last = keep.long().sum(1) - 1
        logits = self.head(decoded[torch.arange(decoded.size(0)), last])
        predictions = torch.sigmoid(logits) if self.classification else logits * self.target_std + self.target_mean
        return features, logits, predictions


class OnnxModel:
    """An ONNX export folder run with onnxruntime: ``tokenizer.json`` -> ``model.onnx``.

    ``threads`` sets onnxruntime's intra-op threads (``None``: its default). :meth:`run` returns
    every output of the graph by name, in input order; :meth:`encode` the ``features`` only.
    """

    def __init__(self, folder: str | os.PathLike, *, threads: int | None = None) -> None:
        ort = _onnxruntime()
        tokenizers = _tokenizers("reading an ONNX export's tokenizer.json")
        self.folder = Path(folder)
        self.description = json.loads((self.folder / EXPORT_JSON).read_text(encoding="utf-8"))
        self.tokenizer = tokenizers.Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # batches are padded here, after sorting by length
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.folder / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def encode_ids(self, smiles: Sequence[str]) -> list[list[int]]:
        """Token ids (``<s>``/``</s>`` added, truncated to the model's positions) per SMILES."""
        if isinstance(smiles, str):
            raise TypeError("pass a sequence of SMILES, not one string: wrap it in a list")
        return [e.ids for e in self.tokenizer.encode_batch(list(smiles))]

    def run(self, smiles: Sequence[str], *, batch_size: int = 64) -> dict[str, np.ndarray]:
        ids = self.encode_ids(smiles)
        parts = []
        for chunk, input_ids, mask in _batches(ids, batch_size):
            values = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})
            parts.append((chunk, dict(zip(self.output_names, values))))
        return _collect(len(ids), parts)

    def encode(self, smiles: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """``(n, d)`` float32 mean-pooled encoder features, in input order."""
        return self.run(smiles, batch_size=batch_size)["features"]


def export_onnx(model: str | os.PathLike | None | ExportSource, out_dir: str | os.PathLike, *,
                opset: int = ONNX_OPSET, verify: bool = True, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Write ``model`` as ``model.onnx`` + ``tokenizer.json`` (see the module docstring); returns the
    description written to ``bartsmiles_export.json`` plus ``out_dir`` and ``files``.

    The graph is traced from the fairseq model itself (:class:`FeaturesGraph`) with dynamic batch
    and sequence axes. With ``verify`` the folder is run with :class:`OnnxModel` and compared with
    the fairseq model on :data:`PROBE_SMILES` (``self_check``); over ``tolerance`` is an
    :class:`ExportError`.
    """
    onnx = _onnx()
    _onnxruntime("checking an ONNX export")
    _tokenizers()
    source = model if isinstance(model, ExportSource) else load_source(model)
    _check_mappable(source)
    folder = _prepare_folder(source, out_dir, ("model.onnx", "tokenizer.json", EXPORT_JSON))
    graph = FeaturesGraph(source).eval()
    outputs = ["features"] + (["logits", "predictions"] if source.task is not None else [])
    # A padded example: fairseq's encoder and decoder decide with Python ``if`` whether to pass a
    # padding mask, which tracing freezes; with padding in the example the mask is always passed.
    example_ids = torch.full((2, 8), 4, dtype=torch.long)
    example_ids[:, 0], example_ids[0, -1], example_ids[1, 5] = 0, 2, 2
    example_mask = torch.ones_like(example_ids)
    example_mask[1, 6:] = 0
    source.model.decoder._future_mask = torch.empty(0)  # rebuilt from the traced length, not a cached constant
    dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
               **{name: {0: "batch"} for name in outputs}}
    target = folder / "model.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about fairseq's asserts on shapes
        torch.onnx.export(graph, (example_ids, example_mask), str(target), dynamo=False, opset_version=int(opset),
                          input_names=["input_ids", "attention_mask"], output_names=outputs,
                          dynamic_axes=dynamic, do_constant_folding=True)
    description = _description(source, "onnx")
    description.update(opset=int(opset), inputs={"input_ids": "int64 (batch, sequence)",
                                                 "attention_mask": "int64 (batch, sequence), 1 = real position"},
                       outputs={"features": "float32 (batch, embedding_dim)",
                                **({"logits": "float32 (batch, tasks)", "predictions": "float32 (batch, tasks)"}
                                   if source.task is not None else {})})
    build_tokenizer(source.symbols, source.max_positions, pad_and_truncate=True).save(str(folder / "tokenizer.json"))
    if verify:
        _write_json(folder / EXPORT_JSON, description)  # OnnxModel reads it
        found = _max_diff(fairseq_outputs(source, PROBE_SMILES, on_overflow="truncate"),
                          OnnxModel(folder, threads=1).run(PROBE_SMILES))
        description["self_check"] = {"molecules": len(PROBE_SMILES), "max_abs_diff": found, "tolerance": tolerance}
        _check(source, found, tolerance, "ONNX")
    proto = onnx.load(str(target))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "bartsmiles", json.dumps(description)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(target))
    _write_json(folder / EXPORT_JSON, description)
    return {**description, "out_dir": str(folder), "files": sorted(p.name for p in folder.iterdir())}


def export(model: str | os.PathLike | None, out_dir: str | os.PathLike, *, format: str = "hf",
           verify: bool = True, tolerance: float = TOLERANCE, opset: int = ONNX_OPSET) -> dict[str, Any]:
    """Export ``model`` (``None``: the shipped model) to ``out_dir`` as ``format`` (``"hf"`` or ``"onnx"``).

    Dispatches to :func:`export_hf` or :func:`export_onnx`; see the module docstring for the
    folders they write and how to load them.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if format == "hf":
        return export_hf(model, out_dir, verify=verify, tolerance=tolerance)
    return export_onnx(model, out_dir, opset=opset, verify=verify, tolerance=tolerance)
