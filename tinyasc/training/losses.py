"""Losses, built from a config entry ``{name: ..., **args}``.

Every loss accepts hard targets [B] (class ids) or soft targets [B, classes] (mixup), so
augmentations that mix labels work with any of them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.errors import TinyAscError


def _soft(targets: torch.Tensor, n_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    if targets.dim() == 1:
        targets = F.one_hot(targets, n_classes).float()
    return targets * (1 - smoothing) + smoothing / n_classes


class CrossEntropy(nn.Module):
    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits, targets):
        soft = _soft(targets, logits.shape[1], self.label_smoothing)
        return -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


LOSSES = {"cross_entropy": CrossEntropy}


def register_loss(name: str, cls: type[nn.Module]) -> None:
    LOSSES[name] = cls


def build_loss(cfg: dict) -> nn.Module:
    cfg = dict(cfg)
    name = cfg.pop("name", "cross_entropy")
    if name not in LOSSES:
        raise TinyAscError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](**cfg)
    except TypeError as exc:
        raise TinyAscError(f"loss {name!r}: bad argument ({exc})") from None
