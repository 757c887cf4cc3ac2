"""Mixup (Zhang et al., ICLR 2018): blend pairs of clips and their labels.

Listed under ``augment.waveform`` it mixes waveforms; under ``augment.spectrogram``, features.
The labels become soft targets [B, classes], which every tinyasc loss accepts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.augment.registry import register_augmentation


@register_augmentation("mixup", ("waveform", "spectrogram"))
class Mixup(nn.Module):
    """With probability ``p`` per batch, x_i <- lam_i x_i + (1 - lam_i) x_perm(i), the same for the
    targets; lam_i ~ Beta(alpha, alpha) per clip, folded to max(lam, 1 - lam) so each mixed clip keeps
    its own label as the larger share (as the CP-JKU code does).

    ``last_mix`` holds (perm, lam) of the latest training call (None if it did not mix), so targets
    computed elsewhere for the unmixed batch, such as precomputed teacher outputs, can be mixed alike.
    """

    mixes_targets = True

    def __init__(self, alpha: float = 0.3, p: float = 1.0, n_classes: int = 10):
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, not {alpha}")
        self.alpha, self.p, self.n_classes = alpha, p, n_classes
        self.last_mix: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.last_mix = None
        if not self.training or self.p <= 0 or torch.rand(()) >= self.p:
            return x, targets
        b = x.shape[0]
        lam = beta(self.alpha, (b,), x.device)
        lam = torch.maximum(lam, 1 - lam)
        perm = torch.randperm(b, device=x.device)
        self.last_mix = (perm, lam)
        return mix(x, perm, lam), mix(soft_targets(targets, self.n_classes), perm, lam)


def beta(alpha: float, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Beta(alpha, alpha) weights drawn on ``device`` by its own generator, not drawn on the host and copied.
    Unvalidated: checking the concentrations on the device would wait for it at every batch (alpha > 0 is
    checked where the augmentation is built)."""
    concentration = torch.full(shape, float(alpha), device=device)
    return torch.distributions.Beta(concentration, concentration, validate_args=False).sample()


def soft_targets(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    return F.one_hot(targets, n_classes).float() if targets.dim() == 1 else targets.float()


def mix(x: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """lam * x + (1 - lam) * x[perm], lam [B] broadcast over the other axes."""
    lam = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return lam * x + (1 - lam) * x[perm]
