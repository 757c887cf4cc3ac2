"""Channel groups: the channels a network can only lose together, and the surgery that removes them.

The network is traced with torch.fx and every tensor's channel axis (dim 1) is followed through
the graph. A conv (groups=1) or linear starts a new channel space; BN, blocks with declared
per-channel parameters (``channel_params``, e.g. GRN), activations, pooling and depthwise convs
pass it on; an elementwise add/mul joins the spaces of its operands (a residual
shortcut couples a block's output with its input). Each joined space is a group: its producers'
filters, its members' per-channel parameters and its consumers' input channels are cut together.

Anything the tracer does not understand (a grouped or shuffled conv, a concat, a reshape, an
attention product, a tensor constant) freezes the spaces it touches, so surgery never changes a
width such an op depends on. The model input and the logits are frozen too.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from tinyasc.base.errors import TinyAscError
from tinyasc.modelfile.shapes import channel_width

PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
                nn.LeakyReLU, nn.ELU, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AvgPool2d, nn.MaxPool2d,
                nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
PASS_FUNCTIONS = {torch.relu, torch.sigmoid, torch.tanh, nn.functional.relu, nn.functional.relu6,
                  nn.functional.silu, nn.functional.gelu, nn.functional.hardswish, nn.functional.dropout,
                  nn.functional.avg_pool2d, nn.functional.max_pool2d, nn.functional.adaptive_avg_pool2d,
                  nn.functional.adaptive_max_pool2d, "relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"}
JOIN_FUNCTIONS = {operator.add, operator.mul, operator.sub, operator.iadd, torch.add, torch.mul, torch.sub,
                  "add", "mul", "sub", "add_", "mul_"}
FLATTEN = {torch.flatten, "flatten"}


@dataclass
class ChannelGroup:
    width: int
    producers: list[str] = field(default_factory=list)  # convs / linears whose outputs are these channels
    members: list[str] = field(default_factory=list)  # BN, per-channel GRN, depthwise convs
    consumers: list[str] = field(default_factory=list)  # convs / linears that read these channels
    frozen: str | None = None  # why the group cannot be pruned

    @property
    def key(self) -> tuple:
        return tuple(self.producers)


def has_channel_params(m: nn.Module) -> bool:
    """A block that declares per-channel parameters (``channel_params``, channel axis 1), e.g. GRN."""
    return bool(getattr(type(m), "channel_params", ()))


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return has_channel_params(m) or super().is_leaf_module(m, qualname)


class _Spaces:
    """Union-find over channel spaces, each with its group's lists."""

    def __init__(self):
        self.parent: list[int] = []
        self.groups: list[ChannelGroup] = []

    def new(self, width: int, frozen: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.groups.append(ChannelGroup(width=width, frozen=frozen))
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def group(self, s: int) -> ChannelGroup:
        return self.groups[self.find(s)]

    def freeze(self, s: int, why: str) -> None:
        g = self.group(s)
        g.frozen = g.frozen or why

    def join(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            ga, gb = self.groups[a], self.groups[b]
            ga.producers += gb.producers
            ga.members += gb.members
            ga.consumers += gb.consumers
            ga.frozen = ga.frozen or gb.frozen
            self.parent[b] = a
        return a


def trace(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # control flow on tensor values, unsupported Python, ...
        raise TinyAscError(f"{type(model).__name__}: cannot trace the network for pruning "
                           f"({str(exc).splitlines()[0][:120]})") from None
    gm = torch.fx.GraphModule(model, graph)
    was_training = model.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    model.train(was_training)
    return gm


def _shape(node):
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def channel_groups(model: nn.Module, example: torch.Tensor) -> list[ChannelGroup]:
    """Every channel group of ``model`` for an input like ``example`` (batch of 1 or more)."""
    gm = trace(model, example)
    modules = dict(model.named_modules())
    spaces = _Spaces()
    space: dict = {}  # node -> space id
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1

    def out_space(node, frozen=None):
        shape = _shape(node)
        if shape is None:
            return None
        if len(shape) not in (2, 4):
            frozen = frozen or f"{node.name} has a {len(shape)}-d output"
        return spaces.new(shape[1] if len(shape) > 1 else 1, frozen)

    def freeze_inputs(node, why):
        for a in node.all_input_nodes:
            if space.get(a) is not None:
                spaces.freeze(space[a], why)

    for node in gm.graph.nodes:
        shape = _shape(node)
        inputs = [a for a in node.all_input_nodes if space.get(a) is not None]
        first = space[inputs[0]] if inputs else None
        if node.op == "placeholder":
            space[node] = out_space(node, "model input")
        elif node.op == "get_attr":
            space[node] = out_space(node, f"tensor constant {node.target}")
        elif node.op == "output":
            freeze_inputs(node, "model output")
        elif node.op == "call_module":
            name, m = node.target, modules[node.target]
            if calls[name] > 1:  # shared weights: each call would want its own cut
                freeze_inputs(node, f"{name} is called more than once")
                space[node] = out_space(node, f"{name} is called more than once")
            elif isinstance(m, nn.Conv2d) and first is not None:
                if m.groups == 1:
                    spaces.group(first).consumers.append(name)
                    space[node] = out_space(node)
                    spaces.group(space[node]).producers.append(name)
                elif m.groups == m.in_channels == m.out_channels:
                    spaces.group(first).members.append(name)
                    space[node] = first
                else:
                    spaces.freeze(first, f"grouped conv {name}")
                    space[node] = out_space(node, f"grouped conv {name}")
            elif isinstance(m, nn.Linear) and first is not None and shape is not None and len(shape) == 2:
                spaces.group(first).consumers.append(name)
                space[node] = out_space(node)
                spaces.group(space[node]).producers.append(name)
            elif (isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) or has_channel_params(m)) and first is not None:
                if not has_channel_params(m) or channel_width(m) > 1:  # a scalar-gamma GRN has nothing to cut
                    spaces.group(first).members.append(name)
                space[node] = first
            elif isinstance(m, PASS_MODULES) and first is not None and _same_channels(node, inputs[0]):
                space[node] = first
            else:
                freeze_inputs(node, f"{name} ({type(m).__name__})")
                space[node] = out_space(node, f"output of {name} ({type(m).__name__})")
        else:  # call_function / call_method
            target = node.target
            label = getattr(target, "__name__", str(target))
            if target in JOIN_FUNCTIONS and inputs and shape is not None:
                joined = [a for a in inputs if _shape(a) is not None and len(_shape(a)) == len(shape)
                          and _shape(a)[1] == shape[1]]
                for a in inputs:
                    if a not in joined:  # a broadcast operand (e.g. a [B, 1, F, T] gate) keeps its width
                        spaces.freeze(space[a], f"broadcast operand of {node.name}")
                if joined:
                    s = space[joined[0]]
                    for a in joined[1:]:
                        s = spaces.join(s, space[a])
                    space[node] = s
                else:
                    space[node] = out_space(node, f"{node.name} ({label})")
            elif target in PASS_FUNCTIONS and first is not None and _same_channels(node, inputs[0]):
                space[node] = first
            elif target in FLATTEN and first is not None and _flattens_pooled(node, inputs[0]):
                space[node] = first
            else:
                freeze_inputs(node, f"{node.name} ({label})")
                space[node] = out_space(node, f"{node.name} ({label})")
    roots = sorted({spaces.find(s) for s in space.values() if s is not None})
    return [spaces.groups[r] for r in roots]


def _same_channels(node, source) -> bool:
    a, b = _shape(node), _shape(source)
    return a is not None and b is not None and len(a) == len(b) and len(a) in (2, 4) and a[1] == b[1]


def _flattens_pooled(node, source) -> bool:
    """flatten(x, 1) of a globally pooled [B, C, 1, 1] map keeps the channel axis as it is."""
    src, out = _shape(source), _shape(node)
    start = node.kwargs.get("start_dim", node.args[1] if len(node.args) > 1 else 0)
    return src is not None and out is not None and len(src) == 4 and src[2:] == (1, 1) and start == 1 \
        and out == src[:2]


def prunable(groups: list[ChannelGroup]) -> list[ChannelGroup]:
    return [g for g in groups if g.frozen is None and g.producers and g.width > 1]


def filter_importance(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """L1 norm of each channel's filters, summed over the group's producers (each normalised to mean
    1, so a wide 3x3 conv does not outvote a 1x1 projection that shares its channels)."""
    modules = dict(model.named_modules())
    total = torch.zeros(group.width)
    for name in group.producers:
        w = modules[name].weight.detach().float()
        l1 = w.abs().reshape(w.shape[0], -1).sum(1)
        total += l1 / l1.mean().clamp_min(1e-12)
    return total


def _cut(param: nn.Parameter | None, keep: torch.Tensor, dim: int):
    if param is None:
        return None
    return nn.Parameter(param.detach().index_select(dim, keep).clone(), requires_grad=param.requires_grad)


def cut_group(model: nn.Module, group: ChannelGroup, keep: torch.Tensor) -> None:
    """Keep only channels ``keep`` (sorted indices) of ``group``, in place, across all its modules."""
    modules = dict(model.named_modules())
    keep = torch.as_tensor(keep, dtype=torch.long).sort().values
    n = len(keep)
    for name in group.producers:
        m = modules[name]
        m.weight = _cut(m.weight, keep, 0)
        m.bias = _cut(m.bias, keep, 0)
        if isinstance(m, nn.Conv2d):
            m.out_channels = n
        else:
            m.out_features = n
    for name in group.members:
        m = modules[name]
        if isinstance(m, nn.Conv2d):  # depthwise: one filter per channel
            m.weight, m.bias = _cut(m.weight, keep, 0), _cut(m.bias, keep, 0)
            m.in_channels = m.out_channels = m.groups = n
        elif has_channel_params(m):
            for pname in type(m).channel_params:
                setattr(m, pname, _cut(getattr(m, pname), keep, 1))
        else:
            m.weight, m.bias = _cut(m.weight, keep, 0), _cut(m.bias, keep, 0)
            if m.running_mean is not None:
                m.running_mean = m.running_mean.index_select(0, keep).clone()
                m.running_var = m.running_var.index_select(0, keep).clone()
            m.num_features = n
    for name in group.consumers:
        m = modules[name]
        m.weight = _cut(m.weight, keep, 1)
        if isinstance(m, nn.Conv2d):
            m.in_channels = n
        else:
            m.in_features = n
    group.width = n
