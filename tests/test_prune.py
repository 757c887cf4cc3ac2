"""Structured pruning: channel coupling found from the graph, exact surgery, smaller networks that
still train, and a clear refusal for networks the pruner cannot narrow."""
import pytest
import torch
from torch import nn

from conftest import write_tau_folder
from tinyasc import config as cfgmod
from tinyasc.compress.channels import channel_groups, cut_group, filter_importance, prunable
from tinyasc.compress.prune import prune_model, widths_of
from tinyasc.complexity import torchinfo_counts
from tinyasc.modelfile import load_predictor
from tinyasc.base.errors import TinyAscError
from tinyasc.models import create_model
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


class Shuffled(nn.Module):
    """Grouped convs, a channel shuffle and a concat: nothing a channel cut could keep consistent."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.shuffle = ChannelShuffle(2)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        y = self.a(x)
        z = torch.cat([y, self.shuffle(self.b(y))], dim=1)
        return self.head(z).mean((2, 3))


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3)) if x.sum() > 0 else x.mean((2, 3))


def test_refuses_networks_it_cannot_narrow():
    with pytest.raises(TinyAscError, match="no channel group can be pruned"):
        widths_of(Shuffled().eval(), X)
    with pytest.raises(TinyAscError, match="cannot trace"):
        widths_of(Untraceable().eval(), X)
    assert widths_of(plain_net().eval(), X)  # a plain conv net is supported
