"""Simulated recording devices of the synthetic dataset.

Each device is a fixed recording chain, the same for every dataset seed: a frequency response
(band limits, a tilt, a few resonances and dips, for one device a comb filter from a reflection),
a self-noise floor, a sensitivity, an automatic gain control and a soft, slightly asymmetric
saturation. Device ``a`` stands for TAU's reference binaural rig (nearly flat, quiet); ``b`` and
``c`` for phones; ``s1``-``s6`` for simulated devices.
``s4``-``s6`` appear only in the test set, and their chains differ from all training devices (a
narrower band, sharper resonances, a comb filter, louder hiss, harder saturation), which is what
makes them hard for a model trained without device augmentation.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from tinyasc.data.synthetic.dsp import F32, band_gain, bump_gain, gaussian_bins, rfft_freqs, tilt_gain

DEVICES = {
    # band: (high-pass Hz, low-pass Hz, filter order); tilt: dB/octave around 1 kHz; bumps:
    # (centre Hz, gain dB, width octaves); echo: (delay ms, gain) of a reflection off the casing,
    # a comb filter; noise: self-noise RMS dBFS; gain: sensitivity dB; agc: 0 none .. 1 full level
    # normalisation; clip: soft-saturation level dBFS (None = linear), slightly asymmetric.
    "a": dict(band=(20, 16000, 2), tilt=0.0, bumps=(), echo=None, noise=-88, gain=0.0, agc=0.0, clip=None),
    "b": dict(band=(110, 14000, 2), tilt=0.3, bumps=((2800, 4.0, 1.0), (650, -2.5, 1.2)), echo=None,
              noise=-74, gain=2.0, agc=0.3, clip=-6),
    "c": dict(band=(160, 12000, 2), tilt=-0.4, bumps=((4500, 5.0, 0.7), (1200, -3.0, 1.0)), echo=None,
              noise=-72, gain=-2.0, agc=0.4, clip=-8),
    "s1": dict(band=(80, 15000, 2), tilt=-0.8, bumps=((250, 3.0, 1.0), (3500, -4.0, 1.0)), echo=None,
               noise=-80, gain=0.0, agc=0.0, clip=None),
    "s2": dict(band=(200, 11000, 2), tilt=0.4, bumps=((1500, 3.0, 1.5),), echo=None,
               noise=-78, gain=3.0, agc=0.2, clip=-10),
    "s3": dict(band=(60, 13000, 2), tilt=0.5, bumps=((180, 4.0, 0.8), (2200, 3.0, 0.6), (6000, -5.0, 1.0)),
               echo=None, noise=-76, gain=-3.0, agc=0.1, clip=None),
    "s4": dict(band=(500, 8000, 3), tilt=1.0, bumps=((1700, 10.0, 0.35), (3400, 6.0, 0.3), (5500, -8.0, 0.6)),
               echo=None, noise=-64, gain=5.0, agc=0.6, clip=-16),
    "s5": dict(band=(80, 5000, 4), tilt=-1.5, bumps=((400, 6.0, 0.8),), echo=None,
               noise=-62, gain=-5.0, agc=0.0, clip=None),
    "s6": dict(band=(250, 12000, 2), tilt=-2.0, bumps=((900, 8.0, 0.5),), echo=(0.9, 0.6),
               noise=-68, gain=6.0, agc=0.5, clip=-16),
}
TRAIN_DEVICES = ("a", "b", "c", "s1", "s2", "s3")
TEST_ONLY_DEVICES = ("s4", "s5", "s6")


@lru_cache(maxsize=64)
def device_response(device: str, n: int, sr: int) -> np.ndarray:
    """The device's magnitude response on the rfft bins of an n-sample signal."""
    spec = DEVICES[device]
    f = rfft_freqs(n, sr)
    low, high, order = spec["band"]
    gain = band_gain(f, low, min(high, 0.45 * sr), order) * tilt_gain(f, spec["tilt"])
    for centre, db, octaves in spec["bumps"]:
        gain = gain * bump_gain(f, centre, db, octaves)
    if spec["echo"]:
        delay_ms, echo_gain = spec["echo"]
        gain = gain * np.abs(1 + echo_gain * np.exp(-2j * np.pi * f * delay_ms / 1000))
    return (gain * 10 ** (spec["gain"] / 20)).astype(F32)


@lru_cache(maxsize=64)
def _noise_shape(device: str, n: int, sr: int) -> np.ndarray:
    low, high, order = DEVICES[device]["band"]
    shape = band_gain(rfft_freqs(n, sr), low / 2, min(high, 0.45 * sr), order)
    return (shape / np.sqrt(np.mean(shape ** 2))).astype(F32)


def record(rng, spectrum: np.ndarray, device: str, n: int, sr: int) -> np.ndarray:
    """Pass a scene (its rfft ``spectrum``) through the device chain -> waveform in [-1, 1]."""
    spec = DEVICES[device]
    shaped = spectrum * device_response(device, n, sr)
    noise = gaussian_bins(rng, shaped.size)
    # Complex Gaussian bins of variance 2 give an n-sample signal of RMS sqrt(2/n); scale to the floor.
    shaped += noise * _noise_shape(device, n, sr) * F32(10 ** (spec["noise"] / 20) * np.sqrt(n / 2))
    x = np.fft.irfft(shaped, n).astype(F32)
    x *= F32(10 ** (rng.uniform(-1.5, 1.5) / 20))  # how the device was held this time
    if spec["agc"]:
        x = _agc(x, sr, spec["agc"])
    if spec["clip"] is not None:
        # Soft saturation; the negative half clips a little later, as in a single-ended stage.
        level = np.where(x >= 0, F32(10 ** (spec["clip"] / 20)), F32(1.3 * 10 ** (spec["clip"] / 20)))
        x = level * np.tanh(x / level)
        x -= x.mean()
    return np.clip(x, -1.0, 1.0)


def _agc(x: np.ndarray, sr: int, amount: float, target_db: float = -26.0) -> np.ndarray:
    """Phone-style automatic gain: pull the short-term level part of the way to a target."""
    block = sr // 20
    blocks = x[:x.size // block * block].reshape(-1, block)
    level = np.sqrt(np.mean(blocks ** 2, axis=1) + 1e-10)
    # Smooth over ~0.5 s so the gain breathes slowly, as phone AGCs do.
    level = np.convolve(np.pad(level, 5, mode="edge"), np.ones(11) / 11, mode="valid")
    gain = (level / 10 ** (target_db / 20)) ** -amount
    curve = np.interp(np.arange(x.size), (np.arange(gain.size) + 0.5) * block, gain)
    return (x * curve).astype(F32)
