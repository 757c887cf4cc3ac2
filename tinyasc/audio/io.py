"""Decoding and resampling.

Any soundfile-readable file (wav/flac; 16/24/32-bit PCM or float; any channel count) is decoded
to float32, down-mixed to mono by averaging channels, and resampled with soxr (HQ) to the
configured rate.

Length rule (``fit_length``): a clip longer than the configured duration keeps its first
``duration`` seconds; a shorter one is zero-padded at the end.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tinyasc.base.errors import TinyAscError


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file to mono float32 at its own rate; one clear error for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise TinyAscError(f"{path}: audio file does not exist")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for corrupt files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TinyAscError(f"{path}: cannot decode audio ({reason})") from None
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
