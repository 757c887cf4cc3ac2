"""Int8 networks: torch.ao FX graph-mode preparation, conversion, and the rebuild of a saved one.

This is the machinery a model file needs to turn int8 weights back into a network; the recipes
that decide when and how to quantise (QAT, calibration) live in ``tinyasc.compress.quantize``.

torch.ao FX graph mode: tracing finds every conv -> BN (-> ReLU) chain (how ``ConvNormAct`` is
built) and fuses it into one int8 kernel, so there is no per-model fusion list; residual adds become
int8 adds. Weights are int8 per output channel, activations uint8 per tensor, on the x86 backend
(fbgemm + oneDNN, the successor of report 001's 'fbgemm' configuration). Modules without an int8
kernel (blocks that declare ``int8_kernel = False``, e.g. GRN, and BatchNorm without scale and
offset, see ``AffineFreeBatchNorm2d``) are kept float: FX dequantises before them and quantises
again after, and ``float_islands`` names them.

One repair after conversion: an int8 ``torch.cat`` takes the scale of its first input, and FX drops
the shared observer it set on a cat input that comes out of a reshape or slice, so such a cat would
clip its other inputs (BC-Res2Net's hierarchical split). ``convert`` turns int8 cats into
``int8_cat``, which requantises inputs of different scales to one range covering them all.

QAT: the network trained must be the network shipped. torch's QAT graph computes something other
than its own conversion (clipping, weight ranges, scalar ops, dropped fake quantisations, BN
folding; Mobile-Former's fake-quant network scored 28 %, its conversion chance), so ``prepare`` makes
its fake quantisation compute what ``convert`` will make of it (``fake_quant_as_converted``) and
``convert`` folds BN as QAT's forward does (``fold_bn_as_trained``). The int8 graph, its state
dict names, and post-training quantisation are unchanged.

A model torch.ao cannot trace or convert is refused with one ``TinyAscError`` line naming why.
"""
from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.complexity.stored import is_int8_module
from tinyasc.modelfile.qat_align import covering_qparams, fake_quant_as_converted, fold_bn_as_trained

with warnings.catch_warnings():  # the torch.ao deprecation notice, see quiet_ao
    warnings.simplefilter("ignore")
    from torch.ao.quantization import (MinMaxObserver, QConfig, default_per_channel_weight_observer,
                                       get_default_qat_qconfig_mapping, get_default_qconfig_mapping)
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

BACKEND = "x86"


class AffineFreeBatchNorm2d(nn.BatchNorm2d):
    """What a ``BatchNorm2d(affine=False)`` becomes in the copy ``prepare`` quantises: the same module
    (state, numbers) under a type that declares it has no int8 kernel. torch.ao's int8 BatchNorm and
    its conv + BN fusion both need a scale and an offset, so such a norm stays float (it stores no
    parameters, so the int8 bytes do not change)."""

    int8_kernel = False


def _affine_free_norms_float(model: nn.Module) -> None:
    for module in model.modules():
        if type(module) is nn.BatchNorm2d and not module.affine:
            module.__class__ = AffineFreeBatchNorm2d


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
    """Fused copy of ``model`` with fake-quant (``qat``) or observers (``ptq``) inserted; the fake-quant
    network computes what ``convert`` makes of it (``fake_quant_as_converted``)."""
    if mode not in ("qat", "ptq"):
        raise ValueError(f"mode must be 'qat' or 'ptq', not {mode!r}")
    torch.backends.quantized.engine = BACKEND
    name = type(model).__name__
    model = copy.deepcopy(model).cpu()
    _affine_free_norms_float(model)
    mapping, custom = _configs(float_module_types(model), qat=mode == "qat", fast_observers=fast_observers)
    with quiet_ao(), _refused(name, "prepared for int8"):
        if mode == "qat":
            prepared = prepare_qat_fx(model.train(), mapping, example_inputs=(example,), prepare_custom_config=custom)
            fake_quant_as_converted(prepared)
            return prepared
        return prepare_fx(model.eval(), mapping, example_inputs=(example,), prepare_custom_config=custom)


@contextlib.contextmanager
def _refused(name: str, what: str):
    """torch.ao's tracing and conversion errors as one TinyAscError line (the model, the first line of why)."""
    try:
        yield
    except TinyAscError:
        raise
    except Exception as exc:  # noqa: BLE001  (torch.fx and torch.ao raise many types: one answer for all)
        why = (str(exc).strip().splitlines() or [""])[0][:200]
        raise TinyAscError(f"{name} cannot be {what}: {type(exc).__name__}: {why}") from exc


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
    with quiet_ao(), _refused(type(prepared).__name__, "converted to int8"):
        prepared = copy.deepcopy(prepared).cpu().eval()
        fold_bn_as_trained(prepared)
        quantized = convert_fx(prepared)
        _unclip_cats(quantized)
        return quantized




def int8_cat(tensors, dim: int = 0) -> torch.Tensor:
    """``torch.cat`` of int8 tensors that never clips: inputs with different scales are requantised to
    one range covering all of theirs (int8 ``torch.cat`` keeps the first input's scale). Inputs that
    share their scale (what FX aims for) are concatenated as they are, exactly as ``torch.cat``."""
    qparams = {(t.q_scale(), t.q_zero_point()) for t in tensors}
    if len(qparams) == 1:
        return torch.cat(tensors, dim)
    return torch.ops.quantized.cat(list(tensors), dim, *covering_qparams(qparams))


def _unclip_cats(quantized: nn.Module) -> None:
    """Every ``torch.cat`` of int8 tensors in a converted graph becomes ``int8_cat``.

    FX makes a cat's inputs share one observer, but conversion drops that observer on an input that
    comes out of a reshape or a slice (BC-Res2Net's hierarchical split over SubSpectralNorm), and the
    int8 cat then clips the other inputs to the first one's range. No new buffers: the state dict of
    a converted network stays what it was, and a saved one loads into a rebuilt skeleton.
    """
    graph = getattr(quantized, "graph", None)
    if graph is None:
        return
    int8_out = _int8_outputs(quantized)
    changed = False
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch.cat and node.args \
                and all(int8_out.get(a, False) for a in node.args[0]):
            node.target = int8_cat
            changed = True
    if changed:
        quantized.recompile()


def int8_skeleton(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """An int8 network of ``model``'s structure, ready for ``load_state_dict`` of a saved one.

    QAT and post-training conversion give the same graph (fused int8 kernels, same names), so one
    recipe rebuilds both; the placeholder calibration only gives the observers a range (min/max
    observers: histogram ones cost seconds and their ranges are overwritten anyway).
    """
    prepared = prepare(model, "ptq", example, fast_observers=True)
    calibrate(prepared, [example])
    return convert(prepared)


def int8_measurement(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, list[str]]:
    """The post-training int8 network of ``model`` (placeholder calibration, as ``int8_skeleton``) and
    its float islands: what ``tinyasc models`` counts (``complexity.table.Int8Conversion``)."""
    network = int8_skeleton(model, example)
    return network, float_islands(network)


def _int8_outputs(quantized: nn.Module) -> dict:
    """{node: whether its output is an int8 tensor} over the graph of a converted network."""
    modules = dict(quantized.named_modules())
    int8_out: dict = {}
    for node in quantized.graph.nodes:
        inputs = [int8_out.get(a, False) for a in node.all_input_nodes]
        if node.op == "call_function" and node.target in (torch.quantize_per_tensor, torch.quantize_per_channel):
            int8_out[node] = True
        elif node.op == "call_method" and node.target == "dequantize":
            int8_out[node] = False
        elif node.op == "call_module" and is_int8_module(modules[node.target]):
            int8_out[node] = True
        elif node.op == "call_function" and "quantized" in str(node.target):
            int8_out[node] = True
        else:
            int8_out[node] = bool(inputs) and inputs[0]
    return int8_out


# Modules that only move values (no arithmetic): in float or not, they are no island.
_MOVES_ONLY = (nn.Identity, nn.Flatten, nn.Unflatten, nn.modules.dropout._DropoutNd,
               nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
               nn.modules.padding._ReplicationPadNd, nn.modules.pooling._MaxPoolNd)


def _computes(module: nn.Module) -> bool:
    if getattr(type(module), "int8_kernel", True) is False or any(True for _ in module.parameters()):
        return True
    if isinstance(module, nn.Upsample):
        return module.mode != "nearest"
    return not isinstance(module, _MOVES_ONLY)


def float_islands(quantized: nn.Module) -> list[str]:
    """Modules of an int8 graph that compute on float tensors (``"name (Type)"``): blocks without an
    int8 kernel (e.g. GRN), layers with parameters left float, activations torch has no int8 kernel for
    (e.g. SiLU). Modules that only move values (padding, nearest upsampling, dropout) are not listed."""
    graph = getattr(quantized, "graph", None)
    if graph is None:
        return []
    modules = dict(quantized.named_modules())
    int8_out = _int8_outputs(quantized)
    islands = []
    for node in graph.nodes:
        if node.op == "call_module" and not int8_out[node] and _computes(modules[node.target]):
            islands.append(f"{node.target} ({type(modules[node.target]).__name__})")
    return islands
