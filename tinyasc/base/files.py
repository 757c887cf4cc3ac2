"""Atomic file writes: a reader (or a killed process) never sees half a file.

Every file tinyasc writes into a run folder goes through ``atomic_path``: the content is written to
a hidden temporary sibling, flushed to disk, then renamed over the target, so the previous version
survives until the new one is complete. A write that fails (full disk, read-only medium, no
permission) removes its temporary file, leaves the previous file untouched and raises TinyAscError
naming the target and the problem. ``check_output_dir`` finds an unusable output folder before any
expensive work starts.
"""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path

from tinyasc.base.errors import TinyAscError


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temporary sibling of ``path`` to write; on success it replaces ``path``.

    ``suffix``: an extension the temporary name must keep (e.g. ".png" for writers that pick the
    format from the name)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TinyAscError(f"{path}: cannot create its folder {path.parent} ({os_reason(exc)})") from exc
    tmp = path.with_name(f".{path.stem if suffix else path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # full disk, read-only medium, no permission, ...: the target is left as it was
        kept = "the previous file is kept" if path.exists() else "nothing was written"
        raise TinyAscError(f"{path}: cannot write ({os_reason(exc)}); {kept}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def os_reason(exc: OSError) -> str:
    """The operating system's words for an OSError, without the path (the message names it once)."""
    return exc.strerror or str(exc) or type(exc).__name__


def check_output_dir(path: str | Path) -> Path:
    """Make sure ``path`` is a folder tinyasc can write into, before any expensive work; returns it.

    Raises TinyAscError (one line) when ``path`` is an existing file, lies under a file, or cannot be
    created or written (probed by creating and removing a temporary file inside). Missing folders are
    created; when the check fails, whatever it created is removed again."""
    path = Path(path)
    missing: list[Path] = []  # the folders this check creates, innermost first
    step = "look at this folder"
    probe = path / f".tinyasc-write-check-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        if path.exists() and not path.is_dir():
            raise TinyAscError(f"{path}: is a file, not a folder")
        ancestor = path
        while not ancestor.exists() and ancestor != ancestor.parent:
            missing.append(ancestor)
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise TinyAscError(f"{path}: cannot create this folder, {ancestor} is a file")
        step = "create this folder"
        path.mkdir(parents=True, exist_ok=True)
        step = "write in this folder"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        for folder in missing:  # innermost first; only folders this check made, and only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise TinyAscError(f"{path}: cannot {step} ({os_reason(exc)})") from exc
    return path


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=float))


def check_output_file(path: str | Path) -> Path:
    """Make sure a file can be written at ``path`` (not a folder; its folder writable), before any work."""
    path = Path(path)
    if path.is_dir():
        raise TinyAscError(f"{path}: is a folder; --out names the file to write")
    check_output_dir(path.parent)
    return path
