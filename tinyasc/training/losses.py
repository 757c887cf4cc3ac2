"""Losses, built from a config entry ``{name: ..., **args}``.

Every loss accepts hard targets [B] (class ids) or soft targets [B, classes] (mixup), so
augmentations that mix labels work with any of them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.base.registry import Registry

LOSSES = Registry("loss")


def _soft(targets: torch.Tensor, n_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    if targets.dim() == 1:
        targets = F.one_hot(targets, n_classes).float()
    return targets * (1 - smoothing) + smoothing / n_classes


@LOSSES.register("cross_entropy")
class CrossEntropy(nn.Module):
    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits, targets):
        soft = _soft(targets, logits.shape[1], self.label_smoothing)
        return -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@LOSSES.register("focal")
class FocalLoss(nn.Module):
    """Focal loss (Lin et al., ICCV 2017; seed report 004 uses gamma 2, no alpha):
    -sum_c t_c alpha_c (1 - p_c)^gamma log p_c, which for a hard target is -alpha_t (1 - p_t)^gamma log p_t.
    ``alpha``: None (no class weighting), one number for every class, or one weight per class."""

    def __init__(self, gamma: float = 2.0, alpha: float | list[float] | None = None, label_smoothing: float = 0.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, not {gamma}")
        self.gamma, self.label_smoothing = gamma, label_smoothing
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32),
                             persistent=False)

    def forward(self, logits, targets):
        soft = _soft(targets, logits.shape[1], self.label_smoothing)
        log_p = F.log_softmax(logits.float(), dim=1)
        per_class = -soft * (1 - log_p.exp()).pow(self.gamma) * log_p
        if self.alpha is not None:
            per_class = per_class * self.alpha
        return per_class.sum(dim=1).mean()


class DistillationLoss(nn.Module):
    """Knowledge distillation (Hinton et al., 2015): (1 - weight) * base loss on the labels
    + weight * T^2 * KL(teacher || student), both softened by temperature T. The T^2 keeps the
    gradient scale of the soft term independent of T. The teacher comes in as probabilities at
    temperature T (an ensemble averaged, mixup applied), made by ``tinyasc.training.distill``."""

    def __init__(self, base: nn.Module, weight: float = 0.5, temperature: float = 2.0):
        super().__init__()
        if not 0 <= weight <= 1:
            raise ValueError(f"weight must be in [0, 1], not {weight}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, not {temperature}")
        self.base, self.weight, self.temperature = base, weight, temperature

    def forward(self, logits, targets, teacher_probs=None):
        hard = self.base(logits, targets)
        if self.weight == 0 or teacher_probs is None:
            return hard
        t = self.temperature
        log_student = F.log_softmax(logits.float() / t, dim=1)
        kl = (teacher_probs * (torch.log(teacher_probs.clamp_min(1e-12)) - log_student)).sum(dim=1).mean()
        return (1 - self.weight) * hard + self.weight * t * t * kl


def build_loss(cfg: dict) -> nn.Module:
    """The loss on the labels; with a ``distill`` entry ({weight, temperature, teachers | logits}),
    wrapped in a DistillationLoss (the teachers themselves are loaded by tinyasc.training.distill).
    A ``noise_mask`` entry adds its own term in the training step (tinyasc.training.noise_mask)."""
    cfg = {"name": "cross_entropy", **cfg}
    cfg.pop("noise_mask", None)
    distill = cfg.pop("distill", None)
    loss = LOSSES.build(cfg)
    if not distill:
        return loss
    try:
        return DistillationLoss(loss, weight=distill.get("weight", 0.5), temperature=distill.get("temperature", 2.0))
    except ValueError as exc:
        raise TinyAscError(f"loss.distill: {exc}") from None
