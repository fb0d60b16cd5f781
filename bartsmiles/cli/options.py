"""Config dataclasses as command-line options, and back.

:func:`add_dataclass_args` adds one ``--field-name`` option per field of a config dataclass, with
the field's help text, type, allowed values and default (see
:func:`bartsmiles.training.config.help_field`); :func:`config_from_args` builds the dataclass from
the parsed arguments.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import MISSING, fields
from typing import Any, Callable, Optional, Sequence

__all__ = ["add_dataclass_args", "config_from_args"]

_SCALARS: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}


def _annotation(f: dataclasses.Field) -> tuple[str, bool]:
    """(type text without Optional, whether None is allowed) of a field's annotation."""
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    text = text.replace("typing.", "").strip()
    optional = False
    if text.startswith("Optional[") and text.endswith("]"):
        text, optional = text[len("Optional["):-1], True
    if text.endswith("| None"):
        text, optional = text[: -len("| None")].strip(), True
    return text, optional


def _default_text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value)) or "none"
    if value in ("", None):
        return "none"
    return str(value)


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, *, skip: Sequence[str] = (),
                       only: Optional[Sequence[str]] = None, defaults_none: bool = False) -> None:
    """One option ``--field-name`` per field of the config dataclass ``cls``.

    Booleans get ``--x/--no-x``; tuples take several values; ``choices`` in a field's metadata
    become argparse choices.  With ``defaults_none`` every option defaults to ``None`` (so that
    only what the user gave overrides another source, e.g. a JSON config), while the help still
    shows the dataclass default.
    """
    for f in fields(cls):
        if f.name in skip or f.name == "extra_args" or (only is not None and f.name not in only):
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        text, _ = _annotation(f)
        help_text = f.metadata.get("help", "")
        if "default:" not in help_text:
            help_text = f"{help_text} (default: {_default_text(default)})"
        choices = f.metadata.get("choices")
        given = None if defaults_none else default
        if text == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=given,
                                help=help_text)
        elif text.startswith("tuple["):
            inner = [part.strip(" ]") for part in text[len("tuple["):].split(",")]
            nargs: Any = "+" if inner[-1] == "..." or len(inner) == 1 else len(inner)
            parser.add_argument(flag, dest=f.name, nargs=nargs, type=_SCALARS.get(inner[0], str), default=given,
                                choices=choices, help=help_text, metavar=f.name.upper())
        elif text == "dict":
            continue  # structured settings come from a JSON config, not from one option
        else:
            parser.add_argument(flag, dest=f.name, type=_SCALARS.get(text, str), default=given, choices=choices,
                                help=help_text)


def config_from_args(cls: type, args: argparse.Namespace, extra: Sequence[str] = ()) -> Any:
    """The config dataclass ``cls`` from parsed ``args`` (fields the parser left out keep their defaults)."""
    values = {}
    for f in fields(cls):
        if f.name == "extra_args" or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    if any(f.name == "extra_args" for f in fields(cls)):
        values["extra_args"] = tuple(extra)
    return cls(**values)
