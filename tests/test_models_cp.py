"""CP family (CP-Mobile, DCASE 2024 baseline, report 004's variant, CP-ResNet59, MofleNet57) against
the reports' tables and shapes, and what is specific to the family (BN folding, GRN, stride schedules)."""
import pytest
import torch
from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.complexity import parameter_bytes, torchinfo_counts
from tinyasc.complexity.conventions import fold_batchnorm, folded_counts
from tinyasc.models import create_model, get_spec, input_shape
from tinyasc.models.blocks import ChannelShuffle
from tinyasc.models.cp_mobile import CPMobile
from tinyasc.models.cp_resnet import CPResNet

# Pinned counts, the report-tolerance check and the training step of every model: tests/test_model_zoo.py.


def test_report_001_counted_the_bn_folded_models():
    # Folding closes both residuals to < 0.3 % (unfolded, the MACs are 1.0 % and 3.4 % off) and makes the
    # stated 117 k total and 29.4 M MACs come out. The folded counts themselves are pinned in test_model_zoo.py.
    counts = {name: (torchinfo_counts(create_model(name), input_shape(name)),
                     folded_counts(create_model(name), input_shape(name))) for name in ("cp_resnet59", "moflenet57")}
    for name, (plain, folded) in counts.items():
        spec = get_spec(name)
        assert spec.counting == "bn_fused"
        assert folded[0] < plain[0]  # a folded BN keeps no parameters of its own
        assert abs(folded[0] / spec.report_params - 1) < 0.003 and abs(folded[1] / spec.report_macs - 1) < 0.003
        assert max(abs(plain[0] / spec.report_params - 1), abs(plain[1] / spec.report_macs - 1)) > 0.006
    resnet, mofle = counts["cp_resnet59"][1], counts["moflenet57"][1]
    assert round((resnet[0] + mofle[0]) / 1000) == 117
    assert round((resnet[1] + mofle[1]) / 1e5) / 10 == 29.4


def test_baseline_is_exactly_the_dcase_check_value():
    model = create_model("dcase24_baseline")
    assert torchinfo_counts(model, (1, 1, 256, 65)) == (61_148, 29_419_156)
    assert parameter_bytes(model, "fp16") == 122_296


def test_cp_mobile_2023_uses_its_own_stride_schedule():
    # With the 2024 baseline's schedule the same widths cost 53.17 M MACs (its own: 31.68 M, pinned in
    # test_model_zoo.py).
    params, macs = torchinfo_counts(create_model("cp_mobile"), (1, 1, 256, 65))
    baseline_strides = {2: (1, 1), 3: (1, 2), 4: (2, 1)}
    assert torchinfo_counts(create_model("cp_mobile", strides=baseline_strides), (1, 1, 256, 65)) == (
        params, 53_174_356)
    assert macs < 32_000_000


def test_unisa_variant_reproduces_the_reported_size_and_macs():
    # Report 004: 119.5 kB at fp16, 29.43 M MACs at 256 x 68. kB is read as 1024 bytes.
    unisa, plain = create_model("dcase24_baseline_unisa"), create_model("dcase24_baseline")
    assert round(parameter_bytes(unisa, "fp16") / 1024, 1) == 119.5
    assert round(torchinfo_counts(unisa, (1, 1, 256, 68))[1] / 1e6, 2) == 29.43
    # Without GRN the baseline is 119.4 KiB: the scalar GRNs are what the size needs.
    assert round(parameter_bytes(plain, "fp16") / 1024, 1) == 119.4
    assert get_spec("dcase24_baseline_unisa").frontend["hop_length"] == 472


def _layer_shapes(layers, x):
    shapes = []
    for layer in layers:
        x = layer(x)
        shapes.append(tuple(x.shape[2:]) + (x.shape[1],))  # F x T x C as the reports print
    return shapes


def test_cp_resnet59_follows_table_1():
    model = create_model("cp_resnet59").eval()
    with torch.no_grad():
        stem = model.stem(torch.zeros(1, 1, 256, 43))
        shapes = _layer_shapes(model.stages, stem)
    assert tuple(stem.shape[2:]) == (127, 21)
    assert shapes == [(63, 10, 32), (63, 10, 32), (31, 10, 32), (31, 10, 32), (15, 10, 32), (7, 10, 32),
                      (7, 10, 44), (7, 5, 44), (7, 5, 26)]


def test_moflenet57_follows_table_2():
    model = create_model("moflenet57").eval()
    with torch.no_grad():
        stem = _layer_shapes(model.stem, torch.zeros(1, 1, 256, 64))
        blocks = _layer_shapes(model.stages, torch.zeros(1, 32, 64, 16))
    assert stem == [(128, 32, 8), (64, 16, 32)]
    assert blocks == [(64, 16, 32), (32, 8, 32), (16, 8, 32), (8, 8, 56), (8, 8, 56), (8, 8, 104)]
    expansions = [block.block[0][0] for block in model.stages]
    assert all(conv.groups == 2 for conv in expansions)
    assert all(isinstance(block.block[1], ChannelShuffle) for block in model.stages)


def test_moflenet_front_end_frames_cost_the_same_as_the_table_frames():
    model = create_model("moflenet57")
    assert torchinfo_counts(model, (1, 1, 256, 63)) == torchinfo_counts(model, (1, 1, 256, 64))


def test_bn_folding_keeps_the_function_and_drops_bn_parameters():
    torch.manual_seed(0)
    model = create_model("moflenet57")
    for m in model.modules():  # non-trivial statistics, so folding has something to fold
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.randn(2, 1, 256, 64)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    n_params = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in folded.parameters()) == n_params - bn_channels
    assert model.training is False and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["cp_mobile", "dcase24_baseline_unisa", "moflenet57"])
def test_cp_mobile_family_scales_with_its_arguments(name):
    shape = input_shape(name)
    params, macs = torchinfo_counts(create_model(name), shape)
    wider = torchinfo_counts(create_model(name, channels_multiplier=2.6), shape)
    deeper = torchinfo_counts(create_model(name, n_blocks=(3, 3, 2)), shape)
    no_downsampling = torchinfo_counts(create_model(name, strides={}), shape)
    assert wider[0] > params and wider[1] > macs
    assert deeper[0] > params
    assert no_downsampling[0] == params and no_downsampling[1] > macs


def test_cp_resnet_scales_with_its_arguments():
    shape = input_shape("cp_resnet59")
    params, macs = torchinfo_counts(create_model("cp_resnet59"), shape)
    wider = torchinfo_counts(create_model("cp_resnet59", channels_multiplier=2.0), shape)
    deeper_model = create_model("cp_resnet59", n_blocks=(2, 2, 2))
    deeper = torchinfo_counts(deeper_model, shape)
    assert wider[0] > params and wider[1] > macs
    assert deeper[0] > params
    assert deeper_model(torch.zeros(1, *shape[1:])).shape == (1, 10)
    # Without the two pools report 001 added, the last two blocks run at 2x and 4x the positions.
    unpooled = [dict(groups=1, kernels=[(3, 1), (3, 3)], pools={0: (2, 2), 1: (2, 1), 2: (2, 1)}),
                dict(groups=2, kernels=[(3, 3)], pools={}), dict(groups=1, kernels=[(3, 1)], pools={})]
    no_added_pools = torchinfo_counts(create_model("cp_resnet59", stages=unpooled), shape)
    assert no_added_pools[0] == params and no_added_pools[1] > macs


def test_cp_resnet_widths_follow_the_cp_jku_rule():
    model = CPResNet(channels_multiplier=1.4)
    widths = [m.conv1[0].out_channels for m in model.stages if hasattr(m, "conv1")]
    assert widths == [32, 32, 44, 26]


def test_bad_configs_raise_tinyasc_error():
    with pytest.raises(TinyAscError, match="cut_channels"):
        CPResNet(cut_channels=(0, 0))
    with pytest.raises(TinyAscError, match="groups"):
        CPResNet(channels_multiplier=1.42)  # 45 channels cannot be split into 2 groups
    with pytest.raises(TinyAscError, match="stage row"):
        CPResNet(stages=[dict(groups=1)])
    with pytest.raises(TinyAscError, match="expand_groups"):
        CPMobile(expand_groups=3)


def test_table_4_models_are_the_128k_designs_before_section_4_narrowed_them():
    from tinyasc.models.cp_resnet import TABLE4_ACCURACY as CP_TABLE4
    from tinyasc.models.moflenet import TABLE4_ACCURACY as MOFLE_TABLE4

    cp = create_model("cp_resnet_128k").eval()
    with torch.no_grad():
        shapes = _layer_shapes(cp.stages, cp.stem(torch.zeros(1, 1, 256, 43)))
    # CP-ResNet59's Table 1 without its two added pools, at multiplier 2.0: widths 32, 64, 92
    assert shapes == [(63, 10, 32), (63, 10, 32), (31, 10, 32), (31, 10, 32), (15, 10, 32), (15, 10, 64),
                      (15, 10, 92)]
    mofle = create_model("moflenet_128k")
    assert all(block.block[0][0].groups == 2 and isinstance(block.block[1], ChannelShuffle)
               for block in mofle.stages)
    assert [block.block[-1][0].out_channels for block in mofle.stages] == [32, 32, 32, 80, 80, 200]
    for name in ("cp_resnet_128k", "moflenet_128k"):
        params, macs = torchinfo_counts(create_model(name), input_shape(name))
        assert 0.98 * 128_000 < params <= 128_000 and macs < 30_000_000  # "128k number of parameters"
        assert get_spec(name).report_params == 128_000 and get_spec(name).report_macs is None
    # Table 4, before QAT: MofleNet-128k leads on the full set, CP-ResNet-128k on 10 % and 5 %
    assert MOFLE_TABLE4["moflenet_128k"][100] > CP_TABLE4["cp_resnet_128k"][100]
    assert all(CP_TABLE4["cp_resnet_128k"][s] > MOFLE_TABLE4["moflenet_128k"][s] for s in (10, 5))
