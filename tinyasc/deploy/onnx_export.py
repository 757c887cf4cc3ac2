"""ONNX export of float and int8 networks, checked against PyTorch with ONNX Runtime.

The exported graph is the part DCASE counts: log-mel features [batch, C, F, T] in, logits out;
the front end stays in tinyasc (``OnnxPredictor`` feeds the session from it). torch.onnx's
TorchScript exporter is used (``dynamo=False``): the dynamo exporter needs onnxscript, which
tinyasc does not depend on. An int8 network exports as QuantizeLinear/DequantizeLinear around
float ops, carrying PyTorch's own int8 weights, scales and zero points; ONNX Runtime fuses those
into QLinearConv / QLinearAdd kernels. Two int8 ops that torch.ao emits have no ONNX translation
in torch (see ``_int8_symbolics``): a standalone int8 BatchNorm (BC-ResNet's sub-spectral norm,
which follows a reshape, so it cannot fold into the conv) and an int8 tensor times a Python number
(Mobile-Former's dynamic ReLU); tinyasc adds both, exact to PyTorch's own int8 arithmetic.

Agreement: float32 logits must match within 1e-4 x max(1, |logit|); int8 logits within that plus
``INT8_STEPS`` quantisation steps of the network's output (the two runtimes round requantisation
and average pooling differently, and a one-step difference in a hidden layer can move the output
by a step or two). Predictions must be identical except on near ties: clips whose top two logits
are closer than the tolerance, where either runtime may pick either class.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.onnx import symbolic_helper as sh, symbolic_opset9 as opset9, symbolic_opset10 as opset10

from tinyasc.base.errors import TinyAscError
from tinyasc.modelfile.ensemble import EnsembleNetwork
from tinyasc.modelfile.int8 import quiet_ao

FLOAT_RTOL = 1e-4
INT8_STEPS = 3
OPSET = 17


def _network_for_export(predictor):
    if "fp16" in predictor.precision:
        raise TinyAscError(f"{predictor.source}: fp16 networks are not exported (ONNX Runtime's CPU kernels are "
                           "float32 / int8); export the float32 or int8 model")
    return predictor.network_module().eval()


def _int8_batch_norm(g, qx, weight, bias, mean, var, eps, out_scale, out_zero_point):
    x, _, _, _ = sh.dequantize_helper(g, qx)
    y = opset9.batch_norm(g, x, weight, bias, mean, var, False, 0.0, sh._get_const(eps, "f", "eps"), False)
    return sh.quantize_helper(g, y, out_scale, out_zero_point)


def _int8_mul(g, *args):
    """``quantized::mul`` in all three forms: two int8 tensors (torch's own symbolic), and an int8
    tensor times a number either way round, whose output is exactly what PyTorch computes: same
    integers, scale x |number|, and for a negative number the zero point mirrored (255 - zp)."""
    if len(args) == 4:
        return opset10.quantized_mul(g, *args)
    number, qx = (args[1], args[0]) if sh._is_tuple_construct(args[0]) else args
    number = float(sh._get_const(number, "f", "number"))
    x, scale, zero_point, _ = sh.dequantize_helper(g, qx)
    y = g.op("Mul", x, g.op("Constant", value_t=torch.tensor(number)))
    scale = g.op("Mul", scale, g.op("Constant", value_t=torch.tensor(abs(number))))
    if number < 0:
        zero_point = g.op("Sub", g.op("Constant", value_t=torch.tensor(255, dtype=torch.uint8)), zero_point)
    return sh.quantize_helper(g, y, scale, zero_point)


def _int8_symbolics(opset: int) -> None:
    for name, fn in (("quantized::batch_norm2d", _int8_batch_norm), ("quantized::mul", _int8_mul)):
        torch.onnx.register_custom_op_symbolic(name, fn, opset)


def require(module: str) -> None:
    """onnx (export) and onnxruntime (checks, prediction) are the optional extra tinyasc[onnx]."""
    if importlib.util.find_spec(module) is None:
        raise TinyAscError(f"{module} is not installed; install it with pip install 'tinyasc[onnx]'")


def export_onnx(predictor, path: str | Path, opset: int = OPSET) -> Path:
    require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = _network_for_export(predictor)
    example = torch.zeros((2, *predictor.input_shape[1:]))
    with quiet_ao(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        _int8_symbolics(opset)
        try:
            torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=["features"], output_names=["logits"],
                              dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as exc:
            raise TinyAscError(f"{predictor.source}: ONNX export failed "
                               f"({str(exc).strip().splitlines()[0][:160]})") from None
    return path


def session(path: str | Path, threads: int | None = None):
    require("onnxruntime")
    import onnxruntime as ort  # optional at import time: only export checks and ONNX prediction need it

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise TinyAscError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:160]})") from None


class OnnxPredictor:
    """A predictor whose network runs in ONNX Runtime; front end, classes and config from ``base``."""

    def __init__(self, base, path: str | Path, threads: int | None = None):
        self.base, self.path = base, Path(path)
        self.session = session(path, threads)
        self.classes, self.devices, self.config = base.classes, base.devices, base.config
        self.sample_rate, self.duration = base.sample_rate, base.duration
        self.precision, self.source = f"onnx-{base.precision}", str(path)

    def features(self, waves: torch.Tensor) -> torch.Tensor:
        return self.base.features(waves)

    def logits_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        out = self.session.run(["logits"], {"features": feats.float().contiguous().numpy()})[0]
        return torch.from_numpy(out)

    def logits(self, waves: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(waves))

    def complexity(self) -> dict:
        return self.base.complexity()


def output_step(network) -> float | None:
    """Quantisation step of an int8 network's output: the scale of the int8 tensor it dequantises
    (for an ensemble, the members' steps weighted by their ensemble weights; None when all float)."""
    if isinstance(network, EnsembleNetwork):
        steps = [abs(float(w)) * (output_step(n) or 0.0) for w, n in zip(network.weights, network.networks)]
        return sum(steps) or None
    graph = getattr(network, "graph", None)
    if graph is None:
        return None
    modules = dict(network.named_modules())
    node = next(n for n in graph.nodes if n.op == "output").args[0]
    while node is not None:
        if node.op == "call_module" and hasattr(modules[node.target], "scale"):
            return float(modules[node.target].scale)
        if node.op == "call_function" and len(node.args) > 2 and "quantize" in str(node.target) + str(
                getattr(node.target, "__name__", "")):
            scale = node.args[1] if "quantize_per_tensor" in str(node.target) else node.args[2]
            return float(getattr(network, scale.target)) if hasattr(scale, "target") else float(scale)
        parents = node.all_input_nodes
        node = parents[0] if parents else None
    return None


def check_onnx(predictor, onnx_predictor, loader) -> dict:
    """Compare PyTorch and ONNX Runtime logits clip by clip over a data loader.

    A differing top class counts as ``decisive`` unless PyTorch's own top-2 margin is within the
    tolerance (a near tie that either runtime may break); ``ok`` needs every logit within the
    tolerance and no decisive mismatch.
    """
    step = output_step(predictor.network_module())
    pt, rt = [], []
    for waves, *_ in loader:
        feats = predictor.features(waves.float())
        pt.append(predictor.logits_from_features(feats).numpy())
        rt.append(onnx_predictor.logits_from_features(feats).numpy())
    if not pt:
        raise TinyAscError(f"{onnx_predictor.source}: no clips to check the export on")
    a, b = np.concatenate(pt), np.concatenate(rt)
    max_diff = float(np.abs(a - b).max())
    tolerance = FLOAT_RTOL * max(1.0, float(np.abs(a).max())) + (INT8_STEPS * step if step else 0.0)
    rule = f"{FLOAT_RTOL:g} x max(1, |logit|)" + (f" + {INT8_STEPS} output steps of {step:.4g}" if step else "")
    top2 = np.sort(a, axis=1)[:, -2:] if a.shape[1] > 1 else np.zeros((len(a), 2))
    differs = a.argmax(1) != b.argmax(1)
    decisive = differs & (top2[:, 1] - top2[:, 0] > tolerance)
    return {"clips": len(a), "max_abs_diff": max_diff, "tolerance": tolerance, "tolerance_rule": rule,
            "prediction_mismatches": int(differs.sum()), "decisive_mismatches": int(decisive.sum()),
            "ok": max_diff <= tolerance and not decisive.any()}
