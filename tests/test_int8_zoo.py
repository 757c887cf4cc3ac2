"""int8 for every registered model: post-training conversion, a QAT step, the bytes `tinyasc models` shows.

Parametrised over ``list_models()``, so a model added later is held to the same rules: it traces,
converts, runs close to its float self, keeps no weight layer in float, and the model table reports
the bytes of its real int8 network. The float outputs of the models whose code changed to make this
possible are pinned to values computed with the code before the change.
"""
from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn
from torch.ao.quantization import FakeQuantizeBase

from tinyasc.base.errors import TinyAscError
from tinyasc.complexity.stored import is_int8_module, stored_sizes
from tinyasc.complexity.table import model_row
from tinyasc.modelfile.int8 import (calibrate, convert, float_islands, int8_cat, int8_measurement,
                                    prepare, quiet_ao)
from tinyasc.modelfile.qat_align import ACTIVATION_QMAX
from tinyasc.models import create_model, input_shape, list_models

MODELS = list_models()
# Layers torch.ao has no int8 kernel for, besides blocks that declare ``int8_kernel = False``.
NO_INT8_KERNEL = (nn.SiLU, nn.GELU, nn.BatchNorm1d)
# Relative L2 error of int8 logits against float ones, same clip. Activations are 7-bit (x86
# reduce_range: a step is 1/127 of a layer's range) and are requantised at every layer, so a few
# percent is expected (measured 0.6-4.4 % over the zoo with min/max calibration); a wrong
# scale, a clipped or a dropped layer moves logits by tens of percent.
MAX_RELATIVE_ERROR = 0.15


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models and batches of two: one thread is as fast, and never waits on a busy second core
    (with two, every small op stalls whenever other work holds the second core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def build(name: str):
    """The model in eval mode with non-trivial BatchNorm statistics (so the norms matter), and a fixed
    input of its shape; the same recipe that computed the pinned values below."""
    torch.manual_seed(0)
    shape = input_shape(name)
    model = create_model(name, in_channels=shape[1])
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    return model.eval(), x


@functools.lru_cache(maxsize=None)
def ptq(name: str):
    """Post-training int8 network, min/max observers calibrated on the fixed clip and its time reversal."""
    model, x = build(name)
    prepared = prepare(model, "ptq", x, fast_observers=True)
    calibrate(prepared, [torch.cat([x, x.flip(-1)])])
    return convert(prepared)


def _graph_modules(network: nn.Module):
    modules = dict(network.named_modules())
    return [(node, modules[node.target]) for node in network.graph.nodes if node.op == "call_module"]


@pytest.mark.parametrize("name", MODELS)
def test_ptq_int8_network_runs_close_to_float(name):
    model, x = build(name)
    network = ptq(name)
    with torch.no_grad(), quiet_ao():
        expected, got = model(x), network(x)
    assert got.shape == expected.shape == (1, 10) and torch.isfinite(got).all()
    assert float((got - expected).norm() / expected.norm()) <= MAX_RELATIVE_ERROR
    # No weight layer stays float, and a BN right after a conv is folded into it: no int8 BN takes a
    # plain conv's output (one after a conv + ReLU, as ghost_bc_res2net's stem, cannot be folded).
    calls = _graph_modules(network)
    float_weights = [n.target for n, m in calls if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    assert float_weights == []
    producer = {n: m for n, m in calls}
    unfused = [n.target for n, m in calls if is_int8_module(m) and "BatchNorm" in type(m).__name__
               and type(producer.get(n.args[0])).__name__ in ("Conv1d", "Conv2d")]
    assert unfused == []
    # What runs in float is what has no int8 kernel: declared blocks and the layer types torch lacks.
    islands = set(float_islands(network))
    for node, module in calls:
        if f"{node.target} ({type(module).__name__})" in islands:
            assert getattr(type(module), "int8_kernel", True) is False or isinstance(module, NO_INT8_KERNEL), node


@pytest.mark.parametrize("name", MODELS)
def test_model_table_reports_the_bytes_of_the_real_int8_and_fp16_networks(name):
    row = model_row(name, int8_measurement)
    network = ptq(name)  # same graph as the table's conversion; the bytes do not depend on calibration
    assert row["bytes_int8"] == stored_sizes(network)["bytes"]
    assert row["int8_float_layers"] == float_islands(network)
    model, _ = build(name)
    assert row["bytes_fp16"] == stored_sizes(copy.deepcopy(model).half())["bytes"]
    assert {"fits_int8", "fits_fp16"} <= row.keys()


@pytest.mark.parametrize("name", MODELS)
def test_qat_step_trains_through_fake_quantisation(name):
    model, x = build(name)
    prepared = prepare(model, "qat", x)  # the QAT recipe's fake-quant modules, fused conv + BN kept trainable
    assert any(isinstance(m, FakeQuantizeBase) for m in prepared.modules())
    before = [p.detach().clone() for p in prepared.parameters()]
    optimizer = torch.optim.SGD(prepared.parameters(), lr=0.01)
    with quiet_ao():
        logits = prepared.train()(torch.cat([x, x.flip(-1)]))
        loss = nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in prepared.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, prepared.parameters()))


# Float logits of the fixed input and its time-reversed copy, computed with the code before the int8
# work: the first four of clip 0 and the sum of |logits|. bc_resnet.py changed (SubSpectralNorm's
# sub-band check became a torch.fx leaf, ResNorm declares no int8 kernel), and with it the BC family;
# mobilenetv2_ca's code did not, but int8 now swaps its affine-free norms in the copy it quantises.
# bc_resnet_c40 (Table 5's third max-pool) and ghost_bc_res2net (Ghost modules in every block, C = 53)
# were re-pinned when their architectures changed on purpose.
FLOAT_BEFORE = {
    "bc_resnet_c40": ([0.00691479, -0.00952949, -0.0324199, 0.0416513], 1.17054),
    "bc_resnet_c80": ([-0.0141465, 0.0620211, 0.297103, 0.0150281], 1.64319),
    "ghost_bc_res2net": ([1.58707, -0.0822273, 0.841661, -0.00316226], 8.34935),
    "mobilenetv2_ca": ([0.301633, 0.136482, -0.237961, 0.067934], 2.59718),
}


@pytest.mark.parametrize("name", sorted(FLOAT_BEFORE))
def test_float_outputs_are_those_of_the_code_before(name):
    model, x = build(name)
    with torch.no_grad():
        y = model(torch.cat([x, x.flip(-1)]))
    first, total = FLOAT_BEFORE[name]
    torch.testing.assert_close(y[0, :4], torch.tensor(first), rtol=1e-4, atol=1e-5)
    assert float(y.abs().sum()) == pytest.approx(total, rel=1e-4)


def test_int8_cat_requantises_inputs_of_different_scales_instead_of_clipping():
    small = torch.quantize_per_tensor(torch.tensor([0.01, 0.02, 0.5]), 0.004, 0, torch.quint8)
    large = torch.quantize_per_tensor(torch.tensor([0.5, 1.0, 10.0]), 0.08, 0, torch.quint8)
    with quiet_ao():
        plain = torch.cat([small, large]).dequantize()
        joined = int8_cat([small, large])
    assert float(plain.max()) < 1.1  # int8 torch.cat keeps the first scale: 10.0 is clipped to ~1
    step = joined.q_scale()
    assert step == pytest.approx(10.16 / ACTIVATION_QMAX, rel=1e-3)  # the union of both 7-bit ranges
    assert torch.allclose(joined.dequantize(), torch.tensor([0.01, 0.02, 0.5, 0.5, 1.0, 10.0]), atol=step)
    same = int8_cat([large, large])  # one scale: exactly torch.cat
    assert same.q_scale() == large.q_scale() and torch.equal(same.int_repr(), torch.cat([large, large]).int_repr())


def test_sub_band_check_holds_in_the_float_and_the_int8_network():
    model, x = build("bc_resnet_c40")
    odd = torch.randn(1, 1, 254, x.shape[-1])  # 127 bins after the stem: no 4 equal sub-bands
    for network in (model, ptq("bc_resnet_c40")):
        with pytest.raises(TinyAscError, match="127 frequency bins do not split into 4"), torch.no_grad():
            network(odd)


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(x) if x.sum() > 0 else -self.conv(x)


def test_a_model_torch_cannot_trace_or_convert_is_refused_in_one_line():
    with pytest.raises(TinyAscError, match="_DataDependent cannot be prepared for int8: TraceError") as info:
        prepare(_DataDependent(), "ptq", torch.randn(1, 1, 8, 8))
    assert "\n" not in str(info.value)
    with pytest.raises(TinyAscError, match="cannot be converted to int8") as info:
        convert(nn.Linear(2, 2))  # not an observed graph
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", MODELS)
def test_int8_network_exports_to_onnx_and_agrees(name, tmp_path):
    """Every int8 network exports, and ONNX Runtime's logits are PyTorch's within the export check's
    rule (three output quantisation steps): the BC family's standalone int8 BatchNorm and
    Mobile-Former's int8-times-number need tinyasc's own ONNX translations."""
    pytest.importorskip("onnxruntime", reason="the extra tinyasc[onnx] is not installed")
    from tinyasc.deploy.onnx_export import INT8_STEPS, export_onnx, output_step, session

    class Int8(object):  # the two things export_onnx asks of a predictor
        precision, source, input_shape = "int8", name, input_shape(name)
        network_module = staticmethod(lambda: ptq(name))

    path = export_onnx(Int8(), tmp_path / f"{name}.onnx")
    _, x = build(name)
    clips = torch.cat([x, x.flip(-1), 0.5 * x])
    with torch.no_grad(), quiet_ao():
        expected = ptq(name)(clips)
    got = torch.from_numpy(session(path).run(["logits"], {"features": clips.numpy()})[0])
    step = output_step(ptq(name))
    assert step is not None and step > 0
    assert float((got - expected).abs().max()) <= INT8_STEPS * step + 1e-4 * max(1.0, float(expected.abs().max()))
