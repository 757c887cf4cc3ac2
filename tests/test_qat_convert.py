"""QAT: the int8 network ``convert`` makes is the fake-quant network that was trained.

torch's QAT graph departed from its own conversion: scalar ops (Mobile-Former's ``2 * a``) rounded
on their input's grid, activations clipped at the 7-bit range where int8 tensors keep 0..255, weight
ranges that lag the BN-folded weights, fake quantisations conversion drops (reshapes, dropout, a
cat's inputs). Mobile-Former's converted QAT network fell to chance. Here a small network with each
of those, trained a few steps while its BN statistics move, must convert to what it computed.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.ao.quantization import FakeQuantizeBase

from tinyasc.modelfile.int8 import convert, prepare, quiet_ao


class Net(nn.Module):
    """Conv + BN (+ ReLU) blocks, plain, depthwise and grouped, and the ops that must convert exactly."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.depthwise = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),
                                       nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv2d(8, 16, 1, groups=2, bias=False), nn.BatchNorm2d(16))
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 16, 1), nn.Hardsigmoid())
        self.left = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.right = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8))
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.depthwise(x)
        x = self.grouped(x)
        x = x * (2 * self.gate(x))  # a scalar op on int8 values (Mobile-Former's TokenDyReLU)
        b, c, h, w = x.shape
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)  # channel shuffle
        x = torch.cat([self.left(x).flatten(2), self.right(x).flatten(2)], 1)  # inputs on two grids
        return self.head(self.drop(x.mean(2)))


def _trained(steps: int = 6) -> tuple[nn.Module, torch.Tensor]:
    """A QAT-prepared ``Net`` after a few SGD steps on inputs that grow, so the BN statistics (and
    with them the folded weights) move; in eval mode, activation ranges frozen, as it was trained."""
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 16, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 4
    prepared = prepare(Net(), "qat", x[:1])
    optimizer = torch.optim.SGD(prepared.parameters(), lr=0.05)
    with quiet_ao():
        for step in range(steps):
            loss = nn.functional.cross_entropy(prepared.train()(x * (1 + step)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    prepared.eval()
    weights = {id(m.weight_fake_quant) for m in prepared.modules() if hasattr(m, "weight_fake_quant")}
    for module in prepared.modules():
        if isinstance(module, FakeQuantizeBase) and id(module) not in weights:
            module.disable_observer()
    return prepared, x * steps


def _output_step(prepared: nn.Module) -> float:
    """The quantisation step of the logits: the scale of the fake quantisation the output comes from."""
    modules = dict(prepared.named_modules(remove_duplicate=False))
    node = next(n for n in prepared.graph.nodes if n.op == "output").args[0]
    assert node.op == "call_module" and isinstance(modules[node.target], FakeQuantizeBase)
    return float(modules[node.target].scale)


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    prepared, x = _trained()
    with quiet_ao():
        converted = convert(prepared)
    yield prepared, converted, x
    torch.set_num_threads(threads)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_converted_logits_are_the_fake_quant_logits(trained, scale):
    """Same clips, same logits: within one step of their quantisation (measured: equal; a value on a
    rounding tie may go the other way in an int8 kernel); ``scale`` 2 takes activations past the
    ranges observed in training, where the int8 network clips at 255, not at 127. Before: 69 and
    135 steps apart."""
    prepared, converted, x = trained
    with torch.no_grad(), quiet_ao():
        expected = prepared(x * scale)
        got = converted(x * scale).dequantize()
    assert (got - expected).abs().max() <= _output_step(prepared) * 1.001


def test_int8_weights_are_the_fake_quant_weights_of_the_final_bn_folding(trained):
    """Every conv (plain, depthwise, grouped) ships the weights the fake-quant network used: the BN-folded
    weights with the final statistics, on their own per-channel range (max |w| / 127.5), not on a
    moving average of earlier foldings."""
    prepared, converted, _ = trained
    fused = {name: m for name, m in prepared.named_modules() if hasattr(m, "bn") and hasattr(m, "weight_fake_quant")}
    assert {m.groups for m in fused.values()} >= {1, 2, 8}
    int8 = dict(converted.named_modules())
    for name, qat in fused.items():
        bn = qat.bn
        folded = (qat.weight * (bn.weight / torch.sqrt(bn.running_var + bn.eps)).reshape(-1, 1, 1, 1)).detach()
        with torch.no_grad(), quiet_ao():
            used = qat.weight_fake_quant(folded)
        shipped = int8[name].weight()
        torch.testing.assert_close(shipped.q_per_channel_scales().float(),
                                   folded.abs().amax((1, 2, 3)) / 127.5, rtol=1e-6, atol=0)
        assert torch.equal(shipped.dequantize(), used)  # a channel's largest weight sits on a rounding tie
