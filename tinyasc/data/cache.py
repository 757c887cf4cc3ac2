"""The resampled-waveform cache: decode and resample every clip once, reuse it every epoch and run.

A cache is a folder ``waves-<key>`` holding ``waves.npy`` (an [N, samples] array read memory-mapped)
and ``manifest.json``. The key hashes the file list (names, sizes, modification times), the sample
rate, the clip length and the storage dtype, so a change to any of them builds a new cache. A cache
is built in a temporary folder and renamed into place only when complete, and it is verified
(manifest, shape, file size) before use: an interrupted or damaged build is never reused.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tinyasc.audio.io import load_audio
from tinyasc.errors import TinyAscError

CACHE_VERSION = 1


@dataclass
class WaveCache:
    waves: np.ndarray  # memory-mapped [N, n_samples]
    folder: Path
    bad: dict[str, str]  # file -> reason, for files left out (zeros in ``waves``)
    built: bool  # True when this call built it, False when an existing cache was reused


def default_cache_root() -> Path:
    return Path(os.environ.get("TINYASC_CACHE", Path.home() / ".cache" / "tinyasc"))


def cache_key(paths: list[Path], sample_rate: int, n_samples: int, dtype: str) -> str:
    h = hashlib.sha256(json.dumps([CACHE_VERSION, sample_rate, n_samples, dtype]).encode())
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()[:24]


def _verified(folder: Path, key: str, n: int, n_samples: int, dtype: str) -> np.ndarray | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("key") != key or manifest.get("complete") is not True:
            return None
        waves = np.load(folder / "waves.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    if waves.shape != (n, n_samples) or waves.dtype != np.dtype(dtype):
        return None
    return waves


def load_or_build(paths: list[Path], sample_rate: int, n_samples: int, cache_root: Path | None = None,
                  dtype: str = "float16", skip_bad: bool = False, workers: int | None = None,
                  progress: bool = True) -> WaveCache:
    """Return the cache for these files, building it (atomically) when no valid one exists."""
    cache_root = Path(cache_root) if cache_root else default_cache_root()
    key = cache_key(paths, sample_rate, n_samples, dtype)
    folder = cache_root / f"waves-{key}"
    waves = _verified(folder, key, len(paths), n_samples, dtype)
    if waves is not None:
        bad = json.loads((folder / "manifest.json").read_text()).get("bad", {})
        _raise_if_bad(bad, len(paths), skip_bad)
        return WaveCache(waves, folder, bad, built=False)
    if folder.exists():  # stale or damaged: rebuilt below, replaced only once the new one is complete
        shutil.rmtree(folder, ignore_errors=True)

    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".building-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        out = np.lib.format.open_memmap(tmp / "waves.npy", mode="w+", dtype=dtype, shape=(len(paths), n_samples))
        bad = _decode_all(paths, out, sample_rate, n_samples, workers, progress)
        _raise_if_bad(bad, len(paths), skip_bad)
        out.flush()
        del out
        manifest = dict(key=key, version=CACHE_VERSION, complete=True, n=len(paths), n_samples=n_samples,
                        sample_rate=sample_rate, dtype=dtype, files=[str(p) for p in paths], bad=bad)
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same cache first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    waves = _verified(folder, key, len(paths), n_samples, dtype)
    if waves is None:
        raise TinyAscError(f"{folder}: waveform cache failed verification right after it was built")
    return WaveCache(waves, folder, bad, built=True)


def _decode_all(paths, out, sample_rate, n_samples, workers, progress) -> dict[str, str]:
    duration = n_samples / sample_rate
    bad: dict[str, str] = {}

    def work(i):
        try:
            out[i] = load_audio(paths[i], sample_rate, duration)
        except TinyAscError as exc:
            bad[str(paths[i])] = str(exc).split(": ", 1)[-1]
            out[i] = 0

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # libsndfile and soxr release the GIL
        list(tqdm(pool.map(work, range(len(paths))), total=len(paths), desc="Caching audio",
                  unit="clip", disable=not progress, leave=False))
    return dict(sorted(bad.items()))


def _raise_if_bad(bad: dict[str, str], total: int, skip_bad: bool) -> None:
    if bad and not skip_bad:
        raise TinyAscError(f"{len(bad)} of {total} audio files are unusable (rerun with --skip-bad-files to "
                           f"train on the rest); first: {next(iter(bad))}: {next(iter(bad.values()))}",
                           details=[f"{f}: {r}" for f, r in bad.items()])
