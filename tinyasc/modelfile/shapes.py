"""Layer shapes: what a pruned network records so it can be rebuilt from its config.

Pruning narrows layers in place; a model file stores the widths that differ from the registered
architecture (``changed_shapes``), and loading narrows a freshly built network to them
(``apply_shapes``) before its weights are loaded strictly.

The layer kinds pruning narrows, and what is recorded of each:

- ``Conv2d``: in, out and groups (a depthwise conv keeps groups == in; out may be a multiple of in);
- ``Linear``: in and out;
- ``BatchNorm1d`` / ``BatchNorm2d`` (subclasses too, e.g. one without scale and offset): out;
- a block that declares per-channel parameters (``channel_params``, channel axis 1, e.g. GRN): out.

Padding, up-sampling, pooling, activations and concatenations have no width of their own. A
recorded shape for any other kind of layer is refused when a file is loaded.
"""
from __future__ import annotations

import torch
from torch import nn

from tinyasc.base.errors import TinyAscError


def channel_width(m: nn.Module) -> int:
    """Width of a block's declared per-channel parameters (1 when they are shared scalars)."""
    return getattr(m, type(m).channel_params[0]).shape[1]


def layer_shapes(model: nn.Module) -> dict[str, dict]:
    shapes = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            shapes[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.Linear):
            shapes[name] = {"in": m.in_features, "out": m.out_features}
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            shapes[name] = {"out": m.num_features}
        elif getattr(type(m), "channel_params", ()):
            shapes[name] = {"out": channel_width(m)}
    return shapes


def changed_shapes(model: nn.Module, reference: nn.Module) -> dict[str, dict]:
    """Shapes of ``model``'s layers that differ from those of an unpruned ``reference``."""
    ref = layer_shapes(reference)
    return {name: s for name, s in layer_shapes(model).items() if ref.get(name) != s}


def _kind(m: nn.Module) -> tuple[str, ...] | None:
    """The keys recorded for a layer of this kind, None for a kind pruning does not narrow."""
    if isinstance(m, nn.Conv2d):
        return ("in", "out", "groups")
    if isinstance(m, nn.Linear):
        return ("in", "out")
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) or getattr(type(m), "channel_params", ()):
        return ("out",)
    return None


def apply_shapes(model: nn.Module, shapes: dict[str, dict]) -> nn.Module:
    """Resize ``model``'s layers to recorded ``shapes`` (values are loaded afterwards)."""
    modules = dict(model.named_modules())
    for name, s in shapes.items():
        m = modules.get(name)
        if m is None:
            raise TinyAscError(f"pruned layer {name!r} does not exist in {type(model).__name__}")
        keys = _kind(m)
        if keys is None:
            raise TinyAscError(f"pruned layer {name!r} is a {type(m).__name__}, a kind of layer pruning does "
                               "not narrow")
        if not isinstance(s, dict) or not all(isinstance(s.get(k), int) and s[k] > 0 for k in keys):
            raise TinyAscError(f"pruned layer {name!r}: shape {s!r} needs positive integers {', '.join(keys)}")
        out = s["out"]
        if isinstance(m, nn.Conv2d):
            if s["in"] % s["groups"] or out % s["groups"]:
                raise TinyAscError(f"pruned layer {name!r}: {s['in']} -> {out} channels do not split into "
                                   f"{s['groups']} groups")
            m.in_channels, m.out_channels, m.groups = s["in"], out, s["groups"]
            m.weight = nn.Parameter(torch.empty(out, s["in"] // s["groups"], *m.kernel_size))
            m.bias = nn.Parameter(torch.empty(out)) if m.bias is not None else None
        elif isinstance(m, nn.Linear):
            m.in_features, m.out_features = s["in"], out
            m.weight = nn.Parameter(torch.empty(out, s["in"]))
            m.bias = nn.Parameter(torch.empty(out)) if m.bias is not None else None
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.num_features = out
            if m.affine:
                m.weight, m.bias = nn.Parameter(torch.empty(out)), nn.Parameter(torch.empty(out))
            if m.track_running_stats:
                m.running_mean, m.running_var = torch.zeros(out), torch.ones(out)
        else:
            for pname in type(m).channel_params:
                old = getattr(m, pname)
                setattr(m, pname, nn.Parameter(torch.empty(old.shape[0], out, *old.shape[2:])))
    return model
