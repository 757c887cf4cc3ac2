"""Decoding and resampling.

Any soundfile-readable file (wav/flac; 16/24/32-bit PCM or float; any channel count) is decoded
to float32, down-mixed to mono by averaging channels, and resampled with soxr (HQ) to the
configured rate.

Length rule (``fit_length``): a clip longer than the configured duration keeps its first
``duration`` seconds; a shorter one is zero-padded at the end.

A truncated file (its header declares more frames than the file holds) is refused, not padded:
libsndfile quietly decodes what is there, so a WAV's RIFF chunks are read here to learn the length
its header declares (``declared_wav_frames``).
"""
from __future__ import annotations

import struct
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tinyasc.base.errors import TinyAscError

# Formats whose frame count libsndfile takes from the header: fewer decoded frames means a cut file.
_COUNTED_FORMATS = ("WAV", "WAVEX", "RF64", "W64", "AIFF", "FLAC", "CAF")
_PCM_TAGS = (0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE)  # PCM, IEEE float, A-law, mu-law, extensible
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave these in place of the data size


def declared_wav_frames(path: str | Path) -> int | None:
    """Frames a RIFF/RF64 WAV's header declares for its data chunk; None when the file is not such a
    WAV, its sample format has no fixed frame size, or the header leaves the size unknown."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
                return None
            block_align, tag, ds64_size = None, None, None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(min(size, 16))
                    if len(fmt) < 14:
                        return None
                    tag, _, _, _, block_align = struct.unpack("<HHIIH", fmt[:14])
                    f.seek(size - len(fmt) + (size & 1), 1)
                elif cid == b"ds64":
                    ds64 = f.read(min(size, 16))
                    if len(ds64) == 16:
                        ds64_size = struct.unpack("<Q", ds64[8:16])[0]
                    f.seek(size - len(ds64) + (size & 1), 1)
                elif cid == b"data":
                    if head[:4] == b"RF64" and size == 0xFFFFFFFF:
                        size = ds64_size or 0
                    if tag not in _PCM_TAGS or not block_align or size in _UNKNOWN_SIZES:
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)
    except (OSError, struct.error):
        return None


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file to mono float32 at its own rate; one clear error for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise TinyAscError(f"{path}: audio file does not exist")
    try:
        with sf.SoundFile(str(path)) as f:
            declared, rate, kind = f.frames, f.samplerate, f.format
            data = f.read(dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for corrupt files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TinyAscError(f"{path}: cannot decode audio ({reason})") from None
    if kind not in _COUNTED_FORMATS:
        declared = 0
    declared = max(declared, declared_wav_frames(path) or 0)  # libsndfile caps a WAV's count at what it holds
    if data.shape[0] < declared:
        raise TinyAscError(f"{path}: audio file is truncated (header says {declared} frames, "
                           f"file holds {data.shape[0]})")
    if data.shape[0] == 0:
        raise TinyAscError(f"{path}: audio file is empty (0 samples)")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise TinyAscError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(mono), int(rate)


def resample(wave: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    if orig_rate == target_rate:
        return wave
    return soxr.resample(wave, orig_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def fit_length(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Keep the first ``n_samples``; zero-pad at the end when shorter."""
    if len(wave) >= n_samples:
        return wave[:n_samples]
    return np.pad(wave, (0, n_samples - len(wave)))


def load_audio(path: str | Path, sample_rate: int, duration: float | None = None) -> np.ndarray:
    """Decode, down-mix, resample to ``sample_rate`` and (if ``duration``) pad/crop to that length."""
    wave, rate = read_audio(path)
    wave = resample(wave, rate, sample_rate)
    if duration is not None:
        wave = fit_length(wave, int(round(duration * sample_rate)))
    return wave


def load_audio_ahead(paths, sample_rate: int, duration: float | None = None, workers: int = 2, ahead: int = 512,
                     max_bytes: int = 256 << 20):
    """``load_audio`` of each path, yielded in the order given, while ``workers`` threads decode the
    next files (libsndfile and soxr release the GIL, so the threads decode in parallel with each
    other and with the caller). At most ``ahead`` files are decoded ahead, fewer when files are long:
    about ``max_bytes`` of audio is held. A file that cannot be read raises its TinyAscError when its
    turn comes; the files decoded ahead of it are dropped."""
    paths = list(paths)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="decode") as pool:
        queue, submitted, seen_bytes, seen = deque(), 0, 0, 0
        try:
            while queue or submitted < len(paths):
                # Until a file's size is known, keep only a few in flight: they may be hours long.
                limit = min(ahead, int(max_bytes * seen / seen_bytes)) if seen else 2 * workers
                while submitted < len(paths) and len(queue) < max(1, limit):
                    queue.append(pool.submit(load_audio, paths[submitted], sample_rate, duration))
                    submitted += 1
                wave = queue.popleft().result()
                seen, seen_bytes = seen + 1, seen_bytes + wave.nbytes
                yield wave
        finally:
            for future in queue:
                future.cancel()
