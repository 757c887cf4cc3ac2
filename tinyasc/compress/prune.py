"""``tinyasc prune``: iterative structured (filter) pruning with fine-tuning after each step.

At pruning rate r every prunable channel group keeps round((1 - r) x its original width) channels,
those whose filters have the largest L1 norm (Li et al., "Pruning filters for efficient ConvNets");
a group that feeds grouped convs keeps a multiple of their groups, the same channels in each.
The rate rises linearly over the steps, R x s / K, and the network is fine-tuned after each cut
(report 003: "iterative structured pruning ... retraining after each iteration"). The result is a
dense, narrower network of the same class: parameters and MACs fall for real. ``--target-params``
finds the final rate R whose network has at most that many parameters.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import check_output_file
from tinyasc.complexity import torchinfo_counts
from tinyasc.compress.channels import channel_groups, cut_group, filter_importance, prunable, select
from tinyasc.compress.finetune import finetune, module_around
from tinyasc.compress.quantize import float_record
from tinyasc.data.build import datamodule_for
from tinyasc.evaluation.evaluate import evaluate_predictor, summary
from tinyasc.evaluation.plots import plt, save_figure
from tinyasc.modelfile import Predictor, run_dir_of
from tinyasc.modelfile import format as artifact
from tinyasc.modelfile.shapes import changed_shapes

MAX_RATE = 0.95  # every group keeps at least 5 % of its channels (and at least one)


def widths_of(model, example, filters_only: bool = False) -> dict:
    """Original width of every prunable channel group, keyed by its producers. ``filters_only``
    leaves out groups made by linear layers (a dense hidden layer): only conv filters are pruned, as
    in report 003, whose 70 % of filters removed kept the 1024-unit dense layer."""
    groups = channel_groups(model, example)
    if not prunable(groups):
        frozen = (sorted({g.frozen for g in groups if g.frozen and g.width > 1 and g.producers})
                  or sorted({g.frozen for g in groups if g.frozen}))[:3]
        raise TinyAscError(f"{type(model).__name__}: no channel group can be pruned (every channel set feeds an op "
                           f"the pruner cannot narrow, e.g. {'; '.join(frozen)}); pruning follows channels through "
                           "convs (depthwise and grouped too), BN, GRN, residual adds, concatenations, padding, "
                           "up-sampling and reshapes, not through channel shuffles, channel splits or attention")
    modules = dict(model.named_modules())
    return {frozenset(g.producers): g.width for g in prunable(groups)
            if not filters_only or all(isinstance(modules[p], nn.Conv2d) for p in g.producers)}


def prune_to(model, original: dict, rate: float, example) -> None:
    """Cut every prunable group down to (1 - rate) of its original width, lowest L1 filters first."""
    for g in prunable(channel_groups(model, example)):
        width0 = original.get(frozenset(g.producers))
        if width0 is None:
            continue
        target = max(1, int(round(width0 * (1 - rate))))
        if g.width > g.blocks * max(1, int(round(target / g.blocks))):
            cut_group(model, g, select(filter_importance(model, g), g, target))


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def rate_for_params(model, original: dict, target: int, example) -> float:
    """The smallest pruning rate whose network has at most ``target`` parameters (bisection)."""
    def params_at(rate):
        trial = copy.deepcopy(model)
        prune_to(trial, original, rate, example)
        return count_params(trial)

    have = count_params(model)
    if have <= target:
        raise TinyAscError(f"--target-params {target:,}: the model already has {have:,} parameters")
    least = params_at(MAX_RATE)
    if least > target:
        raise TinyAscError(f"--target-params {target:,}: unreachable; pruning every group to "
                           f"{1 - MAX_RATE:.0%} of its channels still leaves {least:,} parameters")
    lo, hi = 0.0, MAX_RATE
    for _ in range(14):  # rate to within 0.95 / 2**14
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if params_at(mid) > target else (lo, mid)
    return hi


def prune_model(source, ratio: float | None = None, target_params: int | None = None, steps: int | None = None,
                finetune_epochs: int | None = None, lr: float | None = None, out=None, data_dir=None,
                progress: bool = True, filters_only: bool | None = None) -> dict:
    """Prune a float run; what the arguments leave open comes from the run's ``compress`` config section
    (``prune_ratio`` or ``prune_target_params``, ``prune_steps``, ``prune_finetune_epochs``,
    ``prune_lr``; the seed recipes fill it from their reports). ``filters_only``: see ``widths_of``."""
    if ratio is not None and target_params is not None:
        raise TinyAscError("prune: give exactly one of --ratio R or --target-params N")
    record, file = float_record(source)
    settings = cfgmod.compress_settings(record["hyper_parameters"]["config"])
    if ratio is None and target_params is None:
        ratio, target_params = settings["prune_ratio"], settings["prune_target_params"]
        if (ratio is None) == (target_params is None):
            raise TinyAscError(f"{file}: its config names no compress.prune_ratio or compress.prune_target_params; "
                               "give --ratio R or --target-params N")
    steps = settings["prune_steps"] if steps is None else steps
    finetune_epochs = settings["prune_finetune_epochs"] if finetune_epochs is None else finetune_epochs
    lr = settings["prune_lr"] if lr is None else lr
    filters_only = settings["prune_filters_only"] if filters_only is None else filters_only
    if ratio is not None and not 0 < ratio <= MAX_RATE:
        raise TinyAscError(f"--ratio {ratio}: must be in (0, {MAX_RATE}]")
    if steps < 1:
        raise TinyAscError(f"--steps {steps}: must be at least 1")
    out = check_output_file(out or run_dir_of(file) / "compressed" / f"{file.stem}-pruned.pt")  # before any work
    hyper, reference = record["hyper_parameters"], artifact.float_network(record)
    network = artifact.build_network(record, str(file))
    example = torch.zeros(artifact.input_shape(hyper["config"]))
    original = widths_of(network, example, filters_only)
    rate = ratio if ratio is not None else rate_for_params(network, original, target_params, example)
    module = module_around(record, network)
    start = Predictor(record, str(file))
    dm = datamodule_for(start.config, data_dir, "fit", progress)
    stage = "val" if len(dm.sets["val"]) else "test"
    lr = lr if lr is not None else 0.1 * hyper["config"]["optim"]["lr"]
    schedule = {"name": "cosine_warmup", "warmup_steps": 0, "min_lr_ratio": 0.0}

    def snapshot(step_rate):
        rec = artifact.network_record(module.model, hyper, shapes=changed_shapes(module.model, reference))
        pred = Predictor(rec, f"{file} pruned {step_rate:.0%}")
        params, macs = torchinfo_counts(pred.network, example.shape)
        m = evaluate_predictor(pred, dm, stage, progress)
        return rec, {"rate": step_rate, "params": params, "macs": macs, "macro_accuracy": m["macro_accuracy"],
                     "accuracy": m["accuracy"], "log_loss": m["log_loss"]}

    history = [snapshot(0.0)[1]]
    for s in range(1, steps + 1):
        step_rate = rate * s / steps
        module.model.cpu().eval()
        prune_to(module.model, original, step_rate, example)
        finetune(module, dm, finetune_epochs, lr, schedule, progress)
        module.model.eval()
        final, point = snapshot(step_rate)
        history.append(point)
    artifact.save(out, final)
    pruned = Predictor(artifact.read(out)["model"], str(out))
    float_m, pruned_m = evaluate_predictor(start, dm, "test", progress), evaluate_predictor(pruned, dm, "test", progress)
    plot = out.with_suffix(".png")
    plot_pruning(history, plot, title=f"{hyper['config']['model']['name']}: {stage} accuracy against pruning rate",
                 stage=stage)
    info = {"source": str(file), "output": str(out), "plot": str(plot), "rate": rate, "steps": steps,
            "finetune_epochs": finetune_epochs, "lr": lr, "filters_only": filters_only, "history_stage": stage,
            "history": history,
            "float": {**summary(float_m), "complexity": start.complexity()},
            "compressed": {**summary(pruned_m), "complexity": pruned.complexity()}}
    artifact.save(out, final, info)
    return info


def plot_pruning(history: list[dict], path: Path, title: str = "", stage: str = "val") -> None:
    """Accuracy, parameters and MACs against pruning rate on twin axes (report 003, Figure 3, which
    plots accuracy and parameters; the MACs are tinyasc's addition)."""
    rates = [100 * h["rate"] for h in history]
    fig, ax = plt.subplots(figsize=(6.6, 3.6))
    fig.subplots_adjust(right=0.78)
    ax.plot(rates, [100 * h["macro_accuracy"] for h in history], "o-", color="tab:blue",
            label=f"{stage} macro accuracy")
    ax.set_xlabel("pruning rate (% of filters removed per group)")
    ax.set_ylabel("macro accuracy (%)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(rates, [h["params"] / 1000 for h in history], "s--", color="tab:red", label="parameters")
    ax2.set_ylabel("parameters (k)", color="tab:red")
    ax2.set_ylim(bottom=0)
    ax3 = ax.twinx()
    ax3.spines["right"].set_position(("axes", 1.14))
    ax3.plot(rates, [h["macs"] / 1e6 for h in history], "^:", color="tab:green", label="MACs")
    ax3.set_ylabel("MACs (M)", color="tab:green")
    ax3.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.legend(loc="lower left", bbox_to_anchor=(0.12, 0.15), fontsize=8)
    save_figure(fig, path)
