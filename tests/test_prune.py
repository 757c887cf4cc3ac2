"""Structured pruning: channel coupling found from the graph (through padding, up-sampling,
concatenation and reshapes too), exact surgery, smaller networks that still train, save, load, go
int8 and export, and a clear refusal for networks the pruner cannot narrow."""
import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import write_tau_folder
from tinyasc import config as cfgmod
from tinyasc.compress.channels import channel_groups, cut_group, filter_importance, prunable, select
from tinyasc.compress.prune import count_params, prune_model, prune_to, rate_for_params, widths_of
from tinyasc.complexity import torchinfo_counts
from tinyasc.deploy.onnx_export import OnnxPredictor, check_onnx, export_onnx
from tinyasc.modelfile import load_predictor
from tinyasc.modelfile import format as artifact
from tinyasc.modelfile.int8 import calibrate, convert, prepare, quiet_ao
from tinyasc.modelfile.shapes import apply_shapes, changed_shapes
from tinyasc.base.errors import TinyAscError
from tinyasc.models import create_model, input_shape
from tinyasc.models.bc_resnet import SubSpectralNorm
from tinyasc.models.blocks import ChannelShuffle, ConvNormAct
from tinyasc.experiment import train

X = torch.randn(2, 1, 64, 33)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYASC_CACHE", str(root / "cache"))
        config = cfgmod.resolve(None, [{"data": {"dir": str(write_tau_folder(root / "tau")), "val_fraction": 0.0},
                                        "trainer": {"epochs": 1, "batch_size": 8, "eval_batch_size": 64},
                                        "schedule": {"warmup_steps": 2}}])
        train(config, root / "run", progress=False)
    return root / "run"


def plain_net():
    return nn.Sequential(ConvNormAct(1, 16, 3, stride=2), ConvNormAct(16, 24, 3), nn.MaxPool2d(2),
                         ConvNormAct(24, 32, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5))


def silence(net, conv, bn, channels):
    """Channels that are exactly zero after conv -> BN -> ReLU: removing them cannot change the output."""
    with torch.no_grad():
        conv.weight[channels] = 0
        bn.running_mean[channels] = 0
        bn.bias[channels] = -1.0


def test_cpmobile_groups_follow_residual_and_depthwise_coupling():
    groups = {frozenset(g.producers): g for g in channel_groups(create_model("dcase24_baseline").eval(), X)}
    stage1 = groups[frozenset({"stem.1.0", "stages.0.block.2.0", "stages.1.block.2.0", "stages.2.block.2.0"})]
    assert stage1.width == 32 and stage1.frozen is None  # stem + 3 residual blocks share their channels
    assert set(stage1.consumers) == {f"stages.{i}.block.0.0" for i in range(4)}
    hidden = groups[frozenset({"stages.0.block.0.0"})]  # expansion -> depthwise -> projection
    assert "stages.0.block.1.0" in hidden.members and hidden.consumers == ["stages.0.block.2.0"]
    assert groups[frozenset({"head.0"})].frozen == "model output"


def test_surgery_is_exact_for_dead_channels():
    torch.manual_seed(0)
    for net in (plain_net().eval(), create_model("dcase24_baseline").eval()):
        if isinstance(net, nn.Sequential):
            silence(net, net[1][0], net[1][1], [1, 5, 7])
            name = "1.0"
        else:
            block = net.stages[4].block
            silence(net, block[0][0], block[0][1], [0, 3, 9])
            silence(net, block[1][0], block[1][1], [0, 3, 9])  # depthwise: zero in, zero out
            name = "stages.4.block.0.0"
        before = net(X)
        group = next(g for g in prunable(channel_groups(net, X)) if g.producers == [name])
        importance = filter_importance(net, group)
        keep = importance.topk(group.width - 3).indices
        assert not set(keep.tolist()) & ({1, 5, 7} if name == "1.0" else {0, 3, 9})  # L1 picks the dead ones
        params = sum(p.numel() for p in net.parameters())
        cut_group(net, group, keep)
        assert torch.allclose(net(X), before, atol=1e-5)
        assert sum(p.numel() for p in net.parameters()) < params


def test_prune_baseline_run_smaller_and_still_trains(run, tmp_path):
    info = prune_model(run, ratio=0.5, steps=2, finetune_epochs=1, out=tmp_path / "p.pt", progress=False)
    hist = info["history"]
    assert [h["rate"] for h in hist] == [0.0, 0.25, 0.5]
    assert hist[0]["params"] > hist[1]["params"] > hist[2]["params"]
    assert hist[0]["macs"] > hist[1]["macs"] > hist[2]["macs"]
    assert (tmp_path / "p.png").stat().st_size > 5000
    pruned = load_predictor(tmp_path / "p.pt")
    params, macs = torchinfo_counts(pruned.network, pruned.input_shape)
    assert (params, macs) == (info["compressed"]["complexity"]["params"], info["compressed"]["complexity"]["macs"])
    assert params < 0.45 * info["float"]["complexity"]["params"] and macs < 0.45 * info["float"]["complexity"]["macs"]
    # The dense narrower network trains: loss on a fixed batch falls under a few optimiser steps.
    net = pruned.network.train()
    feats = pruned.features(torch.randn(8, 32000) * 0.1).clone()
    labels = torch.arange(8) % 3
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = nn.functional.cross_entropy(net(feats), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_target_params_is_met(run, tmp_path):
    info = prune_model(run, target_params=30_000, steps=1, finetune_epochs=0, out=tmp_path / "t.pt", progress=False)
    params = info["compressed"]["complexity"]["params"]
    assert 24_000 < params <= 30_000
    with pytest.raises(TinyAscError, match="unreachable"):
        prune_model(run, target_params=50, steps=1, finetune_epochs=0, progress=False)


def test_target_and_steps_come_from_the_runs_compress_section(run, tmp_path):
    """Without --ratio or --target-params, the run's compress section says (report 003's recipe names
    46,232 parameters); without one there either, prune says what to give."""
    with pytest.raises(TinyAscError, match="names no compress.prune_ratio or compress.prune_target_params"):
        prune_model(run, out=tmp_path / "x.pt", progress=False)
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["config"]["compress"] = {**cfgmod.compress_settings(state["hyper_parameters"]["config"]),
                                                       "prune_target_params": 30_000, "prune_steps": 2,
                                                       "prune_finetune_epochs": 0}
    torch.save(state, tmp_path / "recipe.ckpt")
    info = prune_model(tmp_path / "recipe.ckpt", out=tmp_path / "r.pt", progress=False)
    assert info["steps"] == 2 and info["finetune_epochs"] == 0 and len(info["history"]) == 3
    assert info["compressed"]["complexity"]["params"] <= 30_000


class Shuffled(nn.Module):
    """A channel shuffle between the only conv and the head: no cut could keep its order."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, padding=1)
        self.shuffle = ChannelShuffle(2)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(self.shuffle(self.a(x))).mean((2, 3))


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3)) if x.sum() > 0 else x.mean((2, 3))


def test_refuses_networks_it_cannot_narrow():
    with pytest.raises(TinyAscError, match="no channel group can be pruned .* 5-d view of the channels"):
        widths_of(Shuffled().eval(), X)
    with pytest.raises(TinyAscError, match="cannot trace"):
        widths_of(Untraceable().eval(), X)
    assert widths_of(plain_net().eval(), X)  # a plain conv net is supported


# --- padding, up-sampling, concatenation, reshapes -------------------------------------------------

XS = torch.randn(2, 1, 32, 24)


class PadUpCat(nn.Module):
    """Mini-SegNet's layer kinds and a U-Net's concat: ZeroPad2d before a conv, a max-pool and an
    Upsample back, the two branches concatenated along the channels, BN and a depthwise conv over
    the concatenation, F.pad, F.interpolate, and a flatten into a dense layer."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.ZeroPad2d((1, 1, 0, 1)), ConvNormAct(1, 8, (2, 3), padding=0))
        self.pool = nn.MaxPool2d(2)
        self.b = ConvNormAct(8, 12, 3)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.c = ConvNormAct(8, 6, 3)
        self.bn = nn.BatchNorm2d(18)
        self.dw = ConvNormAct(18, 18, 3, groups=18)
        self.head = ConvNormAct(18, 10, 1)
        self.fc = nn.Linear(10 * 2 * 2, 5)

    def forward(self, x):
        a = self.a(x)
        y = torch.cat([self.up(self.b(self.pool(a))), self.c(a)], dim=1)
        y = self.head(F.pad(self.dw(torch.relu(self.bn(y))), (1, 1, 1, 1)))
        y = F.adaptive_avg_pool2d(F.interpolate(y, scale_factor=2.0), 2)
        return self.fc(torch.flatten(y, 1))


def kill(bn, channels):
    """BN -> ReLU gives exactly zero on ``channels`` when their input is zero."""
    with torch.no_grad():
        bn.running_mean[channels] = 0
        bn.bias[channels] = -1.0


def test_groups_pass_through_padding_upsampling_and_concat():
    groups = {frozenset(g.producers): g for g in channel_groups(PadUpCat().eval(), XS)}
    a, b, c, head = (groups[frozenset({name})] for name in ("a.1.0", "b.0", "c.0", "head.0"))
    assert all(g.frozen is None for g in (a, b, c, head))
    assert set(a.consumers) == {"b.0", "c.0"}  # through ZeroPad2d into b and c, through the max-pool into b
    # Through Upsample and the concat: b's channels come first on the concatenation, c's after them.
    assert b.members == ["b.1", "bn", "dw.0", "dw.1"] and c.members == ["c.1", "bn", "dw.0", "dw.1"]
    assert b.consumers == c.consumers == ["head.0"]
    assert [s.index for s in b.slots["bn"]] == [0] and [s.index for s in c.slots["bn"]] == [1]
    assert head.consumers == ["fc"] and head.slots["fc"][0].factor == 4  # flatten of a 2 x 2 map
    assert groups[frozenset({"fc"})].frozen == "model output"


def test_surgery_is_exact_through_padding_upsampling_and_concat():
    torch.manual_seed(0)
    net = PadUpCat().eval()
    dead = {"a.1.0": [1, 6], "b.0": [0, 4, 11], "c.0": [2, 3], "head.0": [5]}
    with torch.no_grad():
        net.a[1][0].weight[dead["a.1.0"]] = 0
        kill(net.a[1][1], dead["a.1.0"])
        for branch, offset in ((net.b, 0), (net.c, 12)):  # silenced before and after the concat
            channels = dead["b.0" if offset == 0 else "c.0"]
            branch[0].weight[channels] = 0
            kill(branch[1], channels)
            kill(net.bn, [offset + ch for ch in channels])
            kill(net.dw[1], [offset + ch for ch in channels])  # a depthwise conv maps zero to zero
        net.head[0].weight[dead["head.0"]] = 0
        kill(net.head[1], dead["head.0"])
    before, params = net(XS), count_params(net)
    # One analysis, four cuts: each cut moves the offsets the later ones use on the shared layers.
    for g in prunable(channel_groups(net, XS)):
        if g.producers[0] in dead:
            keep = filter_importance(net, g).topk(g.width - len(dead[g.producers[0]])).indices
            assert not set(keep.tolist()) & set(dead[g.producers[0]])  # L1 finds the silenced filters
            cut_group(net, g, keep)
    assert (net.bn.num_features, net.dw[0].groups, net.head[0].in_channels, net.fc.in_features) == (13, 13, 13, 36)
    assert torch.allclose(net(XS), before, atol=1e-5)
    assert count_params(net) < params


class SubBands(nn.Module):
    """BC-ResNet's SubSpectralNorm folds 4 sub-bands into the channels (reshape to C x 4 channels,
    BN, reshape back); ``constant`` writes the folded width as a number instead of reading it."""

    def __init__(self, constant: bool = False):
        super().__init__()
        self.conv = ConvNormAct(1, 8, 3)
        self.ssn = SubSpectralNorm(8, 4)
        self.head = nn.Conv2d(8, 5, 1)
        self.constant = constant

    def forward(self, x):
        y = self.conv(x)
        if self.constant:
            y = y.reshape(y.shape[0], 32, -1, y.shape[3]).reshape(y.shape)
        return self.head(torch.relu(self.ssn(y))).mean((2, 3))


def test_reshapes_fold_channels_and_constants_freeze():
    net = SubBands().eval()
    group = next(g for g in prunable(channel_groups(net, XS)) if g.producers == ["conv.0"])
    assert group.members == ["conv.1", "ssn.bn"] and group.slots["ssn.bn"][0].factor == 4
    dead = [2, 5]
    with torch.no_grad():
        net.conv[0].weight[dead] = 0
        kill(net.conv[1], dead)
        kill(net.ssn.bn, [4 * ch + s for ch in dead for s in range(4)])
    before = net(XS)
    cut_group(net, group, filter_importance(net, group).topk(6).indices)
    assert net.ssn.bn.num_features == 24 and torch.allclose(net(XS), before, atol=1e-5)
    frozen = {frozenset(g.producers): g.frozen for g in channel_groups(SubBands(constant=True).eval(), XS)}
    assert "channel count is not read from the tensor" in frozen[frozenset({"conv.0"})]


class Grouped(nn.Module):
    """CP-ResNet's grouped stage: a 2-group conv whose output is added back to its input."""

    def __init__(self):
        super().__init__()
        self.a = ConvNormAct(1, 8, 3)
        self.b = ConvNormAct(8, 8, 3, groups=2)
        self.head = nn.Conv2d(8, 5, 1)

    def forward(self, x):
        y = self.a(x)
        return self.head(y + self.b(y)).mean((2, 3))


def test_grouped_convs_keep_the_same_channels_in_every_group():
    net = Grouped().eval()
    group = next(g for g in prunable(channel_groups(net, XS)) if "a.0" in g.producers)
    assert set(group.producers) == {"a.0", "b.0"} and group.consumers == ["b.0", "head"] and group.blocks == 2
    importance = torch.arange(8.0)  # locals 2 and 3 win in the sum over the two blocks (2 + 6, 3 + 7)
    assert select(importance, group, 4).tolist() == [2, 3, 6, 7]
    with pytest.raises(TinyAscError, match="every one of its 2 blocks must keep the same channels"):
        cut_group(copy.deepcopy(net), group, torch.tensor([0, 1, 6, 7]))
    dead = [1, 5]  # local channel 1 of both groups
    with torch.no_grad():
        for conv, bn in ((net.a[0], net.a[1]), (net.b[0], net.b[1])):
            conv.weight[dead] = 0
            kill(bn, dead)
    before = net(XS)
    keep = select(filter_importance(net, group), group, 6)
    assert keep.tolist() == [0, 2, 3, 4, 6, 7]  # L1 finds the silenced pair
    cut_group(net, group, keep)
    assert (net.b[0].in_channels, net.b[0].out_channels, net.b[0].groups) == (6, 6, 2)
    assert torch.allclose(net(XS), before, atol=1e-5)


# --- Mini-SegNet: report 003's 276 k -> 46 k ----------------------------------------------------------

def pruned_mini_segnet(filters_only=False):
    torch.manual_seed(0)
    net = create_model("mini_segnet").eval()
    x = torch.randn(2, *input_shape("mini_segnet")[1:])
    original = widths_of(net, x[:1], filters_only)
    rate = rate_for_params(net, original, 47_000, x[:1])
    prune_to(net, original, rate, x[:1])
    return net, x, rate


def test_mini_segnet_prunes_to_the_report_size():
    net, x, rate = pruned_mini_segnet()
    assert len(widths_of(create_model("mini_segnet").eval(), x[:1])) == 7  # 6 conv groups and the dense layer
    assert 0.5 < rate < 0.7 and 45_000 < count_params(net) <= 47_000
    assert net(x).shape == (2, 10)
    # Report 003's variant: only conv filters go, the 1024-unit dense layer stays; fewer MACs.
    filters, _, filter_rate = pruned_mini_segnet(filters_only=True)
    assert filters.classifier[0].out_features == 1024 and 0.6 < filter_rate < 0.8
    assert 40_000 < count_params(filters) <= 47_000
    assert torchinfo_counts(filters, x[:1].shape)[1] < 25e6 < torchinfo_counts(net, x[:1].shape)[1]


def mini_segnet_record(tmp_path):
    """A pruned Mini-SegNet with BN statistics that matter (a lost or misplaced one shows in the
    outputs), its int8 network, and a record of its float network saved and loaded back."""
    net, x, _ = pruned_mini_segnet()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    hyper = {"config": cfgmod.resolve(None, model="mini_segnet"), "devices": ["a", "b"],
             "classes": [f"scene{i}" for i in range(10)]}
    shapes = changed_shapes(net, create_model("mini_segnet"))
    artifact.save(tmp_path / "pruned.pt", artifact.network_record(net, hyper, shapes=shapes))
    prepared = prepare(net, "ptq", x[:1])
    calibrate(prepared, [x, torch.randn_like(x)])
    return net, x, hyper, shapes, convert(prepared)


def test_pruned_mini_segnet_saves_loads_goes_int8_and_exports(tmp_path):
    net, x, hyper, shapes, int8 = mini_segnet_record(tmp_path)
    # the first conv and its mixup normalization (report 003), a decoder conv, both dense layers
    assert {"stages.0.0.1.0", "stages.0.0.2", "stages.2.1.1.0", "classifier.0", "classifier.3"} <= shapes.keys()
    loaded = load_predictor(tmp_path / "pruned.pt")
    assert loaded.input_shape[1:] == x.shape[1:] and loaded.describe() == "mini_segnet pruned (fp32)"
    # The predictor runs channels-last: equal to the NCHW network within float rounding.
    torch.testing.assert_close(loaded.logits_from_features(x), net(x).detach(), rtol=1e-5, atol=1e-6)
    assert loaded.complexity()["params"] == count_params(net)
    with quiet_ao():  # int8 conversion of the narrowed network, close to its float self
        got = int8(x)
    assert got.shape == (2, 10) and (got - net(x)).abs().max() < 0.25 * net(x).abs().max()
    # ONNX: the pruned float network exports and ONNX Runtime agrees.
    pytest.importorskip("onnxruntime", reason="the extra tinyasc[onnx] is not installed")
    path = export_onnx(loaded, tmp_path / "pruned.onnx")
    waves = torch.randn(3, int(loaded.sample_rate * loaded.duration)) * 0.1
    assert check_onnx(loaded, OnnxPredictor(loaded, path), [(waves,)])["ok"]


def test_pruned_mini_segnet_int8_file_loads_back(tmp_path):
    net, x, hyper, shapes, int8 = mini_segnet_record(tmp_path)
    with quiet_ao():
        expected = int8(x)
    artifact.save(tmp_path / "int8.pt", artifact.network_record(int8, hyper, "int8", "ptq", shapes))
    loaded = load_predictor(tmp_path / "int8.pt")  # the pruned widths rebuild the int8 skeleton
    assert loaded.describe() == "mini_segnet pruned (int8)"
    assert torch.equal(loaded.logits_from_features(x), expected)


def test_recorded_shapes_of_other_layer_kinds_are_refused():
    net = create_model("mini_segnet")
    with pytest.raises(TinyAscError, match="ZeroPad2d, a kind of layer pruning does not narrow"):
        apply_shapes(copy.deepcopy(net), {"stages.0.0.0": {"out": 3}})
    with pytest.raises(TinyAscError, match="needs positive integers in, out, groups"):
        apply_shapes(copy.deepcopy(net), {"stages.0.0.1.0": {"in": 3, "out": 5}})
    with pytest.raises(TinyAscError, match="do not split into 3 groups"):
        apply_shapes(copy.deepcopy(net), {"stages.0.0.1.0": {"in": 3, "out": 5, "groups": 3}})
