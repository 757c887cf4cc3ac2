"""Mobile-Former (report 000), the DCASE 2022 baseline (reports 000/002) and MobileNetV2 with
coordinate attention (report 002) against the reports' tables, in the DCASE way and in each
report's own counting."""
import pytest
import torch
from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.complexity import torchinfo_counts
from tinyasc.complexity.conventions import attention_counts, keras_counts, tflite_counts
from tinyasc.models import create_model, get_spec, input_shape
from tinyasc.models.mobileformer import MobileFormerDown
from tinyasc.models.mobilenetv2_ca import Bottleneck, CoordinateAttention

# Pinned counts (DCASE way and each report's convention), the report-tolerance check and the training step
# of every model: tests/test_model_zoo.py.


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_mobileformer_follows_table_3():
    model = create_model("mobileformer_kt")
    assert tuple(model.tokens.shape) == (4, 16)
    x, tokens = model.stem(torch.zeros(1, 1, 256, 32)), model.tokens.expand(1, -1, -1)
    assert tuple(x.shape) == (1, 8, 128, 16)
    shapes = []
    for block in model.blocks:
        x, tokens = block(x, tokens)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(12, 64, 8), (18, 32, 4), (24, 16, 2)]
    assert model.head.conv(x).shape[1] == 144 and model.head.fc[0].out_channels == 64


def test_mobileformer_tokens_steer_the_mobile_branch():
    torch.manual_seed(0)
    model = create_model("mobileformer_kt").eval()
    x = torch.randn(1, 1, 256, 32)
    with torch.no_grad():
        y = model(x)
        model.tokens.add_(torch.randn_like(model.tokens))
        assert not torch.allclose(model(x), y)
        # the first token alone sets the dynamic-ReLU slopes
        block = model.blocks[0]
        feat = torch.randn(1, block.act1.hyper[2].out_features // 2, 64, 8)
        t = torch.randn(1, 4, 16)
        t2 = t.clone()
        t2[:, 1:] += 1.0
        assert torch.equal(block.act1(feat, t), block.act1(feat, t2))


def test_mobileformer_attention_is_real_work():
    # The report's 0.617 M cannot include attention: with the matmuls the same model costs 0.90 M.
    spec = get_spec("mobileformer_kt")
    assert spec.counting == "tokens"  # so the registry checks the report against the count without matmuls
    params, macs = attention_counts(create_model("mobileformer_kt"), input_shape("mobileformer_kt"))
    assert (params, macs) == (20_528, 897_330)
    assert macs / spec.report_macs > 1.4


def test_mobileformer_scales_and_validates():
    small = create_model("mobileformer_kt", token_dim=8)
    wide = create_model("mobileformer_kt", stages=[(16, 2, 2, 1), (24, 2, 2, 1), (32, 2, 4, 1)])
    assert _n_params(small) < _n_params(create_model("mobileformer_kt")) < _n_params(wide)
    deeper = create_model("mobileformer_kt", stages=[(12, 2, 2, 1), (12, 1, 2, 1)])
    assert deeper.blocks[1].identity and not deeper.blocks[0].identity
    assert deeper(torch.randn(2, 1, 64, 32)).shape == (2, 10)
    with pytest.raises(TinyAscError, match="groups"):
        MobileFormerDown(8, 13, groups=2)


def test_dcase22_baseline_matches_the_published_summary():
    model = create_model("dcase22_baseline")
    assert tuple(model.features(torch.zeros(1, 1, 40, 51)).shape) == (1, 32, 2, 1)
    # Keras summary of the baseline: 800, 12,560, 25,120 conv weights; 6,500 and 1,010 dense weights
    sizes = [m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sizes == [800, 12_560, 25_120, 6_500, 1_010]
    # Keras counts BN statistics too: 46,246; the report's 46,512 are the int8 TFLite bytes
    assert keras_counts(model, input_shape("dcase22_baseline"))[0] == 46_246
    assert tflite_counts(model, input_shape("dcase22_baseline"))[0] == 46_512
    assert get_spec("dcase22_baseline").report_params == 46_512


def test_dcase22_baseline_scales():
    wide = create_model("dcase22_baseline", layers=[(32, 7, None, 0.0), (32, 7, (5, 5), 0.3), (64, 7, (4, 10), 0.3)])
    assert torchinfo_counts(wide, (1, 1, 40, 51))[0] > _n_params(create_model("dcase22_baseline"))
    assert create_model("dcase22_baseline", hidden=50)(torch.randn(2, 1, 40, 51)).shape == (2, 10)


def _keras(module):
    stats = sum(b.numel() for n, b in module.named_buffers() if n.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in module.parameters()) + stats


def test_mobilenetv2_ca_rows_of_table_2():
    # Parameter column of Table 2 (Keras: BN statistics included)
    assert [_keras(Bottleneck(cin, cout, stride)) for cin, cout, stride in
            [(32, 32, 2), (32, 32, 1), (32, 48, 2), (48, 48, 1), (48, 64, 2), (64, 64, 1)]] == \
        [5_472, 5_472, 6_576, 11_280, 12_896, 19_136]
    assert _keras(CoordinateAttention(64, reduction=4)) == 3_280
    model = create_model("mobilenetv2_ca")
    assert _keras(model.stem) == 896 + 128
    x = model.stem(torch.zeros(1, 3, 128, 36))
    outs = []
    for block in model.blocks:
        x = block(x)
        outs.append(tuple(x.shape[1:]))
    assert outs[2] == (32, 32, 9) and outs[5] == (48, 16, 5) and outs[8] == (64, 8, 3)


def test_coordinate_attention_gates_each_axis():
    torch.manual_seed(0)
    ca = CoordinateAttention(16, reduction=4).eval()
    assert ca.shared[0].out_channels == 8  # mip = max(8, 16 / 4)
    x = torch.rand(1, 16, 6, 5) + 0.1
    with torch.no_grad():
        gate = ca(x) / x
    assert gate.shape == x.shape and torch.all((gate > 0) & (gate < 1))
    # one gate per frequency times one per frame: log(gate) is additively separable in (f, t)
    log_gate = gate[0].log()
    residual = log_gate - log_gate[:, :, :1] - log_gate[:, :1, :] + log_gate[:, :1, :1]
    assert residual.abs().max() < 1e-5
    assert log_gate.std(dim=1).mean() > 1e-4 and log_gate.std(dim=2).mean() > 1e-4


def test_mobilenetv2_ca_scales():
    narrow = create_model("mobilenetv2_ca", stages=[(16, 2, 2), (24, 2, 2), (32, 2, 2)], stem_channels=16,
                          head_channels=32)
    assert torchinfo_counts(narrow, (1, 3, 128, 36))[0] < _n_params(create_model("mobilenetv2_ca")) / 3
    assert narrow(torch.randn(2, 3, 128, 36)).shape == (2, 10)
