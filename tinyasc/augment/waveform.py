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
