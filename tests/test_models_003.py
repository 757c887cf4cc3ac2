"""Report 003 (Tsinghua, DCASE 2023): the frequency-split MobileNet and Mini-SegNet before and after
70 % filter pruning, against the report's figures and its description of the layers."""
import pytest
import torch
from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.complexity import torchinfo_counts
from tinyasc.modelfile.int8 import float_islands, int8_skeleton
from tinyasc.audio.features import MelFrontEnd
from tinyasc.models import create_model, frontend_config, input_shape
from tinyasc.models.fsmobilenet import FSMobileNet
from tinyasc.models.mini_segnet import DENSE_UNITS, PRUNED_WIDTHS, WIDTHS, MiniSegNet, MixupNorm

# Pinned counts, the report-tolerance check (report 003 gives no MACs for the unpruned Mini-SegNet) and the
# training step of every model: tests/test_model_zoo.py.


def _conv_widths(model):
    return tuple(m.out_channels for m in model.stages.modules() if isinstance(m, nn.Conv2d))


def test_frequency_split_keeps_the_bands_apart_until_the_concat():
    torch.manual_seed(0)
    model = create_model("fsmobilenet").eval()
    maps = []
    model.blocks.register_forward_pre_hook(lambda module, args: maps.append(args[0]))
    x = torch.randn(1, 3, 256, 36)
    louder_highs = x.clone()
    louder_highs[:, :, 128:] += 1.0
    with torch.no_grad():
        model(x)
        model(louder_highs)
    assert maps[0].shape == (1, 16, 128, 18)  # two 64-bin bands, concatenated along frequency
    assert torch.equal(maps[0][:, :, :64], maps[1][:, :, :64])  # the low band never sees the high bins
    assert not torch.allclose(maps[0][:, :, 64:], maps[1][:, :, 64:])


def test_fsmobilenet_follows_its_rows():
    model = create_model("fsmobilenet").eval()
    x = torch.zeros(1, 16, 128, 18)
    shapes = []
    with torch.no_grad():
        for block in model.blocks:
            x = block(x)
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(32, 64, 9), (32, 64, 9), (32, 32, 5), (40, 16, 3)]
    # Only the first block expands (16 -> 32); only the stride-1 block with equal widths adds its input.
    assert [len(block.block) for block in model.blocks] == [3, 2, 2, 2]
    assert [block.residual for block in model.blocks] == [False, True, False, False]


def test_mini_segnet_follows_section_2_2():
    model = create_model("mini_segnet").eval()
    x = torch.zeros(1, 3, 256, 36)
    shapes = []
    with torch.no_grad():
        for stage in model.stages:
            x = stage(x)
            shapes.append(tuple(x.shape[1:]))
    # encoder 1 (conv, pool), encoder 2 (conv, pool, conv, pool), decoder 1 (up, conv, conv), decoder 2 (up, conv)
    assert shapes == [(48, 128, 18), (128, 32, 4), (48, 64, 8), (48, 128, 16)]
    convs = [m for m in model.stages.modules() if isinstance(m, nn.Conv2d)]
    assert all(conv.kernel_size == (2, 3) for conv in convs)
    assert len(convs) == 6
    # mixup normalization after the first encoder conv and the DeConv block 2 conv, BN after the others
    norms = [type(m).__name__ for m in model.stages.modules() if isinstance(m, (nn.BatchNorm2d, MixupNorm))]
    assert norms == ["MixupNorm", "BatchNorm2d", "BatchNorm2d", "BatchNorm2d", "BatchNorm2d", "MixupNorm"]
    plain = create_model("mini_segnet", mixup_norm=False)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules()) == 6
    assert torchinfo_counts(plain, (1, 3, 256, 36)) == torchinfo_counts(model, (1, 3, 256, 36))
    dense = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(48, 1024), (1024, 10)]


def test_pruned_variant_is_the_same_network_with_70_percent_of_the_filters_removed():
    full, pruned = create_model("mini_segnet"), create_model("mini_segnet_pruned")
    assert type(full) is type(pruned) is MiniSegNet
    assert _conv_widths(full) == WIDTHS and _conv_widths(pruned) == PRUNED_WIDTHS
    assert round(1 - sum(PRUNED_WIDTHS) / sum(WIDTHS), 3) == 0.700
    assert all(0.28 <= p / w <= 0.32 for p, w in zip(PRUNED_WIDTHS, WIDTHS))
    assert pruned.classifier[0].out_features == full.classifier[0].out_features == DENSE_UNITS
    # Same parameter names, every tensor no larger: the pruned weights are a slice of the full ones.
    full_state, pruned_state = full.state_dict(), pruned.state_dict()
    assert full_state.keys() == pruned_state.keys()
    assert all(all(a <= b for a, b in zip(pruned_state[k].shape, full_state[k].shape)) for k in full_state)


@pytest.mark.parametrize("name, islands", [("fsmobilenet", []), ("mini_segnet_pruned", ["MixupNorm"])])
def test_converts_to_int8_with_only_mixup_norm_left_float(name, islands):
    # The report quantises every parameter to int8; mixup normalization (instance statistics, rsqrt)
    # has no int8 kernel in torch, so its two layers stay float, everything else runs in int8.
    model = create_model(name).eval()
    x = torch.randn(input_shape(name))
    quantized = int8_skeleton(model, x)
    assert quantized(x).shape == (1, 10)
    assert sorted({name.split("(")[-1].rstrip(")") for name in float_islands(quantized)}) == islands
    assert len(float_islands(quantized)) == 2 * len(islands)


def test_mixup_norm_is_instance_norm_in_eval_and_mixes_statistics_in_training():
    torch.manual_seed(0)
    norm = MixupNorm(4, alpha=0.3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.0]).view(1, 4, 1, 1))
        norm.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 3.0]).view(1, 4, 1, 1))
    # clips with very different per-channel levels and gains (a device's colouring)
    x = torch.randn(8, 4, 16, 10) * torch.rand(8, 4, 1, 1).mul(5).add(0.5) + torch.randn(8, 4, 1, 1) * 10
    norm.eval()
    y = norm(x)
    var, mean = torch.var_mean(y, dim=(2, 3), unbiased=False)
    assert torch.allclose(mean, norm.bias.view(1, 4).expand(8, 4), atol=1e-4)  # each clip, each channel
    assert torch.allclose(var.sqrt(), norm.weight.view(1, 4).abs().expand(8, 4), atol=1e-3)
    assert torch.allclose(norm(x[:1]), y[:1], atol=1e-5)  # independent of the rest of the batch
    norm.train()
    y_train = norm(x)
    _, mean_t = torch.var_mean(y_train, dim=(2, 3), unbiased=False)
    assert (mean_t - norm.bias.view(1, 4)).abs().max() > 0.1  # another clip's statistics leak in
    assert torch.allclose(norm(x[:1]), y[:1], atol=1e-5)  # a lone clip has no partner: its own statistics
    norm.alpha = 0.0
    assert torch.allclose(norm(x), y, atol=1e-5)  # alpha 0 switches the mixing off


def test_deltas_come_from_the_whole_clip_before_the_edges_are_cut():
    # Report 003: 44 frames, 5-frame deltas and delta-deltas, cropped to the 36 frames the delta-delta
    # has without padding; the kept frames equal the same computation without any padding.
    fe = MelFrontEnd(**frontend_config("fsmobilenet"))
    wave = torch.randn(1, 44100) * 0.1
    feats = fe(wave)
    full = MelFrontEnd(**{**frontend_config("fsmobilenet"), "deltas": 0, "trim_frames": 0})(wave)[0, 0]
    assert full.shape[-1] == 44 and feats.shape == (1, 3, 256, 36)

    def valid_delta(x):  # (x[t+1] - x[t-1] + 2 (x[t+2] - x[t-2])) / 10, no padding: 4 frames fewer
        return (x[:, 3:-1] - x[:, 1:-3] + 2 * (x[:, 4:] - x[:, :-4])) / 10

    d = valid_delta(full)
    dd = valid_delta(d)
    torch.testing.assert_close(feats[0, 0], full[:, 4:-4])
    torch.testing.assert_close(feats[0, 1], d[:, 2:-2], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(feats[0, 2], dd, rtol=1e-4, atol=1e-4)


def test_fsmobilenet_scales_with_its_arguments():
    shape = input_shape("fsmobilenet")
    params, macs = torchinfo_counts(create_model("fsmobilenet"), shape)
    wider = torchinfo_counts(create_model("fsmobilenet", width_mult=1.5), shape)
    deeper_rows = [(3, 32, 32, 2), (3, 32, 32, 1), (3, 32, 32, 2), (3, 64, 40, 1), (3, 80, 40, 2)]
    deeper = torchinfo_counts(create_model("fsmobilenet", rows=deeper_rows), shape)
    no_band_stride = torchinfo_counts(create_model("fsmobilenet", band_stride=1), shape)
    assert wider[0] > params and wider[1] > macs
    assert deeper[0] > params
    assert no_band_stride[0] == params and no_band_stride[1] > macs
    uneven = create_model("fsmobilenet", split_bin=64)  # a narrower low band: same weights, same logits shape
    assert torchinfo_counts(uneven, shape)[0] == params
    assert uneven(torch.zeros(2, 3, 256, 36)).shape == (2, 10)


def test_mini_segnet_scales_with_its_arguments():
    shape = input_shape("mini_segnet")
    params, macs = torchinfo_counts(create_model("mini_segnet"), shape)
    wider = torchinfo_counts(create_model("mini_segnet", widths=tuple(2 * w for w in WIDTHS)), shape)
    small_dense = torchinfo_counts(create_model("mini_segnet", dense_units=512), shape)
    deeper_layout = [["conv", "pool"], ["conv", "pool", "conv", "pool"], ["up", "conv", "conv"], ["up", "conv", "conv"]]
    deeper = torchinfo_counts(create_model("mini_segnet", layout=deeper_layout, widths=(*WIDTHS, 48)), shape)
    time_kept = torchinfo_counts(create_model("mini_segnet", pool_size=(2, 1)), shape)
    assert wider[0] > params and wider[1] > macs
    assert small_dense[0] == params - 512 * (48 + 1 + 10)
    assert deeper[0] > params and deeper[1] > macs
    assert time_kept[0] == params and time_kept[1] > macs


def test_bad_configs_raise_tinyasc_error():
    with pytest.raises(TinyAscError, match="widths"):
        MiniSegNet(widths=(8, 8))
    with pytest.raises(TinyAscError, match="unknown layers"):
        MiniSegNet(layout=[["conv", "deconv"]], widths=(8,))
    with pytest.raises(TinyAscError, match="dense_units"):
        MiniSegNet(dense_units=0)
    with pytest.raises(TinyAscError, match="split_bin"):
        FSMobileNet(split_bin=0)
    with pytest.raises(TinyAscError, match="rows"):
        FSMobileNet(rows=[(3, 32, 32)])
    with pytest.raises(TinyAscError, match="width_mult"):
        FSMobileNet(width_mult=0)
