"""Spectrogram augmentations on [B, C, mels, frames] batches."""
from __future__ import annotations

import torch
from torch import nn

from tinyasc.augment.mixup import beta
from tinyasc.augment.registry import register_augmentation


@register_augmentation("freq_mixstyle", "spectrogram")
class FreqMixStyle(nn.Module):
    """Mix per-frequency-band statistics between batch items (Schmid et al., DCASE 2022).

    Each clip is normalised by its per-band mean/std over (channel, time) and re-scaled with the
    statistics mixed, with Beta(alpha, alpha) weights, with those of another clip of the batch.
    Applied to the whole batch with probability ``p``.
    """

    def __init__(self, p: float = 0.4, alpha: float = 0.3, eps: float = 1e-6):
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, not {alpha}")
        self.p, self.alpha, self.eps = p, alpha, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0 or torch.rand(()) >= self.p:
            return x
        b = x.shape[0]
        mu = x.mean(dim=(1, 3), keepdim=True)
        sig = (x.var(dim=(1, 3), keepdim=True) + self.eps).sqrt()
        normed = (x - mu) / sig
        lam = beta(self.alpha, (b, 1, 1, 1), x.device).to(x.dtype)
        perm = torch.randperm(b, device=x.device)
        mu_mix = mu * lam + mu[perm] * (1 - lam)
        sig_mix = sig * lam + sig[perm] * (1 - lam)
        return normed * sig_mix + mu_mix


@register_augmentation("freq_mask", "spectrogram")
class FrequencyMasking(nn.Module):
    """SpecAugment frequency masks: ``count`` bands of up to ``width`` mel bins set to ``value``."""

    def __init__(self, width: int = 48, count: int = 1, value: float = 0.0):
        super().__init__()
        self.width, self.count, self.value = width, count, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.width <= 0 or self.count <= 0:
            return x
        return _mask_axis(x, self.width, self.count, axis=2, value=self.value)


@register_augmentation("time_mask", "spectrogram")
class TimeMasking(nn.Module):
    """SpecAugment time masks: ``count`` spans of up to ``width`` frames set to ``value``."""

    def __init__(self, width: int = 8, count: int = 1, value: float = 0.0):
        super().__init__()
        self.width, self.count, self.value = width, count, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.width <= 0 or self.count <= 0:
            return x
        return _mask_axis(x, self.width, self.count, axis=3, value=self.value)


def _mask_axis(x: torch.Tensor, width: int, count: int, axis: int, value: float) -> torch.Tensor:
    b, size = x.shape[0], x.shape[axis]
    pos = torch.arange(size, device=x.device).view(1, 1, size)
    widths = torch.randint(0, min(width, size) + 1, (b, count, 1), device=x.device)
    starts = (torch.rand(b, count, 1, device=x.device) * (size - widths + 1)).long()
    masked = ((pos >= starts) & (pos < starts + widths)).any(dim=1)  # [B, size]
    shape = [b, 1, 1, 1]
    shape[axis] = size
    return x.masked_fill(masked.view(shape), value)


@register_augmentation("time_warp", "spectrogram")
class TimeWarp(nn.Module):
    """SpecAugment time warping: a random frame moves up to ``max_shift`` frames left or right and the
    time axis is stretched piecewise linearly around it (per clip, with probability ``p``)."""

    def __init__(self, max_shift: int = 5, p: float = 1.0):
        super().__init__()
        self.max_shift, self.p = max_shift, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_shift <= 0 or self.p <= 0:
            return x
        return warp_axis(x, 3, self.max_shift, self.p)


@register_augmentation("freq_warp", "spectrogram")
class FrequencyWarp(nn.Module):
    """Frequency warping: like time warping, along the mel axis: a random bin moves up to ``max_shift``
    bins, the bands below and above it stretch or squeeze linearly (a VTLP-like colouring)."""

    def __init__(self, max_shift: int = 8, p: float = 1.0):
        super().__init__()
        self.max_shift, self.p = max_shift, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_shift <= 0 or self.p <= 0:
            return x
        return warp_axis(x, 2, self.max_shift, self.p)


@register_augmentation("time_crop", "spectrogram")
class TimeCrop(nn.Module):
    """Train on a random run of ``frames`` frames of each clip (seed report 003 crops 36 frames to 30);
    evaluation sees every frame."""

    def __init__(self, frames: int = 30):
        super().__init__()
        if frames <= 0:
            raise ValueError(f"frames must be positive, not {frames}")
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.frames >= x.shape[3]:
            return x
        b, c, f, t = x.shape
        starts = torch.randint(0, t - self.frames + 1, (b, 1, 1, 1), device=x.device)
        index = (starts + torch.arange(self.frames, device=x.device)).expand(b, c, f, self.frames)
        return x.gather(3, index)


def warp_axis(x: torch.Tensor, axis: int, max_shift: int, p: float = 1.0) -> torch.Tensor:
    """Piecewise-linear warp of ``axis`` (2: mels, 3: frames): per clip, an anchor at least ``max_shift``
    from both ends moves by a shift in [-max_shift, max_shift]; output positions read the input by
    linear interpolation, so the first and last positions stay in place."""
    b, size = x.shape[0], x.shape[axis]
    if size <= 2 * max_shift + 1:
        return x
    dev = x.device
    anchor = torch.randint(max_shift, size - max_shift, (b, 1), device=dev).float()
    shift = torch.randint(-max_shift, max_shift + 1, (b, 1), device=dev).float()
    shift = shift * (torch.rand(b, 1, device=dev) < p)
    moved = (anchor + shift).clamp(1, size - 2)  # where the anchor lands; never onto an end
    out = torch.arange(size, device=dev, dtype=torch.float32).expand(b, size)
    last = size - 1
    src = torch.where(out <= moved, out * anchor / moved.clamp(min=1e-6),
                      anchor + (out - moved) * (last - anchor) / (last - moved).clamp(min=1e-6))
    lo = src.floor().clamp(0, last)
    frac = (src - lo).to(x.dtype)
    lo = lo.long()
    hi = (lo + 1).clamp(max=last)
    view = [b, 1, 1, 1]
    view[axis] = size
    lo, hi, frac = lo.view(view), hi.view(view), frac.view(view)
    expand = list(x.shape)
    return (x.gather(axis, lo.expand(expand)) * (1 - frac) + x.gather(axis, hi.expand(expand)) * frac)
