"""Spectrogram augmentations on [B, C, mels, frames] batches."""
from __future__ import annotations

import torch
from torch import nn

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
        self.p, self.alpha, self.eps = p, alpha, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0 or torch.rand(()) >= self.p:
            return x
        b = x.shape[0]
        mu = x.mean(dim=(1, 3), keepdim=True)
        sig = (x.var(dim=(1, 3), keepdim=True) + self.eps).sqrt()
        normed = (x - mu) / sig
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((b, 1, 1, 1)).to(x)
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
