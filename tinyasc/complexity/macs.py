"""tinyasc's MAC counter: torchinfo's rules for conv nets, real counts for token models.

DCASE's counter (torchinfo 1.8, see ``tinyasc.complexity.counts``) charges each leaf module with a
``weight``/``bias``: a conv its parameters x output positions, any other such module its parameter
count once per sample. That is exact for conv nets, but a Linear applied to a token tensor
[B, T, d] is charged once instead of T times, and functional matmuls (attention q @ k^T, attn @ v,
``F.scaled_dot_product_attention``) are charged nothing.

``count_macs`` keeps torchinfo's rule for every leaf module except Linear and LayerNorm, which it
charges once per token, and adds the matmul-type aten ops (mm, addmm, bmm, baddbmm, convolution,
fused scaled-dot-product attention) that run outside a leaf module already charged by those rules.
On a conv net it returns exactly torchinfo's ``total_mult_adds``. Softmax, norms' arithmetic,
activations, pooling and adds stay uncounted, as in torchinfo.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from tinyasc.base.errors import TinyAscError
from tinyasc.base.tables import format_table


@dataclass
class LayerMacs:
    """One row of the breakdown: a leaf module, or the ops run directly in a module's forward."""

    name: str  # module path; "" is the model's own forward code
    kind: str  # conv | linear | params (other weighted module) | matmul | conv-op | attention
    calls: int
    macs: int  # counted by tinyasc
    torchinfo_macs: int  # what torchinfo 1.8 counts for the same row


OP_KINDS = ("matmul", "conv-op", "attention")  # rows charged for aten ops, not for a module


def count_macs(model: nn.Module, input_shape, functional: bool = True) -> int:
    """MACs of one forward pass on a zero input of ``input_shape`` ((C, F, T) means batch 1).

    ``functional=False`` leaves out the aten-op rows (attention matmuls and the like) and keeps
    the module rules only, Linear per token: what torchinfo reports for the same model written
    with its tokens first ([T, B, d], as the public Mobile-Former code does).
    """
    rows = layer_macs(model, input_shape)
    return sum(row.macs for row in rows if functional or row.kind not in OP_KINDS)


def layer_macs(model: nn.Module, input_shape) -> list[LayerMacs]:
    """Per-row MAC breakdown in execution order (repeated calls of a module are summed)."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) < 2 or min(shape) < 1:
        raise TinyAscError(f"input shape {tuple(input_shape)}: expected (C, F, T) or (B, C, F, T) with positive sizes")
    rows: dict[tuple[str, str], LayerMacs] = {}
    stack: list[str] = []  # paths of the modules running now
    inside_charged = 0  # >0 while a leaf charged by the module rules runs: its ops are already paid for

    def add(name, kind, macs, torchinfo_macs):
        row = rows.setdefault((name, kind), LayerMacs(name, kind, 0, 0, 0))
        row.calls += 1
        row.macs += macs
        row.torchinfo_macs += torchinfo_macs

    def pre_hook(module, args):
        nonlocal inside_charged
        stack.append(paths[id(module)])
        inside_charged += id(module) in charged_ids

    def post_hook(module, args, output):
        nonlocal inside_charged
        stack.pop()
        if id(module) in charged_ids:
            inside_charged -= 1
            out_shape = _first_shape(output)
            kind, macs = _module_rule(module, out_shape)
            add(paths[id(module)], kind, macs, _torchinfo_rule(module, out_shape))

    def on_op(kind, macs):
        if not inside_charged and macs:
            add(stack[-1] if stack else "", kind, macs, 0)

    paths = {id(module): path for path, module in model.named_modules()}
    # Leaves that torchinfo's rule charges (it looks only at leaves): their inner ops are not counted again.
    charged_ids = {id(m) for m in model.modules() if _is_leaf(m) and _torchinfo_rule(m, (1, 1)) > 0}
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    was_training = model.training
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.MultiheadAttention / TransformerEncoderLayer would run as one fused op in eval mode; the
    # plain path exposes their projections and matmuls to the counter.
    torch.backends.mha.set_fastpath_enabled(False)
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        x = torch.zeros(shape, device=device, dtype=dtype)
        with torch.no_grad(), _OpCounter(on_op):
            model(x)
    finally:
        model.train(was_training)
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for handle in handles:
            handle.remove()
    return list(rows.values())


def format_layer_table(rows: list[LayerMacs]) -> str:
    """Plain-text table of ``layer_macs`` rows with totals (for docs and the CLI)."""
    body = [[r.name or "(model)", r.kind, r.calls, f"{r.macs:,}", f"{r.torchinfo_macs:,}"] for r in rows]
    body.append(["total", "", "", f"{sum(r.macs for r in rows):,}", f"{sum(r.torchinfo_macs for r in rows):,}"])
    return format_table(["layer", "kind", "calls", "MACs", "torchinfo"], body, left=2)


def _is_leaf(module: nn.Module) -> bool:
    return not any(True for _ in module.children())


def _param_counts(module: nn.Module):
    """(name, count) per parameter, honouring torch.nn.utils.prune masks as torchinfo does."""
    for name, param in module.named_parameters():
        if name.endswith("_orig") and isinstance(getattr(module, name[:-5] + "_mask", None), torch.Tensor):
            yield name[:-5], int(getattr(module, name[:-5] + "_mask").sum())
        else:
            yield name, param.numel()


def _torchinfo_rule(module: nn.Module, out_shape) -> int:
    """torchinfo 1.8 LayerInfo.calculate_macs for a leaf module with output shape ``out_shape``."""
    if not out_shape:
        return 0
    macs = 0
    for name, count in _param_counts(module):
        if name in ("weight", "bias"):
            if "Conv" in type(module).__name__:  # torchinfo decides by class name
                macs += count * prod(out_shape[:1] + tuple(out_shape[2:]))
            else:
                macs += out_shape[0] * count
        elif "weight" in name or "bias" in name:  # RNN weight_ih_l0 and friends
            macs += prod(out_shape[:2]) * count
    return macs


def _module_rule(module: nn.Module, out_shape) -> tuple[str, int]:
    if isinstance(module, (nn.Linear, nn.LayerNorm)):
        # Both act on the trailing dims: once per token, whatever dims sit before them.
        n_feature_dims = 1 if isinstance(module, nn.Linear) else len(module.normalized_shape)
        kind = "linear" if isinstance(module, nn.Linear) else "params"
        return kind, sum(c for _, c in _param_counts(module)) * prod(out_shape[:-n_feature_dims])
    kind = "conv" if "Conv" in type(module).__name__ else "params"
    return kind, _torchinfo_rule(module, out_shape)


def _first_shape(output) -> tuple:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (list, tuple)) and output:
        return _first_shape(output[0])
    return ()


class _OpCounter(TorchDispatchMode):
    """Calls ``on_op(kind, macs)`` for each matmul-type aten op; everything else passes through."""

    def __init__(self, on_op):
        super().__init__()
        self.on_op = on_op

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in _OP_RULES:
            kind, rule = _OP_RULES[name]
            self.on_op(kind, rule(args, out))
        elif name.startswith("_scaled_dot_product_") and "backward" not in name:
            self.on_op("attention", _sdpa_macs(args))
        return out


def _mm(args, out):  # [n, k] @ [k, m]
    return args[0].shape[0] * args[0].shape[1] * args[1].shape[1]


def _bmm(args, out):  # [b, n, k] @ [b, k, m]
    return args[0].shape[0] * args[0].shape[1] * args[0].shape[2] * args[1].shape[2]


def _addmm(args, out):  # bias + a @ b: the bias costs one MAC per output, as torchinfo charges biases
    return _mm(args[1:], out) + out.numel()


def _baddbmm(args, out):
    return _bmm(args[1:], out) + out.numel()


def _convolution(args, out):
    x, weight, bias, transposed = args[0], args[1], args[2], args[6]
    per_position = weight.numel() // weight.shape[0]  # Cin/groups * k (Cout/groups * k if transposed)
    macs = (x.numel() if transposed else out.numel()) * per_position
    return macs + (out.numel() if bias is not None else 0)


def _sdpa_macs(args) -> int:
    q, k, v = args[:3]  # [..., L, E], [..., S, E], [..., S, Ev]
    batch_heads = prod(q.shape[:-2])
    return batch_heads * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


_OP_RULES = {
    "mm": ("matmul", _mm),
    "addmm": ("matmul", _addmm),
    "bmm": ("matmul", _bmm),
    "baddbmm": ("matmul", _baddbmm),
    "convolution": ("conv-op", _convolution),
    "_convolution": ("conv-op", _convolution),
}
