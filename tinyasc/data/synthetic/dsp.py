"""Signal primitives of the synthetic dataset, vectorised numpy in float32.

Stationary noise is made in the frequency domain (complex Gaussian bins times a magnitude
response). Envelopes and pitch contours live on a control grid (~200 Hz) and are interpolated to
samples by broadcasting, not ``np.interp``. Oscillators read a one-period wavetable with a 32-bit
integer phase accumulator, whose overflow is the wrap-around: one cumulative sum and one lookup
per sample, however many harmonics the table holds.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32
TABLE_BITS = 11
TABLE = 1 << TABLE_BITS  # wavetable length (samples per period)
CONTROL_RATE = 200  # Hz, rate of envelopes and pitch contours


# ----------------------------------------------------------------------------- spectral shapes

def rfft_freqs(n: int, sr: int) -> np.ndarray:
    return np.fft.rfftfreq(n, 1.0 / sr).astype(F32)


def band_gain(freqs, low: float | None = None, high: float | None = None, order: int = 2):
    """Magnitude of a Butterworth-like high-pass at ``low`` and low-pass at ``high`` (Hz)."""
    gain = np.ones_like(freqs)
    if low:
        gain /= np.sqrt(1 + (F32(low) / np.maximum(freqs, F32(1.0))) ** (2 * order))
    if high:
        gain /= np.sqrt(1 + (freqs / F32(high)) ** (2 * order))
    return gain


def tilt_gain(freqs, db_per_octave: float, ref: float = 1000.0):
    return (np.maximum(freqs, F32(20.0)) / F32(ref)) ** F32(db_per_octave / 6.0206)


def bump_gain(freqs, centre: float, gain_db: float, octaves: float):
    """A resonance (gain_db > 0) or dip, Gaussian in log-frequency with width ``octaves``."""
    x = np.log2(np.maximum(freqs, F32(1.0)) / F32(centre)) / F32(octaves)
    return F32(10.0) ** (F32(gain_db / 20.0) * np.exp(F32(-0.5) * x * x))


# ----------------------------------------------------------------------------- noise and filters

def unit_rms(x: np.ndarray) -> np.ndarray:
    return (x / F32(max(float(np.sqrt(np.mean(x * x, dtype=np.float64))), 1e-9))).astype(F32)


def gaussian_bins(rng, size: int) -> np.ndarray:
    """``size`` complex Gaussian values, real and imaginary parts of unit variance."""
    return rng.standard_normal(2 * size, dtype=F32).view(np.complex64)


def shaped_noise(rng, n: int, gain: np.ndarray) -> np.ndarray:
    """Gaussian noise with magnitude spectrum ``gain`` (one value per rfft bin), unit RMS."""
    return unit_rms(np.fft.irfft(gaussian_bins(rng, n // 2 + 1) * gain, n))


def filtered(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    return np.fft.irfft(np.fft.rfft(x) * gain, x.size).astype(F32)


def decaying_burst(rng, sr: int, seconds: float, tau: float, gain_fn) -> np.ndarray:
    """A short noise burst decaying with time constant ``tau`` (s), coloured by ``gain_fn(freqs)``."""
    m = max(int(seconds * sr), 16)
    burst = np.fft.irfft(np.fft.rfft(rng.standard_normal(m).astype(F32)) * gain_fn(rfft_freqs(m, sr)), m)
    return (burst * np.exp(-np.arange(m) / (tau * sr))).astype(F32)


# ----------------------------------------------------------------------------- control curves

def control_points(n: int, sr: int) -> int:
    """Length of the control grid that covers n samples (one point per hop, plus the end)."""
    return n // control_hop(sr) + 2


def control_hop(sr: int) -> int:
    return max(sr // CONTROL_RATE, 1)


def upsample(curve: np.ndarray, n: int, sr: int) -> np.ndarray:
    """Linear interpolation of a control-grid curve to n samples."""
    hop = control_hop(sr)
    curve = np.asarray(curve, dtype=F32)
    rows = n // hop + 1
    ramp = np.arange(hop, dtype=F32) / F32(hop)
    start = curve[:rows]
    return (start[:, None] + (curve[1:rows + 1] - start)[:, None] * ramp[None, :]).reshape(-1)[:n]


def smooth_points(rng, points: int, rate: float) -> np.ndarray:
    """A smooth random curve on the control grid (zero mean, unit variance), wandering at ``rate`` Hz."""
    knots = max(int(points / CONTROL_RATE * rate) + 2, 2)
    return np.interp(np.linspace(0, knots - 1, points), np.arange(knots), rng.standard_normal(knots)).astype(F32)


def smooth(rng, n: int, sr: int, rate: float) -> np.ndarray:
    """``smooth_points`` interpolated to n samples."""
    return upsample(smooth_points(rng, control_points(n, sr), rate), n, sr)


# ----------------------------------------------------------------------------- tones and events

def harmonic_tables(amplitudes, rng=None) -> np.ndarray:
    """Wavetables [rows, TABLE]: one period of sum_k a[row, k] sin(2 pi k t + phi_k), k = 1..,
    each at unit RMS; the phases phi_k are random with rng (shared by the rows), else zero."""
    amplitudes = np.atleast_2d(np.asarray(amplitudes, dtype=np.float64))
    t = np.arange(TABLE, dtype=np.float64) / TABLE
    k = np.arange(1, amplitudes.shape[1] + 1)[:, None]
    phases = rng.uniform(0, 2 * np.pi, (k.size, 1)) if rng is not None else 0.0
    tables = amplitudes @ np.sin(2 * np.pi * k * t + phases)
    return (tables / np.sqrt(np.mean(tables ** 2, axis=1, keepdims=True) + 1e-18)).astype(F32)


def harmonic_table(amplitudes, rng=None) -> np.ndarray:
    return harmonic_tables(amplitudes, rng)[0]


def harmonics_below(f0: float, sr: int, decay: float, count: int, rng=None, jitter_db: float = 0.0):
    """Amplitudes k^-decay of up to ``count`` harmonics, those of f0 above 0.45 sr left out."""
    count = max(1, min(int(count), int(0.45 * sr / max(f0, 1.0))))
    amps = np.arange(1, count + 1, dtype=np.float64) ** -decay
    if rng is not None and jitter_db:
        amps *= 10 ** (rng.uniform(-jitter_db, jitter_db, count) / 20)
    return amps


def phase_index(freq, n: int, sr: int, rng=None) -> np.ndarray:
    """Wavetable indices of an oscillator at ``freq`` Hz (scalar, or an array of n samples)."""
    step = F32(2.0 ** 32 / sr)
    start = np.uint32(rng.integers(0, 2 ** 32)) if rng is not None else np.uint32(0)
    if np.isscalar(freq):
        increments = np.full(n, np.uint32(int(freq * step) % 2 ** 32), dtype=np.uint32)
    else:
        increments = (np.clip(np.asarray(freq, F32), 0, sr / 2) * step).astype(np.uint32)
    increments[0] = np.uint32((int(increments[0]) + int(start)) % 2 ** 32)
    return np.cumsum(increments, dtype=np.uint32) >> np.uint32(32 - TABLE_BITS)


def oscillator(table: np.ndarray, freq, n: int, sr: int, rng=None) -> np.ndarray:
    return table[phase_index(freq, n, sr, rng)]


def add_wrapped(out: np.ndarray, event: np.ndarray, start: int) -> None:
    """out[start:start + len(event)] += event, wrapping past the end to the beginning."""
    start = int(start) % out.size
    event = event[:out.size]
    head = min(event.size, out.size - start)
    out[start:start + head] += event[:head]
    if head < event.size:
        out[:event.size - head] += event[head:]


def event_times(rng, n: int, sr: int, rate: float, minimum: int = 0) -> np.ndarray:
    """Start samples of a Poisson stream of events at ``rate`` per second."""
    count = max(int(rng.poisson(rate * n / sr)), minimum)
    return np.sort(rng.integers(0, n, count))
