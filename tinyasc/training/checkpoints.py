"""Checkpoints written atomically and loaded safely.

Lightning's default writer can leave a truncated file when a process is killed mid-write; here a
checkpoint is written to a temporary sibling, flushed to disk and renamed over the old one, so the
previous ``last.ckpt`` survives until the new one is complete. Loading uses ``weights_only=True``:
a checkpoint cannot run code.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from tinyasc.errors import TinyAscError


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_checkpoint(path, map_location or "cpu")


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
    return ckpt
