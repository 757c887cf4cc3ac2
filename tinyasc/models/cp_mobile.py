"""CP-Mobile family: the DCASE 2024 Task 1 baseline and the DCASE 2023 CP-Mobile with GRN.

The network is a stem of two strided 3x3 convs, three stages of inverted-bottleneck blocks, and a
1x1 conv + BN + global average pool head. The stage table below is the baseline's; the 2023
CP-Mobile differs by width (multiplier 2.3, expansion 3) and a GRN after every block.
"""
from __future__ import annotations

from torch import nn

from tinyasc.models.blocks import ConvNormAct, InvertedBottleneck, make_divisible
from tinyasc.models.registry import register_model

# DCASE 2024 baseline (report 004's starting point): blocks per stage, and the strides of the
# blocks that downsample, numbered over the whole network (b1..b6) as in the baseline code.
BASELINE = dict(base_channels=32, channels_multiplier=1.8, expansion_rate=2.1,
                n_blocks=(3, 2, 1), strides={2: (1, 1), 3: (1, 2), 4: (2, 1)})
CP_MOBILE_2023 = dict(base_channels=32, channels_multiplier=2.3, expansion_rate=3.0,
                      n_blocks=(3, 2, 1), strides={2: (1, 1), 3: (1, 2), 4: (2, 1)}, use_grn=True)


class CPMobile(nn.Module):
    def __init__(self, n_classes: int = 10, in_channels: int = 1, base_channels: int = 32,
                 channels_multiplier: float = 1.8, expansion_rate: float = 2.1, n_blocks=(3, 2, 1),
                 strides: dict | None = None, use_grn: bool = False, stem_channels: int | None = None):
        super().__init__()
        strides = dict(BASELINE["strides"] if strides is None else strides)
        strides = {int(k): tuple(v) if isinstance(v, (list, tuple)) else v for k, v in strides.items()}
        stage_channels = [make_divisible(base_channels * channels_multiplier ** i, 8) for i in range(len(n_blocks))]
        stem_channels = stem_channels or base_channels // 4
        self.stem = nn.Sequential(
            ConvNormAct(in_channels, stem_channels, 3, stride=2),
            ConvNormAct(stem_channels, base_channels, 3, stride=2),
        )
        blocks, cin, index = [], base_channels, 0
        for cout, repeats in zip(stage_channels, n_blocks):
            for _ in range(repeats):
                index += 1
                blocks.append(InvertedBottleneck(cin, cout, expansion_rate=expansion_rate,
                                                 stride=strides.get(index, 1), use_grn=use_grn))
                cin = cout
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Conv2d(cin, n_classes, 1, bias=False),
            nn.BatchNorm2d(n_classes),
            nn.AdaptiveAvgPool2d(1),
        )
        self.apply(_init_weights)

    def forward(self, x):
        return self.head(self.stages(self.stem(x))).flatten(1)


def _init_weights(m):
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


DCASE24_FRONTEND = dict(sample_rate=32000, n_fft=4096, win_length=3072, hop_length=500, n_mels=256)


@register_model("dcase24_baseline", input_shape=(1, 256, 65), report="004",
                title="DCASE 2024 Task 1 baseline (simplified CP-Mobile)",
                report_params=61_148, report_macs=29_419_156, frontend=DCASE24_FRONTEND)
def dcase24_baseline(n_classes: int = 10, in_channels: int = 1, **cfg) -> CPMobile:
    return CPMobile(n_classes=n_classes, in_channels=in_channels, **{**BASELINE, **cfg})


@register_model("cp_mobile", input_shape=(1, 256, 65), report="001, 004",
                title="DCASE 2023 CP-Mobile with GRN (CP-JKU)",
                report_params=126_952, report_macs=31_680_000, frontend=DCASE24_FRONTEND)
def cp_mobile(n_classes: int = 10, in_channels: int = 1, **cfg) -> CPMobile:
    return CPMobile(n_classes=n_classes, in_channels=in_channels, **{**CP_MOBILE_2023, **cfg})
