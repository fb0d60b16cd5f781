"""Safe, self-describing checkpoints.

Loading
-------
:func:`safe_load` reads a checkpoint with torch's weights-only unpickler. Only tensors, plain
containers and the globals in :data:`SAFE_GLOBALS` (``argparse.Namespace``, which fairseq stores
as the legacy ``args`` and as ``cfg["model"]``) are rebuilt. Anything else -- ``os.system`` hidden in
a ``__reduce__``, say -- is refused with :class:`UnsafeCheckpointError` before it runs.
:func:`load_fairseq_state` does what ``fairseq.checkpoint_utils.load_checkpoint_to_cpu`` does
after reading the file, on top of :func:`safe_load`, so the API never depends on torch's default.

Export
------
:func:`export_model` turns a training checkpoint (``checkpoint_last.pt``) into a shippable folder::

    out_dir/model.pt    fairseq-loadable: cfg + model weights (fp16 by default), no optimizer
                        state, no machine-specific paths, plus the "bartsmiles" metadata entry
    out_dir/dict.txt    the fairseq dictionary (token id = line number + 4)
    out_dir/chem.model  only for SentencePiece models

The metadata (:class:`ModelMetadata`, read back with :func:`read_metadata`) holds everything
needed to rebuild the model and read its outputs: architecture, tokenizer kind, vocabulary
symbols by **token id**, label names, task type, target scaling and the package versions.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import pickle
import platform
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import fairseq
import torch
from fairseq import checkpoint_utils, options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf, overwrite_args_by_name
from omegaconf import OmegaConf

import bartsmiles.tasks  # noqa: F401  (registers the archs and tasks)
from bartsmiles._version import __version__
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import CheckpointError, UnsafeCheckpointError
from bartsmiles.tasks.denoising import RECORD_KEY

__all__ = [
    "SAFE_GLOBALS",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "ModelMetadata",
    "safe_load",
    "load_fairseq_state",
    "prepare_fairseq_state",
    "export_model",
    "read_metadata",
    "num_updates",
    "write_untrained_checkpoint",
    "untrained_like",
    "pretrained_model_args",
    "SHAPE_FIELDS",
]

#: model-shape fields read from a pretrained checkpoint and passed on explicitly when fine-tuning
SHAPE_FIELDS = (
    "encoder_layers", "decoder_layers", "encoder_embed_dim", "decoder_embed_dim",
    "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_embed_dim",
    "decoder_ffn_embed_dim", "max_source_positions", "max_target_positions",
)

#: The only non-tensor globals a checkpoint may ask for.
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)
_ALLOWED_NAMES = tuple(f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS)
#: Version of the "bartsmiles" metadata entry written by :func:`export_model`.
FORMAT_VERSION = 1
#: Key of the metadata entry inside the checkpoint dict.
METADATA_KEY = "bartsmiles"
#: Config keys that hold paths of the machine that trained the model, and what they become.
_PATH_KEYS: dict[str, Any] = {
    "user_dir": None,
    "data": ".",
    "save_dir": ".",
    "log_file": None,
    "tensorboard_logdir": None,
    "log_sample_ids": None,
    "sentencepiece_model": None,
    "restore_file": "checkpoint_last.pt",
    "finetune_from_model": None,
}


def _refused_globals(path: str, error_text: str) -> list[str]:
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is not None:
        try:
            allowed = set(_ALLOWED_NAMES)
            found = [g for g in finder(path) if g not in allowed]
            if found:
                return found
        except Exception:  # noqa: BLE001 - fall back to the message
            pass
    return sorted(set(re.findall(r"GLOBAL ([\w.]+)", error_text)))


def safe_load(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict weights-only, allowing :data:`SAFE_GLOBALS` and nothing else.

    Raises ``FileNotFoundError`` for a missing file and :class:`UnsafeCheckpointError` (naming the
    file and the refused globals) for a checkpoint that needs any other global.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    # torch's safe_globals context removes on exit what it was given, even globals that were
    # allowlisted before (e.g. by ``import bartsmiles.tasks``); so hand it only the missing ones.
    allowed = set(torch.serialization.get_safe_globals())
    missing = [g for g in SAFE_GLOBALS if g not in allowed]
    try:
        with torch.serialization.safe_globals(missing) if missing else contextlib.nullcontext():
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_globals(path, str(error))
        if refused or "GLOBAL" in str(error) or "Unsupported global" in str(error):
            raise UnsafeCheckpointError(path, refused, _ALLOWED_NAMES, str(error)) from None
        raise CheckpointError(f"{path} is not a checkpoint torch can read ({_first_line(error)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as error:  # torch's zip/legacy readers
        raise CheckpointError(f"{path} is not a checkpoint torch can read ({_first_line(error)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def load_fairseq_state(path: str | os.PathLike, arg_overrides: Mapping[str, Any] | None = None) -> dict:
    """A checkpoint as ``fairseq.checkpoint_utils.load_checkpoint_to_cpu`` returns it, read safely.

    Same as ``prepare_fairseq_state(safe_load(path), arg_overrides)``. Pass the result as
    ``state=`` to ``checkpoint_utils.load_model_ensemble_and_task``.
    """
    return prepare_fairseq_state(safe_load(path), arg_overrides)


def prepare_fairseq_state(state: dict, arg_overrides: Mapping[str, Any] | None = None) -> dict:
    """Do to a raw checkpoint dict what fairseq's ``load_checkpoint_to_cpu`` does after reading it.

    As fairseq does: ``arg_overrides`` are applied to the legacy ``args``; ``cfg`` becomes an
    OmegaConf config (``Namespace`` values allowed) with the overrides applied; old layouts are
    upgraded. ``state`` is changed in place and returned.
    """

    if state.get("args") is not None and arg_overrides:
        for name, value in arg_overrides.items():
            setattr(state["args"], name, value)
    if state.get("cfg") is not None:
        state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
        if arg_overrides:
            overwrite_args_by_name(state["cfg"], dict(arg_overrides))
    return checkpoint_utils._upgrade_state_dict(state)  # noqa: SLF001 - fairseq's own upgrade


# --------------------------------------------------------------------------------- metadata
@dataclass
class ModelMetadata:
    """What a shipped model is, stored under ``checkpoint["bartsmiles"]``.

    ``vocabulary`` lists the dictionary symbols by **token id** (``<s>``, ``<pad>``, ``</s>``,
    ``<unk>``, then dict.txt order); the model's embedding has one more row when the task added
    ``<mask>``. ``label_names``, ``task_type`` (``"classification"``/``"regression"``) and
    ``target_scaling`` (e.g. ``{"min": .., "max": ..}`` mapping targets to [0, 1]) are ``None``
    for a pretrained model. ``architecture`` keys: ``encoder_layers``, ``decoder_layers``,
    ``dim``, ``heads``, ``ffn``, ``positions`` (max source positions, bos/eos included).
    ``tokens_seen`` (target tokens of pretraining) and ``objective`` (what the pretraining task
    trained, e.g. ``{"name": "denoising+descriptors", ...}``) come from the training record that
    the ``smiles_denoising`` task saves; ``None`` where unknown.
    """

    arch: str
    architecture: dict[str, int]
    tokenizer: str
    vocabulary: list[str]
    label_names: list[str] | None = None
    task_type: str | None = None
    target_scaling: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    num_updates: int | None = None
    tokens_seen: int | None = None
    objective: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelMetadata":
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"metadata format_version {version!r} is not supported "
                             f"(this bartsmiles reads version {FORMAT_VERSION})")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def _versions() -> dict[str, str]:
    # str(): torch.__version__ is a TorchVersion, which the weights-only loader would refuse
    return {"bartsmiles": str(__version__), "fairseq": str(getattr(fairseq, "__version__", "unknown")),
            "torch": str(torch.__version__), "python": str(platform.python_version())}


def config_value(section: Any, key: str, default: Any = None) -> Any:
    """``section[key]`` for a dict-like fairseq config section, ``section.key`` for a Namespace."""
    if section is None:
        return default
    if isinstance(section, Mapping):
        return section.get(key, default)
    return getattr(section, key, default)


def model_config(state: Mapping[str, Any]) -> Any:
    """The model section of a checkpoint: ``cfg["model"]`` or, for old checkpoints, ``args``."""
    cfg = state.get("cfg")
    model = config_value(cfg, "model")
    return model if model is not None else state.get("args")


def architecture_of(state: Mapping[str, Any]) -> tuple[str, dict[str, int]]:
    """``(arch name, dims)`` of a fairseq BART checkpoint, read from its config and weights."""
    m = model_config(state)
    if m is None:
        raise ValueError("checkpoint has neither cfg['model'] nor args: cannot tell its architecture")
    weights = state.get("model", {})
    arch = config_value(m, "arch") or config_value(m, "_name") or "unknown"
    positions = config_value(m, "max_source_positions")
    if positions is None and "encoder.embed_positions.weight" in weights:
        positions = int(weights["encoder.embed_positions.weight"].shape[0]) - 2  # learned: pad + 1 offset
    dims = {
        "encoder_layers": config_value(m, "encoder_layers"),
        "decoder_layers": config_value(m, "decoder_layers"),
        "dim": config_value(m, "encoder_embed_dim"),
        "heads": config_value(m, "encoder_attention_heads"),
        "ffn": config_value(m, "encoder_ffn_embed_dim"),
        "positions": positions,
    }
    return str(arch), {k: (int(v) if v is not None else None) for k, v in dims.items()}


def pretrained_model_args(path: str | os.PathLike) -> tuple[str, list[str]]:
    """(arch, explicit shape flags) of a pretrained fairseq checkpoint, read safely."""
    model_cfg = model_config(load_fairseq_state(path))
    arch = config_value(model_cfg, "arch") or config_value(model_cfg, "_name")
    flags: list[str] = []
    for name in SHAPE_FIELDS:
        value = config_value(model_cfg, name)
        if value is not None:
            flags += ["--" + name.replace("_", "-"), str(value)]
    return str(arch), flags


def training_record(state: Mapping[str, Any]) -> dict[str, Any]:
    """``{"tokens_seen", "objective"}`` of a checkpoint (each ``None`` where unknown).

    Read from the exported metadata, else from the record the ``smiles_denoising`` task saves in
    a training checkpoint's ``extra_state``.
    """
    metadata = state.get(METADATA_KEY) or {}
    record = (state.get("extra_state") or {}).get(RECORD_KEY) or {}
    return {key: metadata.get(key) if metadata.get(key) is not None else record.get(key)
            for key in ("tokens_seen", "objective")}


def num_updates(state: Mapping[str, Any]) -> int | None:
    """Updates the checkpoint was trained for (from ``optimizer_history``), if recorded."""
    history = state.get("optimizer_history") or []
    return int(history[-1]["num_updates"]) if history and "num_updates" in history[-1] else None


# ----------------------------------------------------------------------------------- export
def _scrub_paths(cfg: Any) -> None:
    """Replace machine-specific paths in a fairseq cfg dict (and its Namespaces) in place."""
    if cfg is None:
        return
    sections = cfg.values() if isinstance(cfg, dict) else [cfg]
    for section in sections:
        if isinstance(section, dict):
            for key, value in _PATH_KEYS.items():
                if key in section and section[key] is not None:
                    section[key] = value
        elif isinstance(section, argparse.Namespace):
            for key, value in _PATH_KEYS.items():
                if getattr(section, key, None) is not None:
                    setattr(section, key, value)


def _find_beside(checkpoint: Path, state: Mapping[str, Any], name: str) -> Path | None:
    """``name`` next to the checkpoint, else in the checkpoint's data folder (first shard)."""
    candidates = [checkpoint.parent / name]
    data = config_value(config_value(state.get("cfg"), "task"), "data") or config_value(state.get("args"), "data")
    if isinstance(data, str) and data:
        candidates.append(Path(data.split(os.pathsep)[0]) / name)
    return next((c for c in candidates if c.is_file()), None)


def _trim_training_state(state: dict) -> dict:
    history = state.get("optimizer_history") or [{}]
    last = {k: history[-1][k] for k in ("criterion_name", "optimizer_name", "lr_scheduler_state",
                                       "num_updates") if k in history[-1]}
    extra = state.get("extra_state") or {}
    kept = {k: extra[k] for k in ("epoch", "val_loss", "best") if isinstance(extra.get(k), (int, float))}
    if isinstance(extra.get(RECORD_KEY), Mapping):
        kept[RECORD_KEY] = dict(extra[RECORD_KEY])
    iterator = extra.get("train_iterator")
    if isinstance(iterator, Mapping) and "epoch" in iterator:
        kept["train_iterator"] = {"epoch": int(iterator["epoch"]), "iterations_in_epoch": 0}
    return {"optimizer_history": [last], "extra_state": kept}


def export_model(
    checkpoint_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    fp16: bool = True,
    extra_metadata: Mapping[str, Any] | None = None,
    dict_path: str | os.PathLike | None = None,
    tokenizer_model: str | os.PathLike | None = None,
) -> Path:
    """Write a shippable model folder from a fairseq checkpoint; returns ``out_dir/model.pt``.

    ``dict_path`` defaults to ``dict.txt`` beside the checkpoint, then in the checkpoint's data
    folder; ``tokenizer_model`` (a SentencePiece ``chem.model``) likewise, and its presence makes
    the tokenizer kind ``"sentencepiece"`` (else ``"regex"``). ``extra_metadata`` entries that
    name :class:`ModelMetadata` fields (``label_names``, ``task_type``, ``target_scaling``,
    ``tokens_seen``, ``objective``) set them; any other entry goes to ``metadata["extra"]``.
    """
    source = Path(checkpoint_path)
    state = safe_load(source)
    if "model" not in state or state.get("cfg") is None and state.get("args") is None:
        raise ValueError(f"{source} is not a fairseq checkpoint (needs 'model' and 'cfg' or 'args')")
    dict_file = Path(dict_path) if dict_path else _find_beside(source, state, "dict.txt")
    if dict_file is None or not dict_file.is_file():
        raise FileNotFoundError(f"no dict.txt for {source}: pass dict_path= (looked beside the "
                                f"checkpoint and in its data folder)")
    sp_file = Path(tokenizer_model) if tokenizer_model else _find_beside(source, state, "chem.model")
    vocab = Vocabulary.load(dict_file)

    arch, dims = architecture_of(state)
    extra = dict(extra_metadata or {})
    top = {**training_record(state),
           **{k: extra.pop(k) for k in ("label_names", "task_type", "target_scaling", "tokens_seen", "objective")
              if k in extra}}
    metadata = ModelMetadata(
        arch=arch, architecture=dims, tokenizer="sentencepiece" if sp_file else "regex",
        vocabulary=list(vocab.symbols), versions=_versions(),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        num_updates=num_updates(state), extra=extra, **top)

    weights = {k: (v.half() if fp16 and v.is_floating_point() else v) for k, v in state["model"].items()}
    cfg, args = state.get("cfg"), state.get("args")
    if isinstance(cfg, dict):
        if isinstance(cfg.get("common"), dict):
            cfg["common"]["user_dir"] = None
        _scrub_paths(cfg)
    if isinstance(args, argparse.Namespace):
        _scrub_paths(args)
    out = {"args": args, "cfg": cfg, "model": weights, "criterion": state.get("criterion"),
           **_trim_training_state(state), "task_state": state.get("task_state") or {},
           METADATA_KEY: metadata.to_dict()}

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.pt"
    torch.save(out, target)
    if dict_file.resolve() != (folder / "dict.txt").resolve():
        shutil.copyfile(dict_file, folder / "dict.txt")
    if sp_file is not None and sp_file.resolve() != (folder / "chem.model").resolve():
        shutil.copyfile(sp_file, folder / "chem.model")
    return target


def write_untrained_checkpoint(arch: str, dict_path: str | os.PathLike, path: str | os.PathLike, *,
                               seed: int = 0, task: str = "smiles_denoising",
                               extra_args: tuple[str, ...] = ()) -> Path:
    """Write a randomly initialized fairseq checkpoint of ``arch`` (for benchmarks and tests).

    The layout is that of a trained checkpoint (``cfg`` from fairseq's own parser, ``model``,
    ``optimizer_history`` with 0 updates), so :func:`export_model` and fairseq accept it.
    ``dict_path`` is the dictionary; it is copied beside ``path``.
    """

    path, dict_path = Path(path), Path(dict_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if dict_path.resolve() != (path.parent / "dict.txt").resolve():
        shutil.copyfile(dict_path, path.parent / "dict.txt")
    parser = options.get_training_parser(default_task=task)
    argv = [str(path.parent), "--task", task, "--arch", arch, "--cpu", "--seed", str(seed), *extra_args]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))
    torch.manual_seed(seed)
    model = tasks.setup_task(cfg.task).build_model(cfg.model)
    state = {"args": None, "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
             "model": model.state_dict(), "criterion": None,
             "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "none",
                                    "lr_scheduler_state": {}, "num_updates": 0}],
             "task_state": {}, "extra_state": {}, "last_optimizer_state": None}
    torch.save(state, path)
    return path


def untrained_like(source: str | os.PathLike, path: str | os.PathLike, seed: int = 0) -> str:
    """Write a randomly initialized checkpoint with ``source``'s shape and dictionary to ``path``.

    The control for anything that claims to measure pretraining: same architecture, same shape
    flags, same ``dict.txt`` (copied beside ``path``), fresh weights from ``seed``.
    """
    source = Path(source)
    arch, flags = pretrained_model_args(source)
    return str(write_untrained_checkpoint(arch, source.with_name("dict.txt"), path, seed=seed,
                                          extra_args=tuple(flags)))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The "bartsmiles" metadata of ``path`` (a model.pt, or a folder holding one), as a dict.

    Raises ``KeyError`` if the checkpoint has none (e.g. a raw training checkpoint: export it).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    state = safe_load(path)
    if METADATA_KEY not in state:
        raise KeyError(f"{path} has no '{METADATA_KEY}' metadata entry; create one with "
                       f"bartsmiles.model.checkpoint.export_model")
    return ModelMetadata.from_dict(state[METADATA_KEY]).to_dict()
