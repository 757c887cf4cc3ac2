"""Building blocks shared by the model families.

``ConvNormAct`` is the conv + BN (+ activation) triple every model repeats; keeping it one module
makes int8 fusion one rule (``fuse_spec``) instead of one per model.
"""
from __future__ import annotations

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10 % (MobileNet rule)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvNormAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation (any of them optional)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None,
                 groups: int = 1, bias: bool = False, norm: bool = True, act: type[nn.Module] | None = nn.ReLU,
                 dilation=1):
        if padding is None:
            ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            dl = (dilation, dilation) if isinstance(dilation, int) else dilation
            padding = tuple((k - 1) // 2 * d for k, d in zip(ks, dl))
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                            groups=groups, bias=bias, dilation=dilation)]
        if norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class GRN(nn.Module):
    """Global Response Normalisation (ConvNeXt-V2): x + gamma * (x * N(x)) + beta.

    The L2 norm of each channel over (freq, time), divided by its mean over channels, re-weights
    the channels. ``per_channel=False`` keeps gamma/beta scalar as the CP-JKU code does;
    ``per_channel=True`` gives one per channel as in ConvNeXt-V2.
    """

    # What compression asks of a block (tinyasc.compress never names a block):
    int8_kernel = False  # torch has no int8 kernel for it: int8 graphs keep it in float
    channel_params = ("gamma", "beta")  # per-channel parameters, channel axis 1 (when wider than 1)

    def __init__(self, channels: int, per_channel: bool = False, eps: float = 1e-6):
        super().__init__()
        shape = (1, channels, 1, 1) if per_channel else (1, 1, 1, 1)
        self.gamma = nn.Parameter(torch.zeros(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.eps = eps

    def forward(self, x):
        gx = torch.norm(x, p=2, dim=(2, 3), keepdim=True)
        nx = gx / (gx.mean(dim=1, keepdim=True) + self.eps)
        return x + self.gamma * (x * nx) + self.beta


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class InvertedBottleneck(nn.Module):
    """CP-Mobile / MobileNetV2 block: 1x1 expand, depthwise kxk (stride), 1x1 project.

    The shortcut exists only when input and output channels agree: identity, or a 3x3 average pool
    with the block's stride when the block downsamples (CP-Mobile). An activation follows the sum,
    then an optional GRN (DCASE 2023 CP-Mobile). ``expand_groups > 1`` groups the expansion and
    shuffles its channels (MofleNet).
    """

    def __init__(self, in_channels: int, out_channels: int, expansion_rate: float = 2.1, stride=1,
                 kernel_size: int = 3, expand_groups: int = 1, use_grn: bool = False,
                 grn_per_channel: bool = False, act: type[nn.Module] = nn.ReLU, divisor: int = 8):
        super().__init__()
        hidden = make_divisible(in_channels * expansion_rate, divisor)
        expand = [ConvNormAct(in_channels, hidden, 1, groups=expand_groups, act=act)]
        if expand_groups > 1:
            expand.append(ChannelShuffle(expand_groups))
        self.block = nn.Sequential(
            *expand,
            ConvNormAct(hidden, hidden, kernel_size, stride=stride, groups=hidden, act=act),
            ConvNormAct(hidden, out_channels, 1, act=None),
        )
        strided = stride not in (1, (1, 1))
        self.use_shortcut = in_channels == out_channels
        self.shortcut = nn.AvgPool2d(3, stride=stride, padding=1) if (self.use_shortcut and strided) else nn.Identity()
        self.after_act = act()
        self.grn = GRN(out_channels, per_channel=grn_per_channel) if use_grn else nn.Identity()

    def forward(self, x):
        y = self.block(x)
        if self.use_shortcut:
            y = y + self.shortcut(x)
        return self.after_act(self.grn(y))


class ConvHead(nn.Sequential):
    """The CP-JKU classifier: 1x1 conv to classes, BatchNorm, global average pool (no linear layer)."""

    def __init__(self, in_channels: int, n_classes: int):
        super().__init__(nn.Conv2d(in_channels, n_classes, 1, bias=False), nn.BatchNorm2d(n_classes),
                         nn.AdaptiveAvgPool2d(1))
