"""Log-mel front end computed in torch on batches, so it runs on the training device.

``MelFrontEnd`` maps waveforms [B, samples] to features [B, C, mel bins, frames]: STFT power
spectrum -> mel filterbank -> log(x + offset), optionally with delta and delta-delta channels.
The filterbank follows librosa's construction (HTK or Slaney mel scale, optional Slaney area
normalisation), and is tested against ``librosa.filters.mel``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# The DCASE 2024 Task 1 baseline front end (torchaudio MelSpectrogram defaults: HTK scale, no norm).
DCASE24_FRONTEND = dict(sample_rate=32000, n_fft=4096, win_length=3072, hop_length=500, n_mels=256,
                        fmin=0.0, fmax=None, window="hann", mel_scale="htk", mel_norm=None,
                        log_offset=1e-5, deltas=0, delta_width=9, trim_frames=0)


def hz_to_mel(freqs, scale: str = "htk"):
    freqs = np.asanyarray(freqs, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + freqs / 700.0)
    # Slaney: linear below 1 kHz, logarithmic above.
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    mels = freqs / f_sp
    log_part = freqs >= min_log_hz
    return np.where(log_part, min_log_mel + np.log(np.maximum(freqs, 1e-10) / min_log_hz) / logstep, mels)


def mel_to_hz(mels, scale: str = "htk"):
    mels = np.asanyarray(mels, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None,
                   scale: str = "htk", norm: str | None = None) -> np.ndarray:
    """Triangular mel filters [n_mels, n_fft // 2 + 1], built the way librosa.filters.mel builds them."""
    if scale not in ("htk", "slaney"):
        raise ValueError(f"mel_scale must be 'htk' or 'slaney', not {scale!r}")
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(fmin, scale), hz_to_mel(fmax, scale), n_mels + 2), scale)
    fdiff = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_freqs[2:n_mels + 2] - mel_freqs[:n_mels]))[:, None]
    elif norm is not None:
        raise ValueError(f"mel_norm must be None or 'slaney', not {norm!r}")
    return weights.astype(np.float32)


def deltas(x: torch.Tensor, width: int = 9) -> torch.Tensor:
    """Regression deltas along the last (time) axis, edges padded by repetition."""
    half = width // 2
    kernel = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device)
    kernel = kernel / (kernel ** 2).sum()
    flat = x.reshape(-1, 1, x.shape[-1])
    padded = nn.functional.pad(flat, (half, half), mode="replicate")
    return nn.functional.conv1d(padded, kernel.view(1, 1, -1)).reshape(x.shape)  # correlation: sum n * x[t + n]


class MelFrontEnd(nn.Module):
    """Waveforms [B, samples] -> log-mel features [B, 1 + deltas, n_mels, frames]."""

    def __init__(self, sample_rate: int = 32000, n_fft: int = 4096, win_length: int | None = 3072,
                 hop_length: int = 500, n_mels: int = 256, fmin: float = 0.0, fmax: float | None = None,
                 window: str = "hann", mel_scale: str = "htk", mel_norm: str | None = None,
                 log_offset: float = 1e-5, deltas: int = 0, delta_width: int = 9, trim_frames: int = 0):
        super().__init__()
        win_length = win_length or n_fft
        if win_length > n_fft:
            raise ValueError(f"win_length {win_length} is longer than n_fft {n_fft}")
        windows = {"hann": torch.hann_window, "hamming": torch.hamming_window}
        if window not in windows:
            raise ValueError(f"window must be one of {', '.join(windows)}, not {window!r}")
        if deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, not {deltas!r}")
        self.sample_rate, self.n_fft, self.win_length, self.hop_length = sample_rate, n_fft, win_length, hop_length
        self.n_mels, self.fmin, self.fmax, self.log_offset = n_mels, fmin, fmax, log_offset
        self.n_deltas, self.delta_width, self.trim_frames = deltas, delta_width, trim_frames
        self.mel_scale, self.mel_norm = mel_scale, mel_norm
        self.register_buffer("window", windows[window](win_length, periodic=True), persistent=False)
        fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, mel_scale, mel_norm)
        self.register_buffer("mel_fb", torch.from_numpy(fb), persistent=False)

    @property
    def out_channels(self) -> int:
        return 1 + self.n_deltas

    def power_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window, center=True, pad_mode="reflect", return_complex=True)
        return spec.real ** 2 + spec.imag ** 2  # [B, n_fft // 2 + 1, frames]

    def forward(self, wave: torch.Tensor, mel_fb: torch.Tensor | None = None) -> torch.Tensor:
        """``mel_fb`` overrides the filterbank for one call (fmin/fmax jitter augmentation)."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        # STFT in float32 even under mixed precision: fp16 power spectra overflow.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            power = self.power_spectrogram(wave.float())
            mel = torch.matmul(self.mel_fb if mel_fb is None else mel_fb, power)
            feats = torch.log(mel + self.log_offset).unsqueeze(1)
        if self.trim_frames:
            feats = feats[..., self.trim_frames:-self.trim_frames]
        channels = [feats]
        for _ in range(self.n_deltas):
            channels.append(deltas(channels[-1], self.delta_width))
        return torch.cat(channels, dim=1)

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.hop_length + 1 - 2 * self.trim_frames

    @torch.no_grad()
    def output_shape(self, duration: float = 1.0) -> tuple[int, int, int, int]:
        """Shape of the features of one clip of ``duration`` seconds: (1, channels, mel bins, frames).
        Measured by running the front end, so it is what the model will really be given."""
        return tuple(self(torch.zeros(1, int(round(duration * self.sample_rate)), device=self.window.device)).shape)
