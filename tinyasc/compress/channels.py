"""Channel groups: the channels a network can only lose together, and the surgery that removes them.

The network is traced with torch.fx and every tensor's channel axis (dim 1) is followed through
the graph as a *layout*: the channel spaces it is made of, in order, each with a factor (how many
consecutive channels one channel of the space became). Most tensors are one space with factor 1.

- A conv (groups=1) or linear starts a new channel space; it is the space's producer and a consumer
  of its input's spaces.
- BN, blocks with declared per-channel parameters (``channel_params``, e.g. GRN) and depthwise convs
  are members: they keep the layout (a depthwise conv with a channel multiplier m multiplies its
  factors by m).
- A grouped conv (G groups, not depthwise) is a consumer and a producer too, but each of G equal
  blocks of its input and output channels must lose the same channels (its weights are shared
  per block): the group records ``blocks`` and the cut keeps the same local channels in every block
  (``select``), as Torch-Pruning does.
- Activations, dropout, pooling, zero padding, up-sampling, slices that keep every channel, and
  reductions over frequency or time keep the layout. A statistic over the channels (ResNorm's
  var_mean, a mean over dim 1) adapts to any width and couples nothing.
- An elementwise add/mul and a concatenation along frequency or time join the spaces of their
  operands (a residual shortcut couples a block's output with its input).
- A concatenation along the channels lays its inputs' spaces side by side: a consumer or a BN after
  it is cut in the matching slice of each input.
- A flatten or reshape that keeps the batch axis and moves whole spatial axes into the channels
  multiplies the factors (dcase22_baseline's flatten before its dense layer; SubSpectralNorm's fold
  of sub-bands into the channels), one that moves them back divides them; its channel size must be
  read from the tensor, not written as a constant.

Each joined space is a group: its producers' filters, its members' per-channel parameters and its
consumers' input channels are cut together. Anything the tracer cannot keep consistent freezes the
spaces it touches, with a reason: a channel shuffle (its reshape puts the group axis where the
channels were), a split or chunk of the channels, a transpose of the channel axis, a grouped conv
over a concatenation, attention products, tensor constants, a module called twice. The model input
and the logits are frozen too.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from tinyasc.base.errors import TinyAscError
from tinyasc.modelfile.shapes import channel_width

F = nn.functional
PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
                nn.LeakyReLU, nn.ELU, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AvgPool2d, nn.MaxPool2d,
                nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                # they keep the channels: padding and up-sampling work on frequency and time only
                nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.Upsample)
PASS_FUNCTIONS = {torch.relu, torch.sigmoid, torch.tanh, F.relu, F.relu6, F.silu, F.gelu, F.hardswish,
                  F.hardsigmoid, F.sigmoid, F.leaky_relu, F.elu, F.dropout, F.dropout2d, F.avg_pool2d,
                  F.max_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.pad, F.interpolate,
                  torch.rsqrt, torch.sqrt, torch.exp, torch.log, torch.abs, "relu", "relu_", "sigmoid", "sigmoid_",
                  "tanh", "rsqrt", "sqrt", "exp", "log", "abs", "contiguous", "clone", "float", "half"}
JOIN_FUNCTIONS = {operator.add, operator.mul, operator.sub, operator.truediv, operator.iadd, torch.add, torch.mul,
                  torch.sub, "add", "mul", "sub", "div", "add_", "mul_"}
REDUCTIONS = {"mean", "sum", "amax", "amin", "var", "std", "var_mean", "std_mean", "norm", "logsumexp"}
SHAPE_READS = {"shape", "dtype", "device", "ndim"}  # reading them neither narrows nor couples anything


class Axis:
    """One channel axis of one module (a conv's input, a BN's features): the sizes of the segments it
    is made of, in order. The groups of one analysis share it, so a cut moves the others' offsets."""

    def __init__(self, sizes: list[int]):
        self.sizes = list(sizes)


@dataclass
class Slot:
    """Where a group's channels sit on a module's axis: segment ``index``, ``factor`` channels each."""
    axis: Axis
    index: int
    factor: int = 1

    def take(self, keep: torch.Tensor) -> torch.Tensor:
        """Indices along the whole axis that survive keeping the group's channels ``keep``."""
        offset, size, total = sum(self.axis.sizes[:self.index]), self.axis.sizes[self.index], sum(self.axis.sizes)
        inner = (keep[:, None] * self.factor + torch.arange(self.factor)).flatten() + offset
        return torch.cat([torch.arange(offset), inner, torch.arange(offset + size, total)])


@dataclass
class ChannelGroup:
    width: int
    producers: list[str] = field(default_factory=list)  # convs / linears whose outputs are these channels
    members: list[str] = field(default_factory=list)  # BN, per-channel GRN, depthwise convs
    consumers: list[str] = field(default_factory=list)  # convs / linears that read these channels
    frozen: str | None = None  # why the group cannot be pruned
    slots: dict[str, list[Slot]] = field(default_factory=dict)  # member / consumer -> where the channels sit
    blocks: int = 1  # grouped convs: every one of ``blocks`` equal blocks keeps the same local channels

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
            for role in ("producers", "members", "consumers"):
                mine = getattr(ga, role)
                mine += [n for n in getattr(gb, role) if n not in mine]
            for name, slots in gb.slots.items():
                ga.slots.setdefault(name, []).extend(slots)
            ga.frozen = ga.frozen or gb.frozen
            ga.blocks = math.lcm(ga.blocks, gb.blocks)
            self.parent[b] = a
        return a

    # Layouts: tuples of (space, factor), the segments of a tensor's channel axis in order.
    def freeze_layout(self, layout, why: str) -> None:
        for s, _ in layout:
            self.freeze(s, why)

    def attach(self, layout, name: str, role: str, scale: int = 1) -> None:
        """``name`` reads (role "consumers") or carries (role "members") the channels of ``layout``;
        ``scale`` multiplies every factor on the module's own axis (a depthwise channel multiplier)."""
        axis = Axis([self.group(s).width * f * scale for s, f in layout])
        for i, (s, f) in enumerate(layout):
            g = self.group(s)
            names = getattr(g, role)
            if name not in names:
                names.append(name)
            g.slots.setdefault(name, []).append(Slot(axis, i, f * scale))

    def join_layouts(self, layouts):
        """One layout for operands that must keep the same channels (a residual add, a concat along
        time); None when their segments do not line up (the caller freezes them)."""
        first = layouts[0]
        for other in layouts[1:]:
            if len(other) != len(first) or any(fa != fb or self.group(a).width != self.group(b).width
                                               for (a, fa), (b, fb) in zip(first, other)):
                return None
        for other in layouts[1:]:
            for (a, _), (b, _) in zip(first, other):
                self.join(a, b)
        return first


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
    meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _label(target) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _arg(node, pos: int, name: str, default=None):
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[pos] if len(node.args) > pos else default


def _dims(dim, rank: int) -> set[int] | None:
    if dim is None:
        return set(range(rank))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    if not all(isinstance(d, int) for d in dims):
        return None
    return {d % rank for d in dims}


def channel_groups(model: nn.Module, example: torch.Tensor) -> list[ChannelGroup]:
    """Every channel group of ``model`` for an input like ``example`` (batch of 1 or more)."""
    gm = trace(model, example)
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    walk = _Walk()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            walk.layout[node] = walk.new(node, "model input")
        elif node.op == "get_attr":
            walk.layout[node] = walk.new(node, f"tensor constant {node.target}")
        elif node.op == "output":
            walk.freeze_inputs(node, "model output")
        elif node.op == "call_module":
            m = modules[node.target]
            walk.layout[node] = (walk.refuse(node, f"{node.target} is called more than once")  # shared weights
                                 if calls[node.target] > 1 else walk.module(node, m))
        else:
            walk.layout[node] = walk.function(node, _label(node.target))
    spaces = walk.spaces
    roots = sorted({spaces.find(s) for layout in walk.layout.values() if layout for s, _ in layout})
    groups = [spaces.groups[r] for r in roots]
    for g in groups:
        if g.width % g.blocks and not g.frozen:
            g.frozen = f"grouped convs need {g.blocks} equal blocks of its {g.width} channels"
    return groups


class _Walk:
    """The layout of every node, found in graph order."""

    def __init__(self):
        self.spaces = _Spaces()
        self.layout: dict = {}  # node -> layout of its channel axis (None: no tensor with channels)
        self.tuples: dict = {}  # node -> layout of every tensor of a tuple (a split along time, var_mean)
        self.statistics: set = set()  # tuples of statistics over the channels (var_mean over dim 1)

    def new(self, node, frozen=None):
        """A new space for ``node``'s channels (frozen when its output is not [B, C] or [B, C, F, T])."""
        shape = _shape(node)
        if shape is None:
            return None
        if len(shape) not in (2, 4):
            frozen = frozen or f"{node.name} has a {len(shape)}-d output"
        return ((self.spaces.new(shape[1] if len(shape) > 1 else 1, frozen), 1),)

    def freeze_inputs(self, node, why):
        for a in node.all_input_nodes:
            if self.layout.get(a) is not None:
                self.spaces.freeze_layout(self.layout[a], why)

    def refuse(self, node, why):
        """An op the analysis cannot narrow: its inputs' channels and its output's stay as they are."""
        self.freeze_inputs(node, why)
        return self.new(node, why)

    def produce(self, node, name, layout):
        """A conv or linear: a consumer of its input's spaces and the producer of a new one."""
        self.spaces.attach(layout, name, "consumers")
        out = self.new(node)
        self.spaces.group(out[0][0]).producers.append(name)
        return out

    def module(self, node, m):
        name, shape = node.target, _shape(node)
        label = f"{name} ({type(m).__name__})"
        src = node.args[0] if node.args else None
        first = self.layout.get(src) if isinstance(src, torch.fx.Node) and len(node.all_input_nodes) == 1 else None
        if first is None:
            return self.refuse(node, label)
        if isinstance(m, nn.Conv2d):
            if m.groups == 1:
                return self.produce(node, name, first)
            if m.groups == m.in_channels and m.out_channels % m.in_channels == 0:  # depthwise (x multiplier)
                mult = m.out_channels // m.in_channels
                self.spaces.attach(first, name, "members", mult)
                return tuple((s, f * mult) for s, f in first)
            if len(first) != 1 or first[0][1] != 1:
                return self.refuse(node, f"grouped conv {name} over a concatenation or reshape")
            inp = self.spaces.group(first[0][0])
            inp.blocks = math.lcm(inp.blocks, m.groups)
            out = self.produce(node, name, first)
            self.spaces.group(out[0][0]).blocks = m.groups
            return out
        if isinstance(m, nn.Linear) and shape is not None and len(shape) == 2:
            return self.produce(node, name, first)
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) or has_channel_params(m):
            if not has_channel_params(m) or channel_width(m) > 1:  # a scalar-gamma GRN has nothing to cut
                self.spaces.attach(first, name, "members")
            return first
        if isinstance(m, PASS_MODULES) and _same_channels(node, src):
            return first
        if isinstance(m, nn.Flatten):
            return self.reshape(node, first, m.start_dim, m.end_dim, label)
        return self.refuse(node, label)

    def function(self, node, label):
        shape, target = _shape(node), node.target
        where = f"{node.name} ({label})"
        src = node.args[0] if node.args else None
        first = self.layout.get(src) if isinstance(src, torch.fx.Node) else None
        if label == "getattr" and len(node.args) > 1 and node.args[1] in SHAPE_READS or label in ("size", "dim"):
            return None
        if label == "getitem" and isinstance(src, torch.fx.Node):
            if src in self.tuples and isinstance(node.args[1], int):
                return self.tuples[src]
            if src in self.statistics:
                return self.new(node)
            if first is None:  # an item of a shape or of a tuple the analysis does not follow
                return self.refuse(node, where)
            if _keeps_channels(node.args[1], _shape(src), shape):
                return first
            return self.refuse(node, f"{where} slices the channels")
        if target in JOIN_FUNCTIONS and shape is not None and len(shape) >= 2:
            return self.join(node, where)
        if label == "cat":
            return self.cat(node, where)
        if first is None:  # arithmetic on sizes, factories, an op on a tensor without channels
            return self.refuse(node, where)
        if target in PASS_FUNCTIONS and _same_channels(node, src):
            return first
        rank = len(_shape(src))
        if label in REDUCTIONS:
            dims = _dims(_arg(node, 2 if label == "norm" else 1, "dim"), rank)
            if dims is None or 0 in dims:
                return self.refuse(node, f"{where} reduces over the batch")
            if 1 in dims:  # a statistic over the channels: any width gives one, nothing to cut
                if shape is None:
                    self.statistics.add(node)
                return self.new(node)
            if shape is None:  # var_mean / std_mean: two tensors with the input's channels
                self.tuples[node] = first
                return None
            return first if len(shape) in (2, 4) else self.refuse(node, f"{where} has a {len(shape)}-d output")
        if label == "flatten":
            return self.reshape(node, first, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1), where)
        if label in ("reshape", "view"):
            if shape is None or len(shape) not in (2, 4):  # e.g. a channel shuffle's [B, G, C / G, F, T]
                return self.refuse(node, f"{where} gives a {len(shape) if shape else '?'}-d view of the channels")
            sizes = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (tuple, list)) else node.args[1:]
            if len(sizes) < 2 or not self.reads_width(sizes[1], first):
                return self.refuse(node, f"{where}: its channel count is not read from the tensor")
            return self.reshape(node, first, None, None, where)
        if label in ("transpose", "permute"):
            dims = node.args[1:] if label == "transpose" or not isinstance(node.args[1], (tuple, list)) \
                else node.args[1]
            if not all(isinstance(d, int) for d in dims):
                return self.refuse(node, where)
            dims = [d % rank for d in dims]
            moved = set(dims) & {0, 1} if label == "transpose" else {i for i, d in enumerate(dims) if d != i} & {0, 1}
            return first if not moved else self.refuse(node, f"{where} moves the channel axis")
        if label in ("split", "chunk", "tensor_split"):
            dim = _arg(node, 2, "dim", 0)
            if isinstance(dim, int) and dim % rank > 1:  # along frequency or time: every part has the channels
                self.tuples[node] = first
                return None
            return self.refuse(node, f"{where} splits the channels (every part would need the same cut)")
        return self.refuse(node, where)

    def join(self, node, where):
        """Elementwise ops: operands with the output's channels are joined; a broadcast operand (a
        [B, 1, F, T] gate, a channel statistic) keeps its width and couples nothing."""
        shape = _shape(node)
        joined = []
        for a in node.all_input_nodes:
            a_shape = _shape(a)
            if a_shape is None or self.layout.get(a) is None:
                continue
            pos = 1 - (len(shape) - len(a_shape))  # where the output's channel axis falls in this operand
            if pos < 0 or (a_shape[pos] == 1 and shape[1] != 1):
                self.spaces.freeze_layout(self.layout[a], f"broadcast operand of {node.name}")
            elif len(a_shape) == len(shape) and a_shape[1] == shape[1]:
                joined.append(self.layout[a])
            else:
                return self.refuse(node, f"{where}: {a.name} broadcasts along the channels")
        if not joined:
            return self.refuse(node, where)
        layout = self.spaces.join_layouts(joined)
        return layout if layout is not None else self.refuse(node, f"{where}: operands of different channel layouts")

    def cat(self, node, where):
        tensors, shape = node.args[0], _shape(node)
        dim = _arg(node, 1, "dim", 0)
        if shape is None or not isinstance(tensors, (list, tuple)) or not isinstance(dim, int) \
                or any(self.layout.get(t) is None for t in tensors):
            return self.refuse(node, where)
        dim %= len(shape)
        layouts = [self.layout[t] for t in tensors]
        if dim == 1:  # the output's channel axis is the inputs' spaces side by side
            return tuple(seg for layout in layouts for seg in layout)
        if dim == 0:
            return self.refuse(node, f"{where} concatenates along the batch")
        layout = self.spaces.join_layouts(layouts)  # along frequency or time: the inputs keep the same channels
        return layout if layout is not None else self.refuse(node, f"{where}: inputs of different channel layouts")

    def reads_width(self, size, layout) -> bool:
        """A reshape's channel size that follows the input's width: -1, or x.shape[1] / x.size(1) of a
        tensor with the same channel spaces, times or divided by a constant."""
        if size == -1:
            return True
        if not isinstance(size, torch.fx.Node):
            return False
        label = _label(size.target)
        if label in ("mul", "floordiv"):
            nodes = [a for a in size.args if isinstance(a, torch.fx.Node)]
            return (len(nodes) == 1 and all(isinstance(a, (int, torch.fx.Node)) for a in size.args)
                    and (label == "mul" or size.args[0] is nodes[0]) and self.reads_width(nodes[0], layout))
        tensor = None
        if label == "getitem" and size.args[1] == 1 and isinstance(size.args[0], torch.fx.Node):
            holder = size.args[0]
            if _label(holder.target) == "getattr" and holder.args[1] == "shape" or \
                    _label(holder.target) == "size" and len(holder.args) == 1 and not holder.kwargs:
                tensor = holder.args[0]
        elif label == "size" and _arg(size, 1, "dim") == 1:
            tensor = size.args[0]
        if self.layout.get(tensor) is None:
            return False
        find = self.spaces.find
        return {find(s) for s, _ in self.layout[tensor]} == {find(s) for s, _ in layout}

    def reshape(self, node, layout, start_dim, end_dim, where):
        """A reshape that keeps the batch axis: whole channels move into or out of spatial axes, so
        each channel of a space stays a run of consecutive channels (row-major order)."""
        a, b = _shape(node.args[0]), _shape(node)
        if b is None or len(a) < 2 or len(b) not in (2, 4) or a[0] != b[0]:
            return self.refuse(node, f"{where} mixes the batch and channel axes")
        if start_dim is not None and (start_dim % len(a) != 1 or end_dim % len(a) != len(a) - 1):
            return self.refuse(node, f"{where} flattens the batch axis or leaves axes out")
        if b[1] % a[1] == 0:
            k = b[1] // a[1]
            return tuple((s, f * k) for s, f in layout)
        k = a[1] // b[1] if a[1] % b[1] == 0 else 0
        if k and all(f % k == 0 for _, f in layout):
            return tuple((s, f // k) for s, f in layout)
        return self.refuse(node, f"{where} splits channels across positions")


def _keeps_channels(index, src_shape, shape) -> bool:
    """``x[index]`` keeps the batch and every channel (a slice along frequency or time, or a channel
    slice longer than the axis) and its rank."""
    if src_shape is None or shape is None or len(src_shape) != len(shape):
        return False
    index = index if isinstance(index, tuple) else (index,)
    if not all(isinstance(i, slice) for i in index):
        return False

    def whole(s, size):
        return s.start in (None, 0) and s.step in (None, 1) and (s.stop is None or (isinstance(s.stop, int)
                                                                                     and s.stop >= size))
    return whole(index[0], src_shape[0]) and (len(index) < 2 or whole(index[1], src_shape[1]))


def _same_channels(node, source) -> bool:
    a, b = _shape(node), _shape(source)
    return a is not None and b is not None and len(a) == len(b) and len(a) in (2, 4) and a[1] == b[1]


def prunable(groups: list[ChannelGroup]) -> list[ChannelGroup]:
    return [g for g in groups if g.frozen is None and g.producers and g.width > g.blocks]


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


def select(importance: torch.Tensor, group: ChannelGroup, target: int) -> torch.Tensor:
    """The ``target`` most important channels of ``group`` (rounded to a multiple of its blocks): the
    same local channels in every block, chosen by their importance summed over the blocks."""
    blocks = group.blocks
    per_block = max(1, int(round(target / blocks)))
    local = importance.reshape(blocks, -1).sum(0).topk(per_block).indices.sort().values
    return (local[None, :] + torch.arange(blocks)[:, None] * (group.width // blocks)).flatten()


def _cut(param: nn.Parameter | None, keep: torch.Tensor, dim: int):
    if param is None:
        return None
    return nn.Parameter(param.detach().index_select(dim, keep).clone(), requires_grad=param.requires_grad)


def cut_group(model: nn.Module, group: ChannelGroup, keep: torch.Tensor) -> None:
    """Keep only channels ``keep`` (sorted indices) of ``group``, in place, across all its modules
    (for a group with ``blocks`` > 1, the same local channels of every block: see ``select``)."""
    modules = dict(model.named_modules())
    keep = torch.as_tensor(keep, dtype=torch.long).sort().values
    n = len(keep)
    if group.blocks > 1:  # checked before anything changes
        size = group.width // group.blocks
        local = keep[keep < size]
        if not torch.equal(keep, (local[None, :] + torch.arange(group.blocks)[:, None] * size).flatten()):
            raise TinyAscError(f"channels {keep.tolist()} of a group of grouped convs: every one of its "
                               f"{group.blocks} blocks must keep the same channels (see select)")
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
        for slot in group.slots[name]:
            idx = slot.take(keep)
            if isinstance(m, nn.Conv2d):  # depthwise: one filter (or ``mult``) per channel
                mult = m.out_channels // m.in_channels
                m.weight, m.bias = _cut(m.weight, idx, 0), _cut(m.bias, idx, 0)
                m.out_channels = len(idx)
                m.in_channels = m.groups = len(idx) // mult
            elif has_channel_params(m):
                for pname in type(m).channel_params:
                    setattr(m, pname, _cut(getattr(m, pname), idx, 1))
            else:
                m.weight, m.bias = _cut(m.weight, idx, 0), _cut(m.bias, idx, 0)
                if m.running_mean is not None:
                    m.running_mean = m.running_mean.index_select(0, idx).clone()
                    m.running_var = m.running_var.index_select(0, idx).clone()
                m.num_features = len(idx)
            slot.axis.sizes[slot.index] = n * slot.factor
    for name in group.consumers:
        m = modules[name]
        for slot in group.slots[name]:
            idx = slot.take(keep)
            if isinstance(m, nn.Conv2d) and m.groups > 1:  # grouped: the same local channels of every block
                m.weight = _cut(m.weight, keep[keep < group.width // m.groups], 1)
                m.in_channels = n
                slot.axis.sizes[slot.index] = n * slot.factor
                continue
            m.weight = _cut(m.weight, idx, 1)
            if isinstance(m, nn.Conv2d):
                m.in_channels = len(idx)
            else:
                m.in_features = len(idx)
            slot.axis.sizes[slot.index] = n * slot.factor
    group.width = n
