"""Mini-SegNet (Tsinghua SATLab, DCASE 2022/2023; report 003, submission 2), before and after pruning.

Report 003 (Section 2.2, Figure 2): an encoder of two conv blocks (one 2x3 conv, then two), each
conv followed by normalisation, ReLU and a max-pool; a decoder of two DeConv blocks (up-sampling,
then two convs; up-sampling, then one conv); then dense, dropout, dense. The first encoder conv and
the conv of the second DeConv block are followed by "mixup normalization", the others by BN.

Mixup normalization is the same group's layer (Ma et al., APSIPA 2020; Shao et al., EURASIP JASMP
2024: "combines channel-wise instance normalization and the Mixup method to learn useful information
for scene and discard specific information related to different devices"). Its equations are not
in what is public to tinyasc, so this is tinyasc's reading: each clip's channels are normalised by
their own mean and standard deviation over frequency and time (instance normalisation, which removes
a device's per-channel level and gain), then a learned per-channel scale and shift. In training the
statistics are mixed up: lam * own + (1 - lam) * those of another clip of the batch, lam ~ Beta(alpha,
alpha) per clip, so the network learns not to rely on the exact normalisation. In evaluation each clip
uses its own statistics: plain instance normalisation, independent of the batch. 276,490 parameters; structured pruning that removes 70 % of the filters leaves 46,232
parameters and 19.466 M MACs (3 x 256 x 36 input).

Figure 2's widths are not in the text; ``WIDTHS``, ``PRUNED_WIDTHS`` and the dense width are
tinyasc's (see docs/models/tsinghua_003.md). A pruned network is this class with narrower widths.
"""
from __future__ import annotations

import torch
from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.models.blocks import ConvNormAct
from tinyasc.models.fsmobilenet import TSINGHUA_FRONTEND
from tinyasc.models.registry import register_model

# Layer order of Section 2.2, block by block: "conv" is a 2x3 conv + norm + ReLU whose width is the
# next entry of ``widths``, "pool" a 2x2 max-pool, "up" a 2x nearest up-sampling.
LAYOUT = [
    ["conv", "pool"],  # encoder block 1
    ["conv", "pool", "conv", "pool"],  # encoder block 2
    ["up", "conv", "conv"],  # decoder block 1 (DeConv)
    ["up", "conv"],  # decoder block 2 (DeConv)
]
WIDTHS = (48, 96, 128, 96, 48, 48)  # before pruning: 464 filters
PRUNED_WIDTHS = (15, 29, 37, 28, 15, 15)  # 139 of the 464 filters kept (70.0 % removed), 29-31 % per layer
DENSE_UNITS = 1024  # hidden units of the first dense layer; filter pruning does not narrow it


class MixupNorm(nn.Module):
    """Instance normalisation per channel whose statistics are mixed between clips in training (module
    docstring). Same parameter count as the BatchNorm it replaces (a scale and a shift per channel)."""

    # What compression asks of a block: var_mean / rsqrt have no int8 kernel, so int8 graphs keep it
    # float; its scale and shift are per channel (channel axis 1), so pruning narrows them.
    int8_kernel = False
    channel_params = ("weight", "bias")

    def __init__(self, channels: int, alpha: float = 0.3, eps: float = 1e-5):
        super().__init__()
        if alpha < 0:
            raise TinyAscError(f"mini_segnet: mixup_norm_alpha={alpha} must be >= 0 (0: no mixing)")
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.alpha, self.eps = alpha, eps

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=(2, 3), unbiased=False, keepdim=True)
        std = torch.sqrt(var + self.eps)
        if self.training and self.alpha > 0 and x.shape[0] > 1:
            lam = torch.distributions.Beta(self.alpha, self.alpha).sample((x.shape[0], 1, 1, 1)).to(x)
            partner = torch.randperm(x.shape[0], device=x.device)
            mean = lam * mean + (1 - lam) * mean[partner]
            std = lam * std + (1 - lam) * std[partner]
        return self.weight * (x - mean) / std + self.bias


def same_conv(in_channels: int, out_channels: int, kernel_size: tuple[int, int],
              mixup_alpha: float | None = None) -> nn.Sequential:
    """Conv + norm + ReLU keeping the map size (Keras 'same'): an even kernel pads its extra row at the
    end. The norm is BN, or MixupNorm when ``mixup_alpha`` is given.

    The padding is an explicit ZeroPad2d because int8 conv kernels do not take padding="same".
    """
    kh, kw = kernel_size
    pads = (kw - 1) // 2, kw - 1 - (kw - 1) // 2, (kh - 1) // 2, kh - 1 - (kh - 1) // 2  # left, right, top, bottom
    if mixup_alpha is None:
        return nn.Sequential(nn.ZeroPad2d(pads), ConvNormAct(in_channels, out_channels, kernel_size, padding=0))
    return nn.Sequential(nn.ZeroPad2d(pads),
                         ConvNormAct(in_channels, out_channels, kernel_size, padding=0, norm=False, act=None),
                         MixupNorm(out_channels, mixup_alpha), nn.ReLU())


class MiniSegNet(nn.Module):
    # The module whose output is the decoder's map, for report 003's noise-mask target (Section 2.3.2,
    # tinyasc.training.noise_mask), whose head is training-only and not part of this network.
    decoder_output = "stages"

    def __init__(self, n_classes: int = 10, in_channels: int = 3, widths=WIDTHS, dense_units: int = DENSE_UNITS,
                 layout=None, kernel_size=(2, 3), pool_size=(2, 2), dropout: float = 0.5,
                 mixup_norm: bool = True, mixup_norm_alpha: float = 0.3):
        super().__init__()
        layout = LAYOUT if layout is None else layout
        ops = [op for block in layout for op in block]
        unknown = sorted(set(ops) - {"conv", "pool", "up"})
        if unknown:
            raise TinyAscError(f"mini_segnet: layout has unknown layers {unknown}; use 'conv', 'pool', 'up'")
        n_convs = ops.count("conv")
        if len(widths) != n_convs or min(widths) < 1:
            raise TinyAscError(f"mini_segnet: widths={tuple(widths)} must give {n_convs} positive conv widths "
                               "(one per 'conv' in the layout)")
        if dense_units < 1:
            raise TinyAscError(f"mini_segnet: dense_units={dense_units} must be positive")
        pool_size = tuple(pool_size)
        # mixup_norm false: BN after every conv (tinyasc before report 003's layer was built)
        # Mixup normalization after the first conv (encoder block 1) and the last (DeConv block 2).
        mixup_convs = {0, n_convs - 1} if mixup_norm else set()
        stages, widths_left, cin, index = [], list(widths), in_channels, 0
        for block in layout:
            layers = []
            for op in block:
                if op == "conv":
                    alpha = mixup_norm_alpha if index in mixup_convs else None
                    layers.append(same_conv(cin, widths_left[0], tuple(kernel_size), alpha))
                    cin, index = widths_left.pop(0), index + 1
                elif op == "pool":
                    layers.append(nn.MaxPool2d(pool_size))
                else:
                    layers.append(nn.Upsample(scale_factor=pool_size, mode="nearest"))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(cin, dense_units), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dense_units, n_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.stages(x)).flatten(1))


@register_model("mini_segnet", report="003",
                title="Mini-SegNet before pruning (Tsinghua, DCASE 2023)",
                report_params=276_490, report_macs=None, frontend=TSINGHUA_FRONTEND,
                defaults=dict(widths=WIDTHS))
def mini_segnet(n_classes: int = 10, in_channels: int = 3, **cfg) -> MiniSegNet:
    return MiniSegNet(n_classes=n_classes, in_channels=in_channels, **cfg)


@register_model("mini_segnet_pruned", report="003",
                title="Mini-SegNet, 70 % of the filters pruned (Tsinghua, DCASE 2023)",
                report_params=46_232, report_macs=19_466_000, frontend=TSINGHUA_FRONTEND,
                defaults=dict(widths=PRUNED_WIDTHS))
def mini_segnet_pruned(n_classes: int = 10, in_channels: int = 3, **cfg) -> MiniSegNet:
    return MiniSegNet(n_classes=n_classes, in_channels=in_channels, **cfg)
