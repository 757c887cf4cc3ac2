"""QAT whose fake-quant network computes what its int8 conversion will (used by ``int8.prepare`` / ``convert``).

torch's QAT graph departs from its own conversion: fused fake quantisation clips activations to 7
bits where converted uint8 tensors keep 8, weight ranges are moving averages that lag the BN-folded
weights, the output of a scalar op (``2 * a``) is rounded on its input's grid, some ops that keep
their input's qparams once converted get a fake quantisation of their own, and conversion folds BN
with ``rsqrt`` where training divided by ``sqrt``. Mobile-Former's fake-quant network scored 28 %, its
conversion chance. Each departure is removed here, so the network trained is the network shipped
(``tests/test_qat_convert.py``). Post-training quantisation never comes here.
"""
from __future__ import annotations

import copy
import functools
import operator
import warnings

import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

with warnings.catch_warnings():  # the torch.ao deprecation notice, see int8.quiet_ao
    warnings.simplefilter("ignore")
    from torch.ao.nn.intrinsic.qat.modules.conv_fused import _ConvBnNd
    from torch.ao.quantization import FakeQuantize, FakeQuantizeBase, FusedMovingAvgObsFakeQuantize
    from torch.ao.quantization.backend_config import ObservationType, get_native_backend_config
    from torch.ao.quantization.fx.utils import all_node_args_have_no_tensors

# x86 activations are uint8 with ``reduce_range`` (7 bits: 0..127), in every qconfig of ``int8._configs``.
ACTIVATION_QMAX = 127


def covering_qparams(qparams) -> tuple[float, int]:
    """(scale, zero point) of the 7-bit range that covers every (scale, zero point) range given."""
    low = min(-zero_point * scale for scale, zero_point in qparams)
    high = max((ACTIVATION_QMAX - zero_point) * scale for scale, zero_point in qparams)
    scale = (high - low) / ACTIVATION_QMAX
    return scale, min(ACTIVATION_QMAX, max(0, round(-low / scale)))


class KernelFakeQuantize(FakeQuantize):
    """QAT fake quantisation that rounds and clips as the converted int8 network will.

    torch's fused QAT module (``FusedMovingAvgObsFakeQuantize``) departs from conversion twice: it
    clips activations to the 7-bit range its scale is chosen for (x86 ``reduce_range``: 0..127),
    where a converted uint8 tensor keeps 0..255 (``quantize_per_tensor`` and the int8 kernels clip
    to the dtype), and its weight scale is max|w|/127 where conversion takes the observer's
    max|w|/127.5. Here the scale and zero point come from the observer, as at conversion, and the
    clipping is the dtype's. Same observer, state and buffers, so a model swaps to it in place.
    """

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if self.observer_enabled[0] == 1:
            self._observe(X)
        if self.fake_quant_enabled[0] == 0:
            return X
        low, high = torch.iinfo(self.dtype).min, torch.iinfo(self.dtype).max
        if self.is_per_channel:
            return torch.fake_quantize_per_channel_affine(X, self.scale, self.zero_point, self.ch_axis, low, high)
        return torch.fake_quantize_per_tensor_affine(X, self.scale, self.zero_point, low, high)

    def _observe(self, X: torch.Tensor) -> None:
        self.activation_post_process(X.detach())
        scale, zero_point = self.calculate_qparams()
        self.scale.resize_(scale.shape).copy_(scale)
        self.zero_point.resize_(zero_point.shape).copy_(zero_point)


class ScalarOpOutput(KernelFakeQuantize):
    """Where a scalar ``+`` or ``*`` (TokenDyReLU's ``2 * a``) leaves int8 values: observed, not rounded.

    FX gives such an op's output the input's fake quantisation, which in QAT rounds ``2 * a`` on
    ``a``'s grid and clips it to ``a``'s range; conversion instead runs torch's scalar kernel
    (``quantized.mul(2, q)``: same integers, twice the scale), exact, and drops this point's qparams.
    So the fake-quant network computes the op exactly too. It still observes, so that the qparams it
    hands conversion are a real range should the op ever stay unlowered.
    """

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if self.observer_enabled[0] == 1:
            self._observe(X)
        return X


class CatOutput(KernelFakeQuantize):
    """The output of a ``torch.cat`` whose inputs come on different grids, rounded as ``int8_cat`` will.

    FX gives a cat's inputs and output one shared module, but conversion keeps the qparams of an
    input that comes out of a reshape or a slice (BC-Res2Net's hierarchical split), and ``int8_cat``
    then requantises all inputs to the range covering theirs (``covering_qparams``). Here the same
    range, from the input fake quantisations' current qparams (``sources``, not registered: they
    belong to the graph already); nothing is observed, conversion drops this point.
    """

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        qparams = {(float(m.scale), int(m.zero_point)) for m in self.sources}
        if len(qparams) == 1 or self.fake_quant_enabled[0] == 0:
            return X
        scale, zero_point = covering_qparams(qparams)
        return torch.fake_quantize_per_tensor_affine(X, scale, zero_point, 0, torch.iinfo(self.dtype).max)


def fake_quant_as_converted(prepared: nn.Module) -> None:
    """Make a QAT-prepared model compute what ``convert`` will make of it: the network trained is the
    network shipped (torch's QAT graph departs from its own conversion in four ways, removed here).

    - Fake quantisation clips and scales unlike the int8 kernels: ``KernelFakeQuantize``.
    - Weight ranges are moving averages (1 % a step) of the BN-folded weights, which move with the
      BN statistics; the average lags by hundreds of steps and clips the weights. Each step now
      observes the folded weights exactly (as a post-training observer does; conversion observes
      them once more, and so takes the range the fake-quant network used).
    - Scalar ``+``/``*`` outputs are rounded on their input's grid: ``ScalarOpOutput``.
    - Ops that keep their input's int8 values and qparams once converted (reshapes, pools, dropout)
      sometimes get a fake quantisation of their own, which conversion drops.
    """
    for module in prepared.modules():
        if type(module) in (FakeQuantize, FusedMovingAvgObsFakeQuantize):
            module.__class__ = KernelFakeQuantize
            if module.dtype == torch.qint8:  # weights (x86 activations are quint8)
                module.activation_post_process.averaging_constant = 1.0
    _scalar_op_outputs_exact(prepared)
    _share_input_fake_quant(prepared)


# What FX shares an input's observer with only when one operand is a Python number (the scalar kernels).
_SCALAR_KERNEL_OPS = (operator.add, operator.mul, torch.add, torch.mul)


def _fake_quant_nodes(prepared: nn.Module):
    """(node, its module) for every fake quantisation node, with all names a shared module goes by."""
    modules = dict(prepared.named_modules(remove_duplicate=False))
    return [(node, modules[node.target]) for node in prepared.graph.nodes
            if node.op == "call_module" and isinstance(modules[node.target], FakeQuantizeBase)], modules


def _set_module(prepared: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(prepared.get_submodule(parent), name, module)


def _scalar_op_outputs_exact(prepared: nn.Module) -> None:
    """Each fake quantisation after a scalar ``+``/``*`` becomes its own ``ScalarOpOutput``.

    FX gives such a point the op input's module (one instance at both places); an own one also
    keeps the input's range from being averaged with the output's.
    """
    nodes, modules = _fake_quant_nodes(prepared)
    for node, module in nodes:
        op = node.args[0]
        if _is_relu(op, modules):
            op = op.args[0]  # add/mul + ReLU is one int8 kernel
        if isinstance(op, torch.fx.Node) and op.op == "call_function" and op.target in _SCALAR_KERNEL_OPS \
                and _tensor_args(op, modules) == 1:
            own = copy.deepcopy(module)
            own.__class__ = ScalarOpOutput
            _set_module(prepared, node.target, own)


def _tensor_args(node: torch.fx.Node, modules: dict) -> int:
    """How many of ``node``'s arguments are tensors, counted as FX counts them to pick scalar kernels."""
    seen: dict = {}
    return sum(isinstance(a, torch.fx.Node) and not all_node_args_have_no_tensors(a, modules, seen)
               for a in node.args)


def _share_input_fake_quant(prepared: nn.Module) -> None:
    """The fake quantisation after an op that keeps its input's qparams once converted is its input's.

    FX means to share one module there (the backend's OUTPUT_SHARE_OBSERVER_WITH_INPUT ops) but
    not always does (a reshape of a residual sum in Mobile-Former's head kept its own), and gives
    dropout its own; conversion drops that module, and the fake-quant network rounded twice. A
    cat's output is its inputs' one module, or a ``CatOutput`` where they differ. In graph order,
    so that a chain of such ops ends on the module that gave its values their grid.
    """
    nodes, modules = _fake_quant_nodes(prepared)
    for node, module in nodes:
        op = node.args[0]
        if not isinstance(op, torch.fx.Node):
            continue
        if op.op == "call_function" and op.target is torch.cat:
            inputs = op.args[0] if op.args else op.kwargs.get("tensors", ())
            if not all(_is_fake_quant_node(a, modules) for a in inputs):
                continue
            sources = tuple({id(modules[a.target]): modules[a.target] for a in inputs}.values())
            if len(sources) == 1:
                replacement = sources[0]
            else:
                replacement = copy.deepcopy(module)
                replacement.__class__ = CatOutput
                replacement.sources = sources
        elif _keeps_input_qparams(op, modules):
            source = next((a for a in op.args if isinstance(a, torch.fx.Node)), None)
            if not _is_fake_quant_node(source, modules):
                continue
            replacement = modules[source.target]
        else:
            continue
        if replacement is not module:
            _set_module(prepared, node.target, replacement)
            modules[node.target] = replacement


def _is_fake_quant_node(node, modules: dict) -> bool:
    return isinstance(node, torch.fx.Node) and node.op == "call_module" \
        and isinstance(modules[node.target], FakeQuantizeBase)


@functools.lru_cache(maxsize=1)
def _input_qparams_ops() -> tuple[frozenset, tuple[type, ...]]:
    """(functions and method names, module types) whose int8 output keeps the input's qparams: the
    backend's single-input OUTPUT_SHARE_OBSERVER_WITH_INPUT ops, and dropout (identity once converted)."""
    config = get_native_backend_config()
    patterns = [c.pattern for c in config.configs
                if c.observation_type == ObservationType.OUTPUT_SHARE_OBSERVER_WITH_INPUT
                and c.pattern not in (torch.cat, torch.stack) and not isinstance(c.pattern, tuple)]
    types = tuple(p for p in patterns if isinstance(p, type)) + (nn.Dropout,)
    return frozenset([p for p in patterns if not isinstance(p, type)] + [F.dropout]), types


def _keeps_input_qparams(node: torch.fx.Node, modules: dict) -> bool:
    functions, types = _input_qparams_ops()
    if node.op == "call_module":
        return isinstance(modules[node.target], types)
    return node.op in ("call_function", "call_method") and node.target in functions


def _is_relu(node, modules: dict) -> bool:
    if not isinstance(node, torch.fx.Node):
        return False
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.ReLU)
    return node.op == "call_function" and node.target in (torch.relu, F.relu)


@torch.no_grad()
def fold_bn_as_trained(prepared: nn.Module) -> None:
    """Fold each QAT conv + BN's statistics into its conv as its fake-quant forward folds them.

    torch's conversion folds with ``w * (gamma * rsqrt(var + eps))``, QAT's forward with
    ``w * (gamma / sqrt(var + eps))``: a last-bit difference, and a channel's largest weight sits
    exactly on a rounding tie (its scale is max|w| / 127.5), so it went one int8 step either way.
    Folded here as the forward does, with the BN left as identity (rsqrt(1) is exactly 1), torch's
    fold reproduces these weights bit for bit.
    """
    for module in prepared.modules():
        if not isinstance(module, _ConvBnNd):
            continue
        bn = module.bn
        scale_factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # as _ConvBnNd._forward_approximate
        module.weight.copy_(module.weight * scale_factor.reshape([-1] + [1] * (module.weight.dim() - 1)))
        bias = module.bias if module.bias is not None else torch.zeros_like(bn.running_mean)
        bn.bias.copy_((bias - bn.running_mean) * scale_factor + bn.bias)
        if module.bias is not None:
            module.bias.zero_()
        bn.weight.fill_(1.0)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.eps = 0.0
