"""Int8 networks: torch.ao FX graph-mode preparation, conversion, and the rebuild of a saved one.

This is the machinery a model file needs to turn int8 weights back into a network; the recipes
that decide when and how to quantise (QAT, calibration) live in ``tinyasc.compress.quantize``.

torch.ao FX graph mode: tracing finds every conv -> BN (-> ReLU) chain (how ``ConvNormAct`` is
built) and fuses it into one int8 kernel, so there is no per-model fusion list; residual adds become
int8 adds. Weights are int8 per output channel, activations uint8 per tensor, on the x86 backend
(fbgemm + oneDNN, the successor of report 001's 'fbgemm' configuration). Modules without an int8
kernel (blocks that declare ``int8_kernel = False``, e.g. GRN) are kept float: FX dequantises
before them and quantises again after, and ``float_islands`` names them.
"""
from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import nn

from tinyasc.complexity.stored import is_int8_module

with warnings.catch_warnings():  # the torch.ao deprecation notice, see quiet_ao
    warnings.simplefilter("ignore")
    from torch.ao.quantization import (MinMaxObserver, QConfig, default_per_channel_weight_observer,
                                       get_default_qat_qconfig_mapping, get_default_qconfig_mapping)
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

BACKEND = "x86"


def float_module_types(model: nn.Module) -> list[type]:
    """Block types in ``model`` that declare they have no int8 kernel."""
    return sorted({type(m) for m in model.modules() if getattr(type(m), "int8_kernel", True) is False},
                  key=lambda t: t.__qualname__)


@contextlib.contextmanager
def quiet_ao():
    """torch.ao.quantization warns on every call that it is deprecated in favour of torchao; the
    API still works on torch 2.13 and torchao is not a dependency, so the notice is silenced."""
    with warnings.catch_warnings():
        for pattern in (".*torch.ao.quantization is deprecated.*", ".*reduce_range will be deprecated.*",
                        ".*quantized tensor creation functions.*", ".*TypedStorage is deprecated.*",
                        ".*must run observer before calling calculate_qparams.*"):
            warnings.filterwarnings("ignore", message=pattern)
        yield


def _configs(float_types: list[type], qat: bool, fast_observers: bool = False):
    mapping = (get_default_qat_qconfig_mapping if qat else get_default_qconfig_mapping)(BACKEND)
    if fast_observers:  # same dtypes and schemes (so the same int8 graph), min/max instead of histograms
        mapping.set_global(QConfig(activation=MinMaxObserver.with_args(reduce_range=True),
                                   weight=default_per_channel_weight_observer))
    for cls in float_types:
        mapping.set_object_type(cls, None)
    # Not traced into: FX sees one call, leaves it float, and never quantises its internals.
    custom = PrepareCustomConfig().set_non_traceable_module_classes(list(float_types))
    return mapping, custom


def prepare(model: nn.Module, mode: str, example: torch.Tensor, fast_observers: bool = False) -> nn.Module:
    """Fused copy of ``model`` with fake-quant (``qat``) or observers (``ptq``) inserted."""
    if mode not in ("qat", "ptq"):
        raise ValueError(f"mode must be 'qat' or 'ptq', not {mode!r}")
    torch.backends.quantized.engine = BACKEND
    mapping, custom = _configs(float_module_types(model), qat=mode == "qat", fast_observers=fast_observers)
    model = copy.deepcopy(model).cpu()
    with quiet_ao():
        if mode == "qat":
            return prepare_qat_fx(model.train(), mapping, example_inputs=(example,), prepare_custom_config=custom)
        return prepare_fx(model.eval(), mapping, example_inputs=(example,), prepare_custom_config=custom)


@torch.no_grad()
def calibrate(prepared: nn.Module, batches) -> int:
    """Run feature batches through the observers; returns the number of clips seen."""
    prepared.eval()
    seen = 0
    with quiet_ao():
        for feats in batches:
            prepared(feats)
            seen += len(feats)
    return seen


def convert(prepared: nn.Module) -> nn.Module:
    """The int8 network: observed ranges become scales, fused blocks int8 kernels."""
    torch.backends.quantized.engine = BACKEND
    with quiet_ao():
        return convert_fx(copy.deepcopy(prepared).cpu().eval())


def int8_skeleton(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """An int8 network of ``model``'s structure, ready for ``load_state_dict`` of a saved one.

    QAT and post-training conversion give the same graph (fused int8 kernels, same names), so one
    recipe rebuilds both; the placeholder calibration only gives the observers a range (min/max
    observers: histogram ones cost seconds and their ranges are overwritten anyway).
    """
    prepared = prepare(model, "ptq", example, fast_observers=True)
    calibrate(prepared, [example])
    return convert(prepared)


def float_islands(quantized: nn.Module) -> list[str]:
    """Modules of an int8 graph that compute on float tensors between int8 parts (e.g. GRN)."""
    graph = getattr(quantized, "graph", None)
    if graph is None:
        return []
    modules = dict(quantized.named_modules())
    int8_out: dict = {}
    islands = []
    for node in graph.nodes:
        inputs = [int8_out.get(a, False) for a in node.all_input_nodes]
        if node.op == "call_function" and node.target in (torch.quantize_per_tensor, torch.quantize_per_channel):
            int8_out[node] = True
        elif node.op == "call_method" and node.target == "dequantize":
            int8_out[node] = False
        elif node.op == "call_module":
            module = modules[node.target]
            if is_int8_module(module):
                int8_out[node] = True
            else:
                int8_out[node] = bool(inputs) and inputs[0]
                computes = getattr(type(module), "int8_kernel", True) is False or any(True for _ in module.parameters())
                if not int8_out[node] and computes:
                    islands.append(f"{node.target} ({type(module).__name__})")
        elif node.op == "call_function" and "quantized" in str(node.target):
            int8_out[node] = True
        else:
            int8_out[node] = bool(inputs) and inputs[0]
    return islands
