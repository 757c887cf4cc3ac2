"""Pitch shift of waveform batches: phase-vocoder time stretch, then resampling back to the length.

Shifting by r = 2^(semitones/12) stretches the clip r times longer with a phase vocoder (tempo
changes, pitch does not) and then plays it r times faster (both change back), the way
``librosa.effects.pitch_shift`` does, but batched in torch with one shift per clip.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from tinyasc.augment.registry import register_augmentation
from tinyasc.augment.waveform import interpolate_rows


@register_augmentation("pitch_shift", "waveform")
class PitchShift(nn.Module):
    """Shift each clip by a pitch drawn uniformly from [-max_semitones, max_semitones], with probability ``p``."""

    def __init__(self, max_semitones: float = 2.0, p: float = 1.0, n_fft: int = 512, hop_length: int = 128):
        super().__init__()
        self.max_semitones, self.p, self.n_fft, self.hop_length = max_semitones, p, n_fft, hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_semitones <= 0 or self.p <= 0:
            return wave
        b = wave.shape[0]
        semitones = self.max_semitones * (2 * torch.rand(b, device=wave.device) - 1)
        chosen = torch.rand(b, device=wave.device) < self.p
        if not chosen.any():
            return wave
        out = wave.clone()
        out[chosen] = pitch_shift(wave[chosen], semitones[chosen], self.n_fft, self.hop_length)
        return out


def pitch_shift(wave: torch.Tensor, semitones: torch.Tensor, n_fft: int = 512, hop_length: int = 128) -> torch.Tensor:
    """Waves [B, n] shifted by ``semitones`` [B]; same length out."""
    n = wave.shape[1]
    ratio = 2.0 ** (semitones.float() / 12)  # stretch factor, then the playback speed
    stretched = time_stretch(wave, 1 / ratio, n_fft, hop_length)
    pos = torch.arange(n, device=wave.device, dtype=torch.float32) * ratio[:, None]
    return interpolate_rows(stretched, pos).to(wave.dtype)


def time_stretch(wave: torch.Tensor, rate: torch.Tensor, n_fft: int = 512, hop_length: int = 128) -> torch.Tensor:
    """Phase-vocoder time stretch by ``rate`` [B] (< 1: longer). Rows come out zero-padded to the
    longest stretched length; row i holds about n / rate[i] samples."""
    b, n = wave.shape
    window = torch.hann_window(n_fft, device=wave.device)
    spec = torch.stft(wave.float(), n_fft, hop_length, window=window, return_complex=True)  # [B, F, T]
    n_freq, n_frames = spec.shape[1], spec.shape[2]
    out_frames = int(math.ceil(n_frames / rate.min().item()))
    # Output frame k reads analysis position k * rate; beyond a row's own end it reads silence.
    pos = torch.arange(out_frames, device=wave.device, dtype=torch.float32) * rate[:, None]  # [B, K]
    valid = pos <= n_frames - 1
    spec = torch.nn.functional.pad(spec, (0, 2))  # two silent frames to read past the end
    magnitude, angle = spec.abs(), spec.angle()
    lo = pos.floor().long().clamp(max=n_frames)
    frac = (pos - lo).unsqueeze(1)
    idx = lo.unsqueeze(1).expand(b, n_freq, out_frames)
    left, right = magnitude.gather(2, idx), magnitude.gather(2, idx + 1)
    magnitude = left + frac * (right - left)
    # Phase advance between neighbouring analysis frames, around each bin's expected advance.
    expected = torch.linspace(0, math.pi * hop_length, n_freq, device=wave.device).view(1, n_freq, 1)
    delta = angle.gather(2, idx + 1) - angle.gather(2, idx) - expected
    delta = delta - 2 * math.pi * torch.round(delta / (2 * math.pi)) + expected
    advance = torch.cat([torch.zeros_like(delta[:, :, :1]), delta[:, :, :-1]], dim=2).cumsum(dim=2)
    # Anchor the phases on the first frame whose window lies inside the clip: frame 0 sees the
    # reflect padding, and its bins' phases disagree, which would blur every later frame.
    j0 = min(n_fft // (2 * hop_length), n_frames - 1)
    k0 = (j0 / rate).round().long().clamp(max=out_frames - 1).view(b, 1, 1).expand(b, n_freq, 1)
    phase = angle[:, :, j0:j0 + 1] + advance - advance.gather(2, k0)
    stretched = torch.polar(magnitude * valid.unsqueeze(1), phase)
    length = int(math.ceil(n / rate.min().item()))
    return torch.istft(stretched, n_fft, hop_length, window=window, length=length)
