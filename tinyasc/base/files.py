"""Atomic file writes: a reader (or a killed process) never sees half a file.

Every file tinyasc writes into a run folder goes through ``atomic_path``: the content is written to
a hidden temporary sibling, flushed to disk, then renamed over the target, so the previous version
survives until the new one is complete.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temporary sibling of ``path`` to write; on success it replaces ``path``.

    ``suffix``: an extension the temporary name must keep (e.g. ".png" for writers that pick the
    format from the name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem if suffix else path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=float))
