"""Ghost-BC-Res2Net (KT Corporation, DCASE 2023; report 000, Table 2).

BC-Res2Net (Lee et al., HYU DCASE 2022) is BC-ResNet whose frequency- and temporal-depthwise units
are split into channel groups processed hierarchically, Res2Net style: each group's conv also sees
the previous group's output, so one block mixes several receptive-field sizes. KT then replaced
convs with Ghost modules (a thin primary conv plus a cheap depthwise conv that makes the rest of
the channels). Report 000 names every block a "Ghost-BC-Res2Net Block", so here every 1x1 conv of
every block is a Ghost module and the width C is fitted to the report's figures (see GHOST_BLOCKS
and docs/models/bc_family.md).
"""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.models.bc_resnet import (BroadcastResidualBlock, ResNorm, frequency_depthwise, pointwise_conv,
                                      temporal_depthwise, transition_conv)
from tinyasc.models.blocks import make_divisible
from tinyasc.models.registry import register_model


def _half(kernel_size):
    """'Same' padding of an odd kernel, int or (kh, kw)."""
    return kernel_size // 2 if isinstance(kernel_size, int) else tuple(k // 2 for k in kernel_size)


class GhostModule(nn.Module):
    """GhostNet module (Han et al., 2020): primary conv to ceil(out / ratio) channels, a cheap
    depthwise conv that derives the remaining ones from them, concatenate, keep ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, ratio: int = 2,
                 cheap_kernel: int = 3, act: bool = True):
        super().__init__()
        self.out_channels = out_channels
        primary = math.ceil(out_channels / ratio)
        self.primary = nn.Sequential(
            nn.Conv2d(in_channels, primary, kernel_size, stride=stride, padding=_half(kernel_size), bias=False),
            nn.BatchNorm2d(primary),
            nn.ReLU() if act else nn.Identity(),
        )
        self.cheap = nn.Sequential(
            nn.Conv2d(primary, primary * (ratio - 1), cheap_kernel, padding=_half(cheap_kernel), groups=primary,
                      bias=False),
            nn.BatchNorm2d(primary * (ratio - 1)),
            nn.ReLU() if act else nn.Identity(),
        )

    def forward(self, x):
        x = self.primary(x)
        return torch.cat([x, self.cheap(x)], dim=1)[:, :self.out_channels]


class Res2NetSplit(nn.Module):
    """Res2Net-style hierarchical split: channels in ``scales`` equal groups; group 0 passes
    unchanged, group 1 goes through its branch, group i >= 2 through its branch after adding the
    output of group i - 1. ``make_branch(group_channels)`` builds one branch."""

    def __init__(self, channels: int, scales: int, make_branch):
        super().__init__()
        if scales < 2 or channels % scales:
            raise TinyAscError(f"Res2NetSplit: {channels} channels do not split into {scales} equal groups "
                               "(need scales >= 2 dividing the width)")
        self.scales = scales
        self.branches = nn.ModuleList(make_branch(channels // scales) for _ in range(scales - 1))

    def forward(self, x):
        groups = torch.chunk(x, self.scales, dim=1)
        outs = [groups[0]]
        for i, branch in enumerate(self.branches, start=1):
            outs.append(branch(groups[i] if i == 1 else groups[i] + outs[-1]))
        return torch.cat(outs, dim=1)


def res2net_frequency(channels: int, sub_bands: int = 4, scales: int = 4) -> nn.Module:
    return Res2NetSplit(channels, scales, partial(frequency_depthwise, sub_bands=sub_bands))


def res2net_temporal(channels: int, scales: int = 4) -> nn.Module:
    return Res2NetSplit(channels, scales, temporal_depthwise)


def ghost_transition(in_channels: int, out_channels: int) -> nn.Module:
    # Cheap op 1x1 (GhostNet's d = 1): a 3x3 one on the full map costs 3 % more MACs than the report
    # states at the width that fits its parameters (GHOST_BLOCKS).
    return GhostModule(in_channels, out_channels, cheap_kernel=1)


def ghost_pointwise(channels: int) -> nn.Module:
    # It works on the 1 x T frequency average, so the cheap conv runs along time only (a 3x3 one would
    # have six of its nine weights facing padding). No activation: it replaces BC-ResNet's plain 1x1
    # conv, whose output is added before the block's ReLU.
    return GhostModule(channels, channels, cheap_kernel=(1, 3), act=False)


def bc_res2net_block(in_channels: int, out_channels: int, sub_bands: int = 4, scales: int = 4,
                     dropout: float = 0.1, ghost=()) -> BroadcastResidualBlock:
    """Broadcast-residual block with Res2Net units; ``ghost`` names the 1x1 convs made Ghost modules:
    "transition" (the width-changing conv of a transition block) and/or "pointwise" (the 1x1 after
    the temporal unit)."""
    ghost = {ghost} if isinstance(ghost, str) else set(ghost)
    unknown = ghost - {"transition", "pointwise"}
    if unknown:
        raise TinyAscError(f"bc_res2net_block: unknown ghost conv(s) {sorted(unknown)}; "
                           "choose from 'transition', 'pointwise'")
    return BroadcastResidualBlock(
        in_channels, out_channels, sub_bands=sub_bands, dropout=dropout,
        freq_unit=partial(res2net_frequency, scales=scales),
        temporal_unit=partial(res2net_temporal, scales=scales),
        transition_unit=ghost_transition if "transition" in ghost else transition_conv,
        pointwise_unit=ghost_pointwise if "pointwise" in ghost else pointwise_conv,
    )


# Report 000, Table 2: one row per stage, (width as a multiple of C, blocks, 2x2 max-pool before the
# stage). The first block of each stage is a transition block; the stem conv has stride 2.
GHOST_BC_RES2NET_STAGES = [
    (1.0, 2, False),
    (1.5, 2, True),
    (2.0, 2, True),
    (2.5, 3, False),
]
# Which 1x1 convs are Ghost modules, by block number over the whole network (b1..b9): all of them
# (Table 2 builds every block as a Ghost-BC-Res2Net block). Ghost modules halve the 1x1 convs, so the
# width grows to reach the report's size: C = 53 (widths 52 / 80 / 108 / 132, stem 106) gives 81,994
# params (-1.9 %) and 15.02 M MACs (+3.0 %), the closest fit to both figures of any C, stem 3x3 or 5x5
# and cheap kernel (docs/models/bc_family.md lists the measured alternatives).
GHOST_BLOCKS = {block: ("transition", "pointwise") for block in range(1, 10)}
GHOST_WIDTH = 53


class GhostBCRes2Net(nn.Module):
    """Stem conv (2C, stride 2) + ReLU + BN, BC-Res2Net stages, global average pool, Linear.

    ResNorm on the input and before every transition block, as in BC-ResNet (report 002).
    """

    def __init__(self, n_classes: int = 10, in_channels: int = 1, width: int = GHOST_WIDTH,
                 stages=GHOST_BC_RES2NET_STAGES,
                 ghost: dict | None = None, stem_kernel: int = 5, stem_stride: int = 2, stem_bias: bool = True,
                 scales: int = 4, sub_bands: int = 4, dropout: float = 0.1, res_norm: bool = True,
                 res_norm_lambda: float = 0.1):
        super().__init__()
        if width < 1 or not stages:
            raise TinyAscError(f"GhostBCRes2Net: width must be >= 1 and stages non-empty (got width={width}, "
                               f"stages={stages!r})")
        if ghost is None:  # every block, however many the stages give
            ghost = {block: GHOST_BLOCKS[1] for block in range(1, sum(int(row[1]) for row in stages) + 1)}
        ghost = {int(k): v for k, v in ghost.items()}
        norm = (lambda: ResNorm(res_norm_lambda)) if res_norm else nn.Identity
        stem_channels = 2 * width
        self.input_norm = norm()
        # Table 2 orders the stem Conv, ReLU, BN; with BN after the ReLU the conv bias is not redundant.
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, stem_kernel, stride=stem_stride, padding=stem_kernel // 2,
                      bias=stem_bias),
            nn.ReLU(),
            nn.BatchNorm2d(stem_channels),
        )
        layers, cin, index = [], stem_channels, 0
        for multiple, n_blocks, pool_before in stages:
            # Widths rounded to a multiple of ``scales`` so the hierarchical split has equal groups.
            cout = make_divisible(multiple * width, scales)
            if pool_before:
                layers.append(nn.MaxPool2d(2))
            for i in range(n_blocks):
                index += 1
                block_in = cin if i == 0 else cout
                if block_in != cout:
                    layers.append(norm())
                layers.append(bc_res2net_block(block_in, cout, sub_bands=sub_bands, scales=scales,
                                               dropout=dropout, ghost=ghost.pop(index, ())))
            cin = cout
        if ghost:
            raise TinyAscError(f"GhostBCRes2Net: ghost names block(s) {sorted(ghost)} but the network has "
                               f"{index} blocks")
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, n_classes)

    def forward(self, x):
        x = self.stages(self.stem(self.input_norm(x)))
        return self.classifier(self.pool(x).flatten(1))


# Report 000 section 3.1: 16 kHz, n_fft = window = 2048, hop 512, 256 mel bins -> 256 x 32 per second.
REPORT000_FRONTEND = dict(sample_rate=16000, n_fft=2048, win_length=2048, hop_length=512, n_mels=256)


@register_model("ghost_bc_res2net", report="000",
                title="Ghost-BC-Res2Net (KT Corporation, DCASE 2023)",
                report_params=83_570, report_macs=14_579_000, frontend=REPORT000_FRONTEND,
                defaults=dict(width=GHOST_WIDTH))
def ghost_bc_res2net(n_classes: int = 10, in_channels: int = 1, **cfg) -> GhostBCRes2Net:
    return GhostBCRes2Net(n_classes=n_classes, in_channels=in_channels, **cfg)
