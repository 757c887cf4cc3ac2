"""Device impulse response (DIR) augmentation (Morocutti et al., ICASSP 2023; seed report 001).

A clip is convolved with a randomly chosen microphone impulse response, so a model trained mostly
on one device hears many device colourings. The responses come from a folder of audio files (any
rate or format soundfile reads, e.g. the 66 MicIRP responses) or, without a folder, from a fixed set
of synthetic minimum-phase device responses. They are read at the first training step, not when the
module is built, so evaluating a trained model never needs the folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyasc.audio.io import load_audio
from tinyasc.augment.registry import register_augmentation
from tinyasc.base.errors import TinyAscError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


@register_augmentation("dir", "waveform")
class DeviceImpulseResponse(nn.Module):
    """Convolve each clip with probability ``p`` with a random impulse response (``full`` convolution,
    cropped to the clip length). ``devices`` (e.g. ["a"]) restricts it to clips of those devices, as
    the CP-JKU systems apply it to device-A recordings only; None: every clip."""

    uses_devices = True

    def __init__(self, p: float = 0.4, folder: str | None = None, devices: list[str] | None = None,
                 max_ir_s: float = 0.5, n_synthetic: int = 64, synthetic_seed: int = 0,
                 sample_rate: int = 32000, device_names: list[str] | None = None):
        super().__init__()
        self.p, self.folder, self.max_ir_s = p, folder, max_ir_s
        self.n_synthetic, self.synthetic_seed, self.sample_rate = n_synthetic, synthetic_seed, sample_rate
        ids = None
        if devices is not None:
            known = list(device_names or [])
            missing = [d for d in devices if d not in known]
            if missing:
                raise TinyAscError(f"augmentation 'dir': device(s) {', '.join(missing)} not in the dataset's "
                                   f"devices ({', '.join(known) or 'none known'})")
            ids = torch.tensor([known.index(d) for d in devices])
        # A buffer moves to the training device with the module: a batch copies nothing from the host.
        self.register_buffer("device_ids", ids, persistent=False)
        self._irs: torch.Tensor | None = None  # [n, taps], loaded lazily; not part of the state dict

    def responses(self, device: torch.device | None = None) -> torch.Tensor:
        if self._irs is None:
            irs = (load_ir_folder(self.folder, self.sample_rate, self.max_ir_s) if self.folder
                   else synthetic_device_irs(self.n_synthetic, self.sample_rate, self.synthetic_seed))
            self._irs = torch.from_numpy(irs)
        if device is not None and self._irs.device != device:
            self._irs = self._irs.to(device)
        return self._irs

    def forward(self, wave: torch.Tensor, devices: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return wave
        b, n = wave.shape
        chosen = torch.rand(b, device=wave.device) < self.p
        if self.device_ids is not None:
            if devices is None:
                raise ValueError("DIR restricted to some devices needs the batch's device ids")
            chosen &= torch.isin(devices.to(wave.device), self.device_ids.to(wave.device))
        if not chosen.any():
            return wave
        irs = self.responses(wave.device)
        picks = torch.randint(0, len(irs), (int(chosen.sum()),), device=wave.device)
        out = wave.clone()
        out[chosen] = convolve(wave[chosen].float(), irs[picks]).to(wave.dtype)
        return out


def convolve(wave: torch.Tensor, irs: torch.Tensor) -> torch.Tensor:
    """Row-wise full convolution by FFT, cropped to the input length: [B, n] * [B, taps] -> [B, n]."""
    n = wave.shape[1]
    size = 1 << (n + irs.shape[1] - 2).bit_length()  # power of two >= n + taps - 1
    spec = torch.fft.rfft(wave, size) * torch.fft.rfft(irs, size)
    return torch.fft.irfft(spec, size)[:, :n]


def _unit_energy(ir: np.ndarray) -> np.ndarray:
    # Unit energy keeps the power of white noise: the response colours a clip without changing its level.
    return (ir / max(float(np.sqrt(np.sum(ir ** 2))), 1e-12)).astype(np.float32)


def load_ir_folder(folder: str | Path, sample_rate: int, max_ir_s: float = 0.5) -> np.ndarray:
    """Every audio file in ``folder`` (sorted by name), resampled to ``sample_rate``, cut to ``max_ir_s``,
    scaled to unit energy, zero-padded to one length: [n_files, taps]."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TinyAscError(f"{folder}: impulse-response folder does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise TinyAscError(f"{folder}: no impulse-response audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
    taps = max(1, int(round(max_ir_s * sample_rate)))
    irs = [_unit_energy(load_audio(path, sample_rate)[:taps]) for path in files]
    out = np.zeros((len(irs), max(len(ir) for ir in irs)), dtype=np.float32)
    for row, ir in zip(out, irs):
        row[:len(ir)] = ir
    return out


def synthetic_device_irs(count: int = 64, sample_rate: int = 32000, seed: int = 0, taps: int = 2048) -> np.ndarray:
    """``count`` minimum-phase responses of imaginary small microphones: a band-pass (high-pass corner
    50-600 Hz, low-pass corner 3.5-16 kHz), a spectral tilt of up to 2 dB/octave and two to four
    resonances or dips of up to 10 dB. Deterministic for (count, sample_rate, seed)."""
    rng = np.random.default_rng((seed, 7_301))
    n_fft = 4 * taps
    f = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    f[0] = f[1] / 2  # keeps the logarithms finite at DC
    octaves = np.log2(f / 1000.0)
    out = np.zeros((count, taps), dtype=np.float32)
    for row in out:
        high_pass = np.exp(rng.uniform(np.log(50), np.log(600)))
        low_pass = min(np.exp(rng.uniform(np.log(3500), np.log(16000))), 0.45 * sample_rate)
        gain_db = (-10 * np.log10(1 + (high_pass / f) ** 4) - 10 * np.log10(1 + (f / low_pass) ** 4)
                   + rng.uniform(-2, 2) * octaves)
        for _ in range(rng.integers(2, 5)):
            centre, width = rng.uniform(np.log2(0.15), np.log2(10)), rng.uniform(0.3, 1.5)
            gain_db += rng.uniform(-10, 10) * np.exp(-0.5 * ((octaves - centre) / (width / 2)) ** 2)
        row[:] = _unit_energy(minimum_phase(10 ** (gain_db / 20), n_fft)[:taps] * _fade_out(taps))
    return out


def minimum_phase(magnitude: np.ndarray, n_fft: int) -> np.ndarray:
    """The causal minimum-phase impulse response of a magnitude response (rfft bins), by folding the
    real cepstrum: device responses ring after the onset, never before it."""
    cepstrum = np.fft.irfft(np.log(np.maximum(magnitude, 1e-8)), n_fft)
    folded = np.zeros(n_fft)
    folded[0], folded[n_fft // 2] = cepstrum[0], cepstrum[n_fft // 2]
    folded[1:n_fft // 2] = 2 * cepstrum[1:n_fft // 2]
    return np.fft.irfft(np.exp(np.fft.rfft(folded)), n_fft)


def _fade_out(taps: int) -> np.ndarray:
    fade = np.ones(taps)
    tail = taps // 4
    fade[-tail:] = 0.5 * (1 + np.cos(np.linspace(0, np.pi, tail)))
    return fade
