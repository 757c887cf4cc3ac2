"""CP family (CP-Mobile, DCASE 2024 baseline, report 004's variant, CP-ResNet59, MofleNet57) against
the reports' complexity tables and shapes."""
import pytest
import torch
from torch import nn

from tinyasc.complexity import parameter_bytes, torchinfo_counts
from tinyasc.errors import TinyAscError
from tinyasc.models import create_model, get_spec
from tinyasc.models.blocks import ChannelShuffle
from tinyasc.models.bn_fold import fold_batchnorm, folded_counts
from tinyasc.models.cp_mobile import CPMobile
from tinyasc.models.cp_resnet import CPResNet

# What torchinfo measures the DCASE way on the registered input: any change here is an
# architecture change and must be deliberate.
DCASE_COUNTS = {
    "dcase24_baseline": (61_148, 29_419_156),
    "cp_mobile": (126_952, 31_684_180),
    "dcase24_baseline_unisa": (61_160, 29_428_372),
    "cp_resnet59": (58_360, 15_835_280),
    "moflenet57": (60_440, 12_944_468),
}
MODELS = sorted(DCASE_COUNTS)


def _shape(name):
    return (1, *get_spec(name).input_shape)


@pytest.mark.parametrize("name", MODELS)
def test_dcase_counts_are_pinned(name):
    assert torchinfo_counts(create_model(name), _shape(name)) == DCASE_COUNTS[name]


@pytest.mark.parametrize("name", MODELS)
def test_counts_match_report_within_tolerance(name):
    spec = get_spec(name)
    counter = spec.report_counter or torchinfo_counts
    params, macs = counter(create_model(name), _shape(name))
    assert abs(params / spec.report_params - 1) <= spec.param_tolerance, params
    assert abs(macs / spec.report_macs - 1) <= spec.mac_tolerance, macs


def test_report_001_counted_the_bn_folded_models():
    # Folding closes both residuals to < 0.3 % and makes the stated 117 k total come out.
    resnet = folded_counts(create_model("cp_resnet59"), _shape("cp_resnet59"))
    mofle = folded_counts(create_model("moflenet57"), _shape("moflenet57"))
    assert resnet == (57_980, 15_992_344)
    assert mofle == (58_862, 13_415_552)
    assert round((resnet[0] + mofle[0]) / 1000) == 117
    assert round((resnet[1] + mofle[1]) / 1e5) / 10 == 29.4


@pytest.mark.parametrize("name", MODELS)
def test_one_training_step_changes_weights(name):
    torch.manual_seed(0)
    model = create_model(name)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    logits = model(torch.randn(2, *get_spec(name).input_shape))
    assert logits.shape == (2, 10)
    loss = nn.functional.cross_entropy(logits, torch.tensor([1, 7]))
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    names = [n for n, _ in model.named_parameters()]
    moved = {n for n, b, p in zip(names, before, model.parameters()) if not torch.equal(b, p)}
    conv_weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert conv_weights <= moved
    # A GRN shift feeding straight into conv + train-mode BN gets an exactly zero gradient; nothing else may stall.
    stalled = set(names) - moved
    assert all(n.endswith("grn.beta") for n in stalled), stalled


def test_baseline_is_exactly_the_dcase_check_value():
    model = create_model("dcase24_baseline")
    assert torchinfo_counts(model, (1, 1, 256, 65)) == (61_148, 29_419_156)
    assert parameter_bytes(model, "fp16") == 122_296


def test_cp_mobile_2023_uses_its_own_stride_schedule():
    # With the 2024 baseline's schedule the same widths cost 53.17 M MACs.
    assert torchinfo_counts(create_model("cp_mobile"), (1, 1, 256, 65))[1] == 31_684_180
    baseline_strides = {2: (1, 1), 3: (1, 2), 4: (2, 1)}
    assert torchinfo_counts(create_model("cp_mobile", strides=baseline_strides), (1, 1, 256, 65)) == (
        126_952, 53_174_356)


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
    shape = _shape(name)
    params, macs = torchinfo_counts(create_model(name), shape)
    wider = torchinfo_counts(create_model(name, channels_multiplier=2.6), shape)
    deeper = torchinfo_counts(create_model(name, n_blocks=(3, 3, 2)), shape)
    no_downsampling = torchinfo_counts(create_model(name, strides={}), shape)
    assert wider[0] > params and wider[1] > macs
    assert deeper[0] > params
    assert no_downsampling[0] == params and no_downsampling[1] > macs


def test_cp_resnet_scales_with_its_arguments():
    shape = _shape("cp_resnet59")
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
