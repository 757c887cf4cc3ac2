"""MobileNetV2 with coordinate attention (UESTC, DCASE 2022; report 002, Tables 2-4).

A Keras model: its convs keep their bias (all but the last two 1x1 convs), and the report's
parameter count (110,452) includes the BatchNorm moving mean and variance. Three of its BN layers
have no scale or offset at all (Table 2 lists them at 2 x channels: moving statistics only); here
they are ``BatchNorm2d(affine=False)``. The DCASE way (torchinfo) counts 105,888 parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from tinyasc.models.blocks import ConvNormAct
from tinyasc.models.registry import register_model

# Report 002, Table 2: per stage (out_channels, stride of its first block, blocks). Every block
# expands x2 (Tables 3-4); the first block of a stage is the strided "bottleneck", the others
# are "bottleneck-res" (identity shortcut).
STAGES = [
    (32, 2, 3),
    (48, 2, 3),
    (64, 2, 3),
]


class Bottleneck(nn.Module):
    """MobileNetV2 inverted residual (Tables 3-4): 1x1 expand, depthwise 3x3, 1x1 linear project."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: int = 2):
        super().__init__()
        hidden = in_channels * expansion
        self.block = nn.Sequential(
            ConvNormAct(in_channels, hidden, 1, bias=True),
            ConvNormAct(hidden, hidden, 3, stride=stride, groups=hidden, bias=True),
            ConvNormAct(hidden, out_channels, 1, bias=True, act=None),
        )
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class CoordinateAttention(nn.Module):
    """Coordinate attention (Hou et al., CVPR 2021): pool along each axis, shared 1x1 conv + BN +
    h-swish on the two strips, then one sigmoid gate per axis."""

    def __init__(self, channels: int, reduction: int = 4, min_channels: int = 8):
        super().__init__()
        mip = max(min_channels, channels // reduction)
        self.shared = ConvNormAct(channels, mip, 1, bias=True, act=nn.Hardswish)
        self.gate_f = nn.Conv2d(mip, channels, 1)
        self.gate_t = nn.Conv2d(mip, channels, 1)

    def forward(self, x):
        f, t = x.shape[2], x.shape[3]
        strip_f = x.mean(dim=3, keepdim=True)  # [B, C, F, 1]
        strip_t = x.mean(dim=2, keepdim=True).transpose(2, 3)  # [B, C, T, 1]
        y_f, y_t = self.shared(torch.cat([strip_f, strip_t], dim=2)).split([f, t], dim=2)
        return x * self.gate_f(y_f).sigmoid() * self.gate_t(y_t.transpose(2, 3)).sigmoid()


class MobileNetV2CA(nn.Module):
    def __init__(self, n_classes: int = 10, in_channels: int = 3, stages=None, stem_channels: int = 32,
                 head_channels: int = 64, expansion: int = 2, ca_reduction: int = 4, dropout: float = 0.3):
        super().__init__()
        stages = STAGES if stages is None else stages
        self.stem = ConvNormAct(in_channels, stem_channels, 3, stride=2, bias=True)
        blocks, cin = [], stem_channels
        for cout, stride, repeats in stages:
            for i in range(repeats):
                blocks.append(Bottleneck(cin, cout, stride=stride if i == 0 else 1, expansion=expansion))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            ConvNormAct(cin, head_channels, 1, bias=True),
            nn.BatchNorm2d(head_channels, affine=False), nn.ReLU(),
            nn.Conv2d(head_channels, head_channels, 1, bias=False),
            nn.Dropout(dropout),
            CoordinateAttention(head_channels, reduction=ca_reduction),
            nn.BatchNorm2d(head_channels, affine=False),
            nn.Conv2d(head_channels, n_classes, 1, bias=False),
            nn.BatchNorm2d(n_classes, affine=False),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x):
        return self.head(self.blocks(self.stem(x))).flatten(1)


# 128 mels from a 2048-sample Hamming window, 50 % overlap at 44.1 kHz (44 frames per second),
# log-mel + delta + delta-delta from the whole clip, then 4 frames trimmed at each side -> 3 x 128 x 36:
# the report's 36 frames are what 5-frame deltas leave without padding (44 - 2 x 4).
UESTC_FRONTEND = dict(sample_rate=44100, n_fft=2048, win_length=2048, hop_length=1024, n_mels=128,
                      window="hamming", deltas=2, delta_width=5, trim_frames=4)


@register_model("mobilenetv2_ca", report="002",
                title="MobileNetV2 + coordinate attention (UESTC, DCASE 2022)",
                report_params=110_452, report_macs=11_186_000, counting="keras",
                frontend=UESTC_FRONTEND)
def mobilenetv2_ca(n_classes: int = 10, in_channels: int = 3, **cfg) -> MobileNetV2CA:
    return MobileNetV2CA(n_classes=n_classes, in_channels=in_channels, **cfg)
