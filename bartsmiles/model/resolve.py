"""The one way a path becomes a checkpoint file.

Every command and function that takes a model (``load_pretrained``, ``bartsmiles predict``,
``bartsmiles finetune --pretrained``, the estimators, ``BartSmilesSeq2Seq.load``, the benchmark,
``bartsmiles-attribute``) resolves it here, in this order:

1. ``None``: the shipped model, ``bartsmiles/pretrained/model.pt``.  A name of
   :data:`SHIPPED_NAMES` that is not an existing path: that shipped model (``"retro"`` is the
   retrosynthesis model in ``bartsmiles/pretrained/retro/``).
2. A file: that file.
3. A folder holding one of :data:`CHECKPOINT_NAMES`: the first found, in that order
   (``model.pt`` is an exported model or a saved estimator; ``checkpoint_avg.pt`` the average of
   the last epochs; then fairseq's ``checkpoint_best.pt`` and ``checkpoint_last.pt``).
4. A run folder whose checkpoint sits one level down (``bartsmiles run`` writes
   ``runs/bbbp_scaffold/finetune/checkpoint_best.pt``): the subfolder that holds one of
   :data:`CHECKPOINT_NAMES`, resolved as in 3.  Several such subfolders are an error that lists
   them, so a run folder never silently picks one of two models.

Anything else raises :class:`FileNotFoundError` naming the path and what was looked for.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import bartsmiles.pretrained as shipped

__all__ = ["CHECKPOINT_NAMES", "SHIPPED_NAMES", "shipped_model_dir", "resolve_checkpoint"]

#: Checkpoint files looked for in a model or run folder, in order of preference.
CHECKPOINT_NAMES = ("model.pt", "checkpoint_avg.pt", "checkpoint_best.pt", "checkpoint_last.pt")

#: Shipped models by name -> their folder under the ``bartsmiles.pretrained`` package.
SHIPPED_NAMES = {"pretrained": ".", "retro": "retro"}


def shipped_model_dir() -> Path:
    """The folder of the shipped model (the ``bartsmiles.pretrained`` package)."""
    return Path(shipped.__file__).resolve().parent


def _in_folder(folder: Path) -> Optional[Path]:
    return next((folder / n for n in CHECKPOINT_NAMES if (folder / n).is_file()), None)


def resolve_checkpoint(path: str | os.PathLike | None = None) -> Path:
    """The checkpoint file that ``path`` stands for (see the module docstring for the order)."""
    if path is None:
        model = shipped_model_dir() / "model.pt"
        if not model.is_file():
            raise FileNotFoundError(
                f"the shipped pretrained model is missing: {model} does not exist (it ships with the "
                f"package; reinstall, or check that the file was not removed). Pass a model folder or "
                f"a .pt file instead.")
        return model
    if isinstance(path, str) and path in SHIPPED_NAMES and not Path(path).exists():
        model = (shipped_model_dir() / SHIPPED_NAMES[path] / "model.pt").resolve()
        if not model.is_file():
            raise FileNotFoundError(f"no shipped {path!r} model in this installation ({model} does not exist): "
                                    f"pass a model file or folder instead")
        return model
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"model not found: {path} is neither a file nor a folder")
    found = _in_folder(path)
    if found is not None:
        return found
    below = sorted(f for f in (_in_folder(sub) for sub in path.iterdir() if sub.is_dir()) if f is not None)
    if len(below) == 1:
        return below[0]
    looked = ", ".join(CHECKPOINT_NAMES)
    if below:
        raise FileNotFoundError(f"{path} holds several models ({', '.join(str(b.parent) for b in below)}): "
                                f"name one of those folders")
    raise FileNotFoundError(f"no checkpoint in {path} or its subfolders (looked for {looked})")
