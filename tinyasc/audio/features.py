"""Log-mel front end computed in torch on batches, so it runs on the training device.

``MelFrontEnd`` maps waveforms [B, samples] to features [B, C, mel bins, frames]: STFT power
spectrum -> mel filterbank -> log(x + offset), optionally with delta and delta-delta channels.
The filterbank follows librosa's construction (HTK or Slaney mel scale, optional Slaney area
normalisation), and is tested against ``librosa.filters.mel``.

On the CPU the batch is processed a few clips at a time, so the FFT output stays in cache, and the
mel projection multiplies each group of 16 bands only by the FFT bins those bands touch: the
filterbank is sparse (each bin feeds at most two triangles), so a dense [n_mels, n_fft/2+1] matmul
is ~15x more work at the DCASE 2024 settings. Elsewhere (GPU) one batched STFT and a dense matmul.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

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


MEL_GROUP = 16  # bands per block of the blocked mel projection
CHUNK_BYTES = 1 << 22  # FFT output per CPU chunk (4 MiB): fits in L2/L3 with its inputs
_POOLS: dict[int, ThreadPoolExecutor] = {}


def in_threads(fn, parts: list) -> list:
    """``[fn(p) for p in parts]`` on torch's number of threads, each running its torch ops on one
    thread: ops on small chunks do not split well over threads (OpenMP spins between them), whole
    chunks do (batch 256, 2 cores: 1,659 against 981 clips/s; benchmarks/README.md)."""
    threads = torch.get_num_threads()
    if threads == 1 or len(parts) == 1:
        return [fn(p) for p in parts]
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, "tinyasc-frontend")
    pool = _POOLS[threads]
    torch.set_num_threads(1)
    try:
        return list(pool.map(fn, parts))
    finally:
        torch.set_num_threads(threads)


def band_blocks(mel_fb: torch.Tensor, group: int = MEL_GROUP) -> list[tuple[int, int, int, int]]:
    """(first band, end band, first bin, end bin) of each group of ``group`` bands: the bins outside
    a group's range are zero in all of its bands. An all-zero group gets an empty bin range."""
    nonzero = (mel_fb != 0).cpu()
    n_bins = nonzero.shape[1]
    any_bin = nonzero.any(1)
    first = torch.where(any_bin, nonzero.float().argmax(1), n_bins).tolist()
    last = torch.where(any_bin, n_bins - nonzero.flip(1).float().argmax(1), 0).tolist()  # one past
    blocks = []
    for m0 in range(0, len(first), group):
        m1 = min(m0 + group, len(first))
        b0, b1 = min(first[m0:m1]), max(last[m0:m1])
        blocks.append((m0, m1, b0, max(b0, b1)))
    return blocks


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
        self.blocks = band_blocks(self.mel_fb)

    @property
    def out_channels(self) -> int:
        return 1 + self.n_deltas

    def power_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window, center=True, pad_mode="reflect", return_complex=True)
        return spec.real ** 2 + spec.imag ** 2  # [B, n_fft // 2 + 1, frames]

    def _mel_in_chunks(self, wave: torch.Tensor, mel_fb: torch.Tensor, blocks) -> torch.Tensor:
        """The same numbers as ``mel_fb @ power_spectrogram(wave)``, computed chunk by chunk and block
        by block: [B, n_mels, frames]. Framing as torch.stft with center=True: reflect padding of
        n_fft // 2, the window centred in the n_fft frame (so only win_length samples are read)."""
        n_frames, n_bins = wave.shape[-1] // self.hop_length + 1, self.n_fft // 2 + 1
        offset = (self.n_fft - self.win_length) // 2
        pad = self.n_fft // 2
        chunk = max(1, CHUNK_BYTES // (n_frames * n_bins * 8))

        def mel_of(part: torch.Tensor) -> torch.Tensor:
            padded = nn.functional.pad(part.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
            frames = padded[:, offset:].unfold(-1, self.win_length, self.hop_length)[:, :n_frames] * self.window
            spec = torch.view_as_real(torch.fft.rfft(frames, n=self.n_fft)).square_()
            power = spec[..., 0] + spec[..., 1]  # [chunk, frames, bins]
            mel = torch.cat([power[..., b0:b1] @ mel_fb[m0:m1, b0:b1].T for m0, m1, b0, b1 in blocks], -1)
            return mel.transpose(1, 2)

        return torch.cat(in_threads(mel_of, list(wave.split(chunk))))

    def forward(self, wave: torch.Tensor, mel_fb: torch.Tensor | None = None) -> torch.Tensor:
        """``mel_fb`` overrides the filterbank for one call (fmin/fmax jitter augmentation)."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        # STFT in float32 even under mixed precision: fp16 power spectra overflow.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            if wave.device.type == "cpu":
                blocks = self.blocks if mel_fb is None else band_blocks(mel_fb)
                mel = self._mel_in_chunks(wave.float(), self.mel_fb if mel_fb is None else mel_fb, blocks)
            else:
                mel = torch.matmul(self.mel_fb if mel_fb is None else mel_fb, self.power_spectrogram(wave.float()))
            feats = torch.log(mel + self.log_offset).unsqueeze(1)
        channels = [feats]
        for _ in range(self.n_deltas):
            channels.append(deltas(channels[-1], self.delta_width))
        feats = torch.cat(channels, dim=1)
        # Deltas from the whole clip, then the edge frames cut (reports 002/003 crop 44 -> 36 frames
        # "to match the delta-delta length": with delta_width 5 the kept frames never read padding).
        return feats[..., self.trim_frames:-self.trim_frames] if self.trim_frames else feats

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.hop_length + 1 - 2 * self.trim_frames

    @torch.no_grad()
    def output_shape(self, duration: float = 1.0) -> tuple[int, int, int, int]:
        """Shape of the features of one clip of ``duration`` seconds: (1, channels, mel bins, frames).
        Measured by running the front end, so it is what the model will really be given."""
        return tuple(self(torch.zeros(1, int(round(duration * self.sample_rate)), device=self.window.device)).shape)
