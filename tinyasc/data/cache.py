"""The resampled-waveform cache: decode and resample every clip once, reuse it every epoch and run.

A cache is a folder ``waves-<key>`` holding ``waves.npy`` (an [N, samples] array read memory-mapped)
and ``manifest.json`` (also each file's own sample rate, and the files that could not be decoded
with the reason). The key hashes the file list (names, sizes, modification times), the sample
rate, the clip length and the storage dtype, so a change to any of them builds a new cache. A cache
is built in a temporary folder and renamed into place only when complete, and it is verified
(manifest, shape, file size) before use: an interrupted or damaged build is never reused. A cache
with unusable files is still completed, so a rerun with ``--skip-bad-files`` decodes nothing again.
Processes building the same cache at once (DDP ranks started by torchrun) take turns on a file
lock: the first builds, the others reuse its result.

Using a complete cache writes nothing (no lock file either), so a cache on a read-only medium
works. A build reserves the whole array on disk before decoding (``posix_fallocate``), so a full
disk fails at once with a message instead of killing the process with SIGBUS when a page of the
memory map is written; any file-system error while building (full disk, read-only or forbidden
folder) removes the unfinished ``.building-*`` folder and raises one TinyAscError naming the cache
folder and how to move it (env ``TINYASC_CACHE`` or ``data.cache_dir``).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from tinyasc.audio.io import load_audio
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import os_reason

CACHE_VERSION = 3  # 3: truncated audio files count as bad files


@dataclass
class WaveCache:
    waves: np.ndarray  # memory-mapped [N, n_samples]
    folder: Path
    bad: dict[str, str]  # file -> reason, for files left out (zeros in ``waves``)
    rates: np.ndarray  # each file's own sample rate before resampling (0 for a bad file)
    built: bool  # True when this call built it, False when an existing cache was reused


def default_cache_root() -> Path:
    return Path(os.environ.get("TINYASC_CACHE", Path.home() / ".cache" / "tinyasc"))


def cache_key(paths: list[Path], sample_rate: int, n_samples: int, dtype: str) -> str:
    h = hashlib.sha256(json.dumps([CACHE_VERSION, sample_rate, n_samples, dtype]).encode())
    real_dirs: dict[Path, str] = {}  # each folder resolved once: one realpath per file costs seconds at scale
    for p in paths:
        if p.parent not in real_dirs:
            real_dirs[p.parent] = os.path.realpath(p.parent)
        try:
            st = p.stat()
            h.update(f"{real_dirs[p.parent]}/{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()[:24]


def _verified(folder: Path, key: str, n: int, n_samples: int, dtype: str) -> tuple[np.ndarray, dict] | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("key") != key or manifest.get("complete") is not True or len(manifest["rates"]) != n:
            return None
        waves = np.load(folder / "waves.npy", mmap_mode="r")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if waves.shape != (n, n_samples) or waves.dtype != np.dtype(dtype):
        return None
    return waves, manifest


def load_or_build(paths: list[Path], sample_rate: int, n_samples: int, cache_root: Path | None = None,
                  dtype: str = "float16", skip_bad: bool = False, workers: int | None = None,
                  progress: bool = True) -> WaveCache:
    """Return the cache for these files, building it (atomically) when no valid one exists.

    Unusable files raise one TinyAscError listing them all unless ``skip_bad``; either way the
    cache is kept, with the bad files recorded in it.
    """
    cache_root = Path(cache_root) if cache_root else default_cache_root()
    key = cache_key(paths, sample_rate, n_samples, dtype)
    folder = cache_root / f"waves-{key}"
    # A complete cache is used without writing anything (not even the lock): it may be on a read-only medium.
    found = _verified(folder, key, len(paths), n_samples, dtype)
    built = False
    if found is None:
        try:
            cache_root.mkdir(parents=True, exist_ok=True)
            with _build_lock(cache_root / f".lock-{key}"):
                found = _verified(folder, key, len(paths), n_samples, dtype)  # built by another process meanwhile?
                built = found is None
                if built:
                    _build(folder, key, paths, sample_rate, n_samples, dtype, workers, progress)
                    found = _verified(folder, key, len(paths), n_samples, dtype)
        except OSError as exc:
            need = len(paths) * n_samples * np.dtype(dtype).itemsize
            raise TinyAscError(f"{cache_root}: cannot build the waveform cache there ({os_reason(exc)}; it needs "
                               f"{need / 1e6:.1f} MB); point TINYASC_CACHE or data.cache_dir at a writable folder "
                               f"with space") from exc
        if found is None:
            raise TinyAscError(f"{folder}: waveform cache failed verification right after it was built")
    waves, manifest = found
    _raise_if_bad(manifest["bad"], len(paths), skip_bad)
    return WaveCache(waves, folder, manifest["bad"], np.asarray(manifest["rates"], dtype=np.int64), built)


@contextlib.contextmanager
def _build_lock(path: Path):
    try:
        import fcntl  # optional: Unix only
    except ImportError:  # Windows: no lock; concurrent builders still never see a partial cache
        yield
        return
    with open(path, "a") as f:  # closing (or dying) releases the lock: a killed builder never blocks others
        with contextlib.suppress(OSError):  # a file system without locks: build unserialised
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _allocate(path: Path) -> None:
    """Reserve the file's blocks now: a full disk fails here with ENOSPC, not later with SIGBUS."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: the pages are written as they come
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # these: no fallocate here
            raise
    finally:
        os.close(fd)


def _build(folder, key, paths, sample_rate, n_samples, dtype, workers, progress) -> None:
    if folder.exists():  # stale or damaged: removed; the new one appears only once complete
        shutil.rmtree(folder, ignore_errors=True)
    tmp = folder.parent / f".building-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        out = np.lib.format.open_memmap(tmp / "waves.npy", mode="w+", dtype=dtype, shape=(len(paths), n_samples))
        try:
            _allocate(tmp / "waves.npy")
        except OSError:
            del out  # unmap before the folder is removed
            raise
        bad, rates = _decode_all(paths, out, sample_rate, n_samples, workers, progress)
        out.flush()
        del out
        manifest = dict(key=key, version=CACHE_VERSION, complete=True, n=len(paths), n_samples=n_samples,
                        sample_rate=sample_rate, dtype=dtype, files=[str(p) for p in paths], bad=bad,
                        rates=rates)
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process (without the lock: another machine) finished it first: use theirs
            if _verified(folder, key, len(paths), n_samples, dtype) is None:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _decode_all(paths, out, sample_rate, n_samples, workers, progress) -> tuple[dict[str, str], list[int]]:
    duration = n_samples / sample_rate
    bad: dict[str, str] = {}
    rates = [0] * len(paths)

    def work(i):
        try:
            out[i] = load_audio(paths[i], sample_rate, duration)
            rates[i] = sf.info(str(paths[i])).samplerate  # a header read; it decoded, so it opens
        except TinyAscError as exc:
            bad[str(paths[i])] = str(exc).split(": ", 1)[-1]
            out[i] = 0

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # libsndfile and soxr release the GIL
        list(tqdm(pool.map(work, range(len(paths))), total=len(paths), desc="Caching audio",
                  unit="clip", disable=not progress, leave=False))
    return dict(sorted(bad.items())), rates


def _raise_if_bad(bad: dict[str, str], total: int, skip_bad: bool) -> None:
    if bad and not skip_bad:
        raise TinyAscError(f"{len(bad)} of {total} audio files are unusable (rerun with --skip-bad-files to "
                           f"train on the rest); first: {next(iter(bad))}: {next(iter(bad.values()))}",
                           details=[f"{f}: {r}" for f, r in bad.items()])
