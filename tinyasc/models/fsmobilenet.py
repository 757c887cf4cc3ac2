"""Frequency-split MobileNet (Tsinghua SATLab, DCASE 2023; report 003, submission 1).

Report 003 (Section 2.2, Figure 1): a frequency split block divides the input into a low and a high
band; each band goes through its own convolution block; the two outputs are concatenated back into
one feature map, which a MobileNet depthwise stage processes; then global average pooling, dropout,
and a last convolution block that gives the predictions. 7.946 k parameters, 3.972 M MACs on
log-mel + delta + delta-delta (3 x 256 x 36).

Figure 1's layer sizes are not in the report's text: the band width and the block rows below are
tinyasc's choice, MobileNetV3 blocks without squeeze-excitation (see docs/models/tsinghua_003.md).
"""
from __future__ import annotations

import torch
from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.models.blocks import ConvNormAct, make_divisible
from tinyasc.models.registry import register_model

# The depthwise stage, one MobileNetV3 row per block: (kernel, expanded channels, out channels,
# stride). A block whose expanded width equals its input width has no 1x1 expansion
# (MobileNetV3's first bneck), so rows 2-4 are depthwise-separable convs.
FS_MOBILENET_ROWS = [
    (3, 32, 32, 2),
    (3, 32, 32, 1),
    (3, 32, 32, 2),
    (3, 32, 40, 2),
]

# 2048-sample Hann window, hop 1024 at 44.1 kHz: 44 frames per second; 256 mels; log-mel, delta and
# delta-delta stacked as channels. Report: "to match the number of frames with the delta-delta channel
# length, we cropped the input feature frames to 36": a 5-frame regression delta loses 2 frames at each
# end, the delta-delta 2 more, so 44 - 8 = 36. Deltas come from the whole clip, then 4 frames are cut
# at each side (MelFrontEnd), which leaves exactly the frames that read no padding.
TSINGHUA_FRONTEND = dict(sample_rate=44100, n_fft=2048, win_length=2048, hop_length=1024, n_mels=256,
                         window="hann", deltas=2, delta_width=5, trim_frames=4)


class MobileBottleneck(nn.Module):
    """MobileNetV3 bneck without squeeze-excitation: [1x1 expand], depthwise kxk (stride), 1x1 linear
    projection; identity shortcut when the block keeps resolution and width."""

    def __init__(self, in_channels: int, expanded_channels: int, out_channels: int, kernel_size: int = 3,
                 stride=1):
        super().__init__()
        layers = []
        if expanded_channels != in_channels:
            layers.append(ConvNormAct(in_channels, expanded_channels, 1))
        layers += [
            ConvNormAct(expanded_channels, expanded_channels, kernel_size, stride=stride, groups=expanded_channels),
            ConvNormAct(expanded_channels, out_channels, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride in (1, (1, 1)) and in_channels == out_channels

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class FSMobileNet(nn.Module):
    """Input [B, C, F, T]: bins below ``split_bin`` form the low band, the rest the high band."""

    def __init__(self, n_classes: int = 10, in_channels: int = 3, split_bin: int = 128, band_channels: int = 16,
                 band_kernel: int = 3, band_stride=2, rows=None, width_mult: float = 1.0, dropout: float = 0.2):
        super().__init__()
        rows = FS_MOBILENET_ROWS if rows is None else rows
        if split_bin < 1:
            raise TinyAscError(f"fsmobilenet: split_bin={split_bin} must be a mel bin >= 1 (both bands non-empty)")
        if width_mult <= 0:
            raise TinyAscError(f"fsmobilenet: width_mult={width_mult} must be positive")
        if not rows or any(len(row) != 4 for row in rows):
            raise TinyAscError(f"fsmobilenet: rows={rows!r}: each block row must be (kernel, expanded, out, stride)")
        self.split_bin = split_bin

        def width(c):
            return make_divisible(c * width_mult, 8)

        band = width(band_channels)
        # Separate weights per band: the report processes the two bands "separately".
        self.low_band = ConvNormAct(in_channels, band, band_kernel, stride=band_stride)
        self.high_band = ConvNormAct(in_channels, band, band_kernel, stride=band_stride)
        blocks, cin = [], band
        for kernel, expanded, out, stride in rows:
            stride = tuple(stride) if isinstance(stride, (list, tuple)) else stride
            blocks.append(MobileBottleneck(cin, width(expanded), width(out), kernel, stride))
            cin = width(out)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Dropout(dropout), nn.Conv2d(cin, n_classes, 1))

    def forward(self, x):
        low, high = x[:, :, :self.split_bin], x[:, :, self.split_bin:]
        # Concatenated along frequency: the two bands form one map again (low bins first).
        x = torch.cat([self.low_band(low), self.high_band(high)], dim=2)
        return self.head(self.blocks(x)).flatten(1)


@register_model("fsmobilenet", report="003",
                title="Frequency-split MobileNet (Tsinghua, DCASE 2023)",
                report_params=7_946, report_macs=3_972_000, frontend=TSINGHUA_FRONTEND)
def fsmobilenet(n_classes: int = 10, in_channels: int = 3, **cfg) -> FSMobileNet:
    return FSMobileNet(n_classes=n_classes, in_channels=in_channels, **cfg)
