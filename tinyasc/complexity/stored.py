"""What a network stores: parameter values and bytes by storage dtype.

DCASE counts memory as parameters x bytes of their dtype. An int8 network from torch.ao keeps its
weights inside packed int8 kernels, not as ``nn.Parameter``s, so ``model.parameters()`` misses them;
here every quantised conv/linear contributes its int8 weight and its float32 bias, and every other
module its own parameters at their dtype (fp32, or fp16 after conversion). Quantisation scales and
zero points are counted apart (``qparams``): DCASE's rule counts parameters, and the scales are
metadata whose storage width depends on the runtime.
"""
from __future__ import annotations

import re
from collections import Counter

import torch
from torch import nn

DTYPE_NAMES = {torch.qint8: "int8", torch.quint8: "uint8", torch.int8: "int8", torch.uint8: "uint8",
               torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64",
               torch.qint32: "int32", torch.int32: "int32"}
_QPARAM_BUFFER = re.compile(r"_(scale|zero_point)_\d+$")  # FX's names for quantise-step parameters


def is_int8_module(module: nn.Module) -> bool:
    """A torch.ao int8 kernel module (torch.ao.nn.quantized or its fused .intrinsic.quantized kin)."""
    where = type(module).__module__
    return where.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")) and ".reference" not in where


def _packed_weight_bias(module: nn.Module):
    """(int8 weight, bias) of a torch.ao quantised conv/linear, else None."""
    if not is_int8_module(module) or not hasattr(module, "_weight_bias"):
        return None
    return module._weight_bias()


def parameter_tensors(model: nn.Module):
    """(name, tensor) of every stored parameter, int8 kernels included."""
    for name, module in model.named_modules():
        packed = _packed_weight_bias(module)
        if packed is not None:
            weight, bias = packed
            yield f"{name}.weight", weight
            if bias is not None:
                yield f"{name}.bias", bias
            continue
        for pname, p in module.named_parameters(recurse=False):
            yield f"{name}.{pname}" if name else pname, p


def quantization_parameters(model: nn.Module) -> int:
    """Scale and zero-point values: per output channel of each int8 weight, one pair per requantised
    output, and the pairs FX stores for the quantise steps of the graph."""
    count = 0
    for module in model.modules():
        packed = _packed_weight_bias(module)
        if packed is None:
            continue
        weight = packed[0]
        per_channel = weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
        count += 2 * (weight.q_per_channel_scales().numel() if per_channel else 1) + 2
    count += sum(buf.numel() for name, buf in model.named_buffers() if _QPARAM_BUFFER.search(name))
    return count


def stored_sizes(model: nn.Module) -> dict:
    """{"params", "bytes", "by_dtype": {dtype: {"params", "bytes"}}, "qparams"} of ``model``."""
    values, nbytes = Counter(), Counter()
    for _, t in parameter_tensors(model):
        dtype = DTYPE_NAMES.get(t.dtype, str(t.dtype).replace("torch.", ""))
        values[dtype] += t.numel()
        nbytes[dtype] += t.numel() * t.element_size()
    return {"params": sum(values.values()), "bytes": sum(nbytes.values()),
            "by_dtype": {d: {"params": values[d], "bytes": nbytes[d]} for d in sorted(values)},
            "qparams": quantization_parameters(model)}
