"""Optimisers and learning-rate schedules, built from config entries.

Schedules are per-step multipliers of the optimiser's base learning rate (``LambdaLR`` stepped
every optimisation step), so a schedule stated in epochs is converted with ``steps_per_epoch``.
"""
from __future__ import annotations

import math

import torch

from tinyasc.errors import TinyAscError

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def build_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    cfg = dict(cfg)
    name = cfg.pop("name", "adamw")
    if name not in OPTIMIZERS:
        raise TinyAscError(f"unknown optimizer {name!r}; known: {', '.join(sorted(OPTIMIZERS))}")
    try:
        return OPTIMIZERS[name](params, **cfg)
    except TypeError as exc:
        raise TinyAscError(f"optimizer {name!r}: bad argument ({exc})") from None


def cosine_warmup(total_steps: int, steps_per_epoch: int, warmup_steps: int = 2000, min_lr_ratio: float = 0.0):
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at the last step."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


SCHEDULES = {"cosine_warmup": cosine_warmup, "constant": lambda total_steps, steps_per_epoch: (lambda step: 1.0)}


def register_schedule(name: str, fn) -> None:
    SCHEDULES[name] = fn


def build_schedule(optimizer, cfg: dict, total_steps: int, steps_per_epoch: int) -> dict:
    cfg = dict(cfg)
    name = cfg.pop("name", "cosine_warmup")
    if name not in SCHEDULES:
        raise TinyAscError(f"unknown schedule {name!r}; known: {', '.join(sorted(SCHEDULES))}")
    try:
        factor = SCHEDULES[name](total_steps=total_steps, steps_per_epoch=steps_per_epoch, **cfg)
    except TypeError as exc:
        raise TinyAscError(f"schedule {name!r}: bad argument ({exc})") from None
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}
