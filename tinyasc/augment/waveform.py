"""Waveform augmentations on [B, samples] batches."""
from __future__ import annotations

import torch
from torch import nn

from tinyasc.augment.registry import register_augmentation


@register_augmentation("time_roll", "waveform")
class TimeRoll(nn.Module):
    """Circularly shift each clip by up to ``max_shift_s`` seconds either way (DCASE 2024 baseline)."""

    def __init__(self, max_shift_s: float = 0.125, sample_rate: int = 32000):
        super().__init__()
        self.max_shift = int(round(max_shift_s * sample_rate))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_shift == 0:
            return wave
        b, n = wave.shape
        shifts = torch.randint(-self.max_shift, self.max_shift + 1, (b, 1), device=wave.device)
        index = (torch.arange(n, device=wave.device).unsqueeze(0) - shifts) % n
        return wave.gather(1, index)


@register_augmentation("noise", "waveform")
class AdditiveNoise(nn.Module):
    """Add white Gaussian noise at a signal-to-noise ratio drawn per clip from [min_snr_db, max_snr_db],
    to each clip with probability ``p``; the SNR is relative to the clip's own power."""

    def __init__(self, min_snr_db: float = 10.0, max_snr_db: float = 40.0, p: float = 1.0):
        super().__init__()
        if min_snr_db > max_snr_db:
            raise ValueError(f"min_snr_db {min_snr_db} is above max_snr_db {max_snr_db}")
        self.min_snr_db, self.max_snr_db, self.p = min_snr_db, max_snr_db, p

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return wave
        b = wave.shape[0]
        snr = self.min_snr_db + (self.max_snr_db - self.min_snr_db) * torch.rand(b, 1, device=wave.device)
        power = wave.pow(2).mean(dim=1, keepdim=True)
        scale = (power / 10 ** (snr / 10)).sqrt() * (torch.rand(b, 1, device=wave.device) < self.p)
        return wave + scale * torch.randn_like(wave)


@register_augmentation("speed", "waveform")
class SpeedChange(nn.Module):
    """Play each clip faster or slower by a factor drawn from [1 - max_change, 1 + max_change] (pitch and
    tempo change together), keeping its length: the resampled clip is centred and continued circularly,
    as time roll wraps. Linear interpolation: a little aliasing near Nyquist when speeding up."""

    def __init__(self, max_change: float = 0.1, p: float = 1.0):
        super().__init__()
        if not 0 <= max_change < 1:
            raise ValueError(f"max_change must be in [0, 1), not {max_change}")
        self.max_change, self.p = max_change, p

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_change == 0 or self.p <= 0:
            return wave
        b, n = wave.shape
        rate = 1 + self.max_change * (2 * torch.rand(b, 1, device=wave.device) - 1)
        rate = torch.where(torch.rand(b, 1, device=wave.device) < self.p, rate, torch.ones_like(rate))
        centre = (n - 1) / 2
        pos = centre + (torch.arange(n, device=wave.device, dtype=wave.dtype) - centre) * rate
        return interpolate_rows(wave, pos, circular=True)


@register_augmentation("random_crop", "waveform")
class RandomCrop(nn.Module):
    """Train on a random ``duration_s`` excerpt of each clip; evaluation sees the whole clip (the models
    pool globally over time, so both lengths work)."""

    def __init__(self, duration_s: float = 0.8, sample_rate: int = 32000):
        super().__init__()
        self.length = int(round(duration_s * sample_rate))
        if self.length <= 0:
            raise ValueError(f"duration_s must be positive, not {duration_s}")

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if not self.training or self.length >= wave.shape[1]:
            return wave
        return crop_rows(wave, self.length)


def crop_rows(x: torch.Tensor, length: int) -> torch.Tensor:
    """A random window of ``length`` along the last axis, one start per batch item."""
    b, n = x.shape[0], x.shape[-1]
    starts = torch.randint(0, n - length + 1, (b,), device=x.device)
    index = starts.view(b, *([1] * (x.dim() - 1))) + torch.arange(length, device=x.device)
    return x.gather(-1, index.expand(*x.shape[:-1], length))


def interpolate_rows(x: torch.Tensor, pos: torch.Tensor, circular: bool = False) -> torch.Tensor:
    """Linear interpolation of each row of ``x`` [B, n] at fractional positions ``pos`` [B, m]
    (wrapped modulo n when ``circular``, else clamped to the ends)."""
    n = x.shape[1]
    pos = torch.remainder(pos, n) if circular else pos.clamp(0, n - 1)
    lo = pos.floor()
    frac = pos - lo
    lo = lo.long().clamp(0, n - 1)
    hi = torch.remainder(lo + 1, n) if circular else (lo + 1).clamp(max=n - 1)
    return x.gather(1, lo) * (1 - frac) + x.gather(1, hi) * frac
