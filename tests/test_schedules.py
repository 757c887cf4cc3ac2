import math

import pytest
import torch

from tinyasc.base.errors import TinyAscError
from tinyasc.training.optim import build_optimizer, build_schedule

STEPS_PER_EPOCH = 10


def lr_curve(optim_cfg: dict, schedule_cfg: dict, epochs: int) -> list[float]:
    """The learning rate at the first step of every epoch (and after the last one)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([param], optim_cfg)
    sched = build_schedule(optimizer, schedule_cfg, epochs * STEPS_PER_EPOCH, STEPS_PER_EPOCH)["scheduler"]
    lrs = []
    for step in range(epochs * STEPS_PER_EPOCH + 1):
        if step % STEPS_PER_EPOCH == 0:
            lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        sched.step()
    return lrs


def close(a, b, rel=1e-6):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


@pytest.mark.parametrize("model,phases,max_lr", [("moflenet57", (14, 36, 84, 16), 0.0009),
                                                  ("cp_resnet59", (15, 35, 85, 15), 0.001)])
def test_four_phase_schedule_of_report_001_table_3(model, phases, max_lr):
    warm, const, decay, tune = phases
    lrs = lr_curve({"name": "adam", "lr": max_lr},
                   {"name": "four_phase", "warmup_epochs": warm, "constant_epochs": const, "decay_epochs": decay,
                    "final_factor": 0.005}, sum(phases))
    assert close(lrs[0], max_lr * math.exp(-5))  # exponential warm-up starts at e^-5 of the maximum
    assert close(lrs[warm // 2], max_lr * math.exp(-5 * (1 - (warm // 2) / warm) ** 2))
    assert all(lrs[e] < lrs[e + 1] for e in range(warm - 1))
    assert all(close(lrs[e], max_lr) for e in range(warm, warm + const + 1))  # constant phase
    mid = warm + const + decay // 2
    assert close(lrs[mid], max_lr * (0.005 + 0.995 * (decay - decay // 2) / decay))  # linear decrease
    assert all(close(lrs[e], max_lr * 0.005) for e in range(warm + const + decay, sum(phases) + 1))  # fine-tuning


def test_cosine_restarts_of_report_002_reset_to_0_1_at_epochs_3_7_15_33():
    lrs = lr_curve({"name": "sgd", "lr": 0.1, "momentum": 0.9}, {"name": "cosine_restarts",
                                                               "restarts": [3, 7, 15, 33]}, 64)
    for start, end in ((0, 3), (3, 7), (7, 15), (15, 33), (33, 64)):
        assert close(lrs[start], 0.1)
        midpoint = start + (end - start) / 2
        if midpoint == int(midpoint):
            assert close(lrs[int(midpoint)], 0.05)  # half way down the half cosine
        assert all(lrs[e] > lrs[e + 1] for e in range(start, end - 1))
    assert lrs[2] < 0.1 * 0.3 and lrs[32] < 0.1 * 0.01 and close(lrs[64], 0.0)


def test_cosine_restarts_of_report_003_from_0_1_to_1e_5():
    lrs = lr_curve({"name": "sgd", "lr": 0.1, "momentum": 0.9},
                   {"name": "cosine_restarts", "restarts": [11, 31, 71, 151, 311], "min_lr_ratio": 1e-4}, 310)
    for start, end in ((0, 11), (11, 31), (31, 71), (71, 151), (151, 310)):
        assert close(lrs[start], 0.1)
        assert lrs[end - 1] < 0.1 * (1 - math.cos(math.pi / (end - start))) + 1e-5 + 1e-9
    assert close(lrs[21], 1e-5 + (0.1 - 1e-5) * 0.5)  # the middle of the 11-31 cycle
    assert close(lrs[310], 1e-5)  # ends at the minimum; the restart after 311 epochs never comes
    assert min(lrs) >= 1e-5 - 1e-12


def test_cosine_warmup_in_epochs_of_report_002_distillation():
    lrs = lr_curve({"name": "sgd", "lr": 0.006, "momentum": 0.9},
                   {"name": "cosine_warmup", "warmup_epochs": 10, "min_lr_ratio": 0.0}, 120)
    assert lrs[0] < 0.006 * 0.02 and close(lrs[5], 0.006 * 51 / 100)
    assert close(lrs[10], 0.006) and close(lrs[65], 0.003) and close(lrs[120], 0.0)


def test_reduce_on_plateau_of_report_002_multiplies_by_0_4_after_3_epochs_without_improvement():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([param], {"name": "sgd", "lr": 0.008, "momentum": 0.9, "weight_decay": 1e-3})
    config = build_schedule(optimizer, {"name": "reduce_on_plateau", "factor": 0.4, "patience": 3}, 1000, 10)
    assert config["monitor"] == "val/loss" and config["interval"] == "epoch"
    sched = config["scheduler"]
    lrs = []
    for val_loss in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.96, 0.97, 0.98, 0.99, 0.5]:
        sched.step(val_loss)
        lrs.append(optimizer.param_groups[0]["lr"])
    # best 0.9 at epoch 2; the 4th epoch in a row without improvement (more than patience 3) reduces
    # the rate, and after four more it reduces again
    expected = [0.008] * 5 + [0.0032] * 4 + [0.00128] * 2
    assert all(close(a, b) for a, b in zip(lrs, expected)), lrs


def test_unknown_schedule_and_bad_arguments_are_user_errors():
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], {"name": "adam", "lr": 0.1})
    with pytest.raises(TinyAscError, match="unknown schedule"):
        build_schedule(optimizer, {"name": "triangle"}, 100, 10)
    with pytest.raises(TinyAscError, match="bad argument"):
        build_schedule(optimizer, {"name": "four_phase", "warmup": 3}, 100, 10)
    with pytest.raises(TinyAscError, match="bad argument"):
        build_schedule(optimizer, {"name": "reduce_on_plateau", "factor": 2.0}, 100, 10)


def test_null_clears_an_argument_inherited_from_the_default_schedule():
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], {"name": "sgd", "lr": 0.1, "weight_decay": None})
    assert optimizer.param_groups[0]["weight_decay"] == 0
    inherited = {"warmup_steps": 2000, "min_lr_ratio": 0.0}  # what a merge over DEFAULTS leaves behind
    with pytest.raises(TinyAscError, match="warmup_steps"):
        build_schedule(optimizer, {**inherited, "name": "four_phase"}, 100, 10)
    cleared = {"warmup_steps": None, "min_lr_ratio": None, "name": "four_phase"}
    assert build_schedule(optimizer, cleared, 100, 10)["interval"] == "step"
