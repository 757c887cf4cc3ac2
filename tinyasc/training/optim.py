"""Optimisers and learning-rate schedules, built from config entries.

Schedules are per-step multipliers of the optimiser's base learning rate (``LambdaLR`` stepped
every optimisation step), so a schedule stated in epochs is converted with ``steps_per_epoch``
(epoch e starts at step e * steps_per_epoch). The one exception is ``reduce_on_plateau``, which
follows a validation metric and so is stepped by Lightning once per epoch.
"""
from __future__ import annotations

import math

import torch

from tinyasc.base.registry import Registry

OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("adamw", torch.optim.AdamW)
OPTIMIZERS.register("adam", torch.optim.Adam)
OPTIMIZERS.register("sgd", torch.optim.SGD)
# A schedule is either a per-step factor ``(total_steps, steps_per_epoch, **cfg) -> (step -> factor)`` or,
# registered with follows_metric=True, ``(optimizer, **cfg) -> a Lightning lr_scheduler dict`` stepped per epoch.
SCHEDULES = Registry("schedule")


def _set_arguments(cfg: dict) -> dict:
    # A config section merges over the default one, so a schedule other than the default inherits its
    # arguments; ``key: null`` clears such an argument (the builder's own default applies).
    return {k: v for k, v in cfg.items() if v is not None}


def build_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    return OPTIMIZERS.build({"name": "adamw", **_set_arguments(cfg)}, params)


def follows_metric(name: str) -> bool:
    """Whether the named schedule follows a validation metric (and so needs a validation set)."""
    return bool(SCHEDULES.meta(name).get("follows_metric"))


@SCHEDULES.register("cosine_warmup")
def cosine_warmup(total_steps: int, steps_per_epoch: int, warmup_steps: int = 2000, min_lr_ratio: float = 0.0,
                  warmup_epochs: float | None = None):
    """Linear warm-up over ``warmup_steps`` (or ``warmup_epochs``), then cosine decay to ``min_lr_ratio``
    at the last step."""
    if warmup_epochs is not None:
        warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@SCHEDULES.register("four_phase")
def four_phase(total_steps: int, steps_per_epoch: int, warmup_epochs: float = 14, constant_epochs: float = 36,
               decay_epochs: float = 84, final_factor: float = 0.005):
    """Seed report 001 (after CP-JKU's exp_warmup_linear_down): exponential warm-up exp(-5 (1 - e/W)^2)
    over W = ``warmup_epochs``; constant; a linear decrease over ``decay_epochs`` to ``final_factor``;
    then fine-tuning at ``final_factor`` to the end (Table 3: the fourth phase is what remains)."""
    decay_start = warmup_epochs + constant_epochs

    def factor(step: int) -> float:
        epoch = step / steps_per_epoch
        warm = math.exp(-5.0 * (1 - epoch / warmup_epochs) ** 2) if epoch < warmup_epochs else 1.0
        if epoch <= decay_start:
            down = 1.0
        elif epoch < decay_start + decay_epochs:
            down = final_factor + (1 - final_factor) * (decay_start + decay_epochs - epoch) / decay_epochs
        else:
            down = final_factor
        return warm * down

    return factor


@SCHEDULES.register("cosine_restarts")
def cosine_restarts(total_steps: int, steps_per_epoch: int, restarts: list[float] = (3, 7, 15, 33),
                    min_lr_ratio: float = 0.0):
    """Cosine annealing with warm restarts at the listed epochs (SGDR, Loshchilov & Hutter 2017): each
    cycle starts at the base learning rate and decays by a half cosine to ``min_lr_ratio`` at the next
    restart; the last cycle ends with the training."""
    epochs = total_steps / steps_per_epoch
    starts = [0.0] + sorted(float(r) for r in restarts if 0 < r < epochs)  # a restart after the end never comes
    ends = starts[1:] + [epochs]

    def factor(step: int) -> float:
        epoch = step / steps_per_epoch
        cycle = max(i for i, start in enumerate(starts) if epoch >= start)
        progress = min(1.0, (epoch - starts[cycle]) / max(ends[cycle] - starts[cycle], 1e-9))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@SCHEDULES.register("constant")
def constant(total_steps: int, steps_per_epoch: int):
    return lambda step: 1.0


@SCHEDULES.register("linear_decay")
def linear_decay(total_steps: int, steps_per_epoch: int, final_ratio: float = 0.1, decay_epochs: float = 16):
    """Peak learning rate at the first step, falling linearly to ``final_ratio`` of it by epoch
    ``decay_epochs``, constant afterwards (report 001's QAT schedule)."""
    decay_steps = max(1, int(round(decay_epochs * steps_per_epoch)))

    def factor(step: int) -> float:
        return 1.0 - (1.0 - final_ratio) * min(1.0, step / decay_steps)

    return factor


@SCHEDULES.register("reduce_on_plateau", follows_metric=True)
def reduce_on_plateau(optimizer, factor: float = 0.4, patience: int = 3, monitor: str = "val/loss",
                      mode: str = "min", min_lr: float = 0.0, threshold: float = 1e-4) -> dict:
    """Seed report 002: multiply the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs (needs a validation set: data.val_fraction > 0)."""
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience,
                                                           threshold=threshold, min_lr=min_lr)
    return {"scheduler": scheduler, "interval": "epoch", "frequency": 1, "monitor": monitor, "strict": True}


def build_schedule(optimizer, cfg: dict, total_steps: int, steps_per_epoch: int) -> dict:
    cfg = {"name": "cosine_warmup", **_set_arguments(cfg)}
    if follows_metric(cfg["name"]):
        return SCHEDULES.build(cfg, optimizer)
    factor = SCHEDULES.build(cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}
