"""Training checkpoints, found and loaded safely.

Loading uses ``weights_only=True``: a checkpoint cannot run code. A run folder's model is its
``best.ckpt``, else its ``last.ckpt``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tinyasc.base.errors import TinyAscError
from tinyasc.config import check_names


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
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt.get("hyper_parameters", {}):
        raise TinyAscError(f"{path}: not a tinyasc checkpoint (no state_dict / config inside)")
    check_names(ckpt["hyper_parameters"]["config"], str(path))
    return ckpt


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
