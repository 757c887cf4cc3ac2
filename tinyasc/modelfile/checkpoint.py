"""Training checkpoints, found and loaded safely.

Loading uses ``weights_only=True``: a checkpoint cannot run code. A run folder's model is its
``best.ckpt``, else its ``last.ckpt``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tinyasc.base.errors import TinyAscError
from tinyasc.config import validate


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise TinyAscError(f"{path}: checkpoint does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it holds objects other than tensors and plain data, and tinyasc does not unpickle code"
        raise TinyAscError(f"{path}: not a loadable tinyasc checkpoint ({reason})") from None
    hyper = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or not isinstance(hyper, dict) or "config" not in hyper:
        raise TinyAscError(f"{path}: not a tinyasc checkpoint (no state_dict / config inside)")
    check_hyper_parameters(hyper, str(path))
    if not isinstance(ckpt["state_dict"], dict) or not all(isinstance(k, str) for k in ckpt["state_dict"]):
        raise TinyAscError(f"{path}: state_dict must be a mapping of parameter names to tensors")
    return ckpt


def check_hyper_parameters(hyper: dict, source: str) -> None:
    """What a model is rebuilt from: its run's config (checked against the config schema; the dataset's
    split file is not looked up, as the run may come from elsewhere), its classes and its devices."""
    for key in ("classes", "devices"):
        if key not in hyper:
            raise TinyAscError(f"{source}: hyper_parameters has no {key} (the names of the training data's {key})")
        names = hyper[key]
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            shown = repr(names) if len(repr(names)) <= 80 else repr(names)[:77] + "..."
            raise TinyAscError(f"{source}: hyper_parameters.{key} must be a list of names (strings), got {shown}")
    if not hyper["classes"] or len(set(hyper["classes"])) != len(hyper["classes"]):
        raise TinyAscError(f"{source}: hyper_parameters.classes must list distinct class names, "
                           f"got {list(hyper['classes'])!r}")
    validate(hyper["config"], source, split_files=False)


def resolve_checkpoint(run_or_ckpt: str | Path) -> tuple[Path, Path]:
    """(checkpoint, run folder) for a run folder (best.ckpt, else last.ckpt) or a checkpoint file."""
    path = Path(run_or_ckpt)
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name, path
        raise TinyAscError(f"{path}: no checkpoints/best.ckpt or checkpoints/last.ckpt in this run folder")
    if not path.exists():
        raise TinyAscError(f"{path}: no such run folder or checkpoint")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path, run_dir
