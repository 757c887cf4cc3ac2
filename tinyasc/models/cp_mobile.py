"""CP-Mobile family: the DCASE 2024 Task 1 baseline, the DCASE 2023 CP-Mobile with GRN, and report
004's baseline variant.

The network is a stem of two strided 3x3 convs, three stages of inverted-bottleneck blocks, and a
1x1 conv + BN + global average pool head. The variants differ only in the literal configs below:
width, expansion, which blocks downsample, and whether a GRN follows every block.
"""
from __future__ import annotations

from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.models.blocks import ConvHead, ConvNormAct, InvertedBottleneck, make_divisible
from tinyasc.audio.features import DCASE24_FRONTEND
from tinyasc.models.registry import register_model

# DCASE 2024 baseline: blocks per stage, and the strides (F, T) of the blocks that downsample,
# numbered over the whole network (b1..b6) as in the baseline code.
BASELINE = dict(base_channels=32, channels_multiplier=1.8, expansion_rate=2.1,
                n_blocks=(3, 2, 1), strides={2: (1, 1), 3: (1, 2), 4: (2, 1)})
# DCASE 2023 CP-Mobile (CP-JKU code): wider, GRN after every block, and its own stride schedule,
# which downsamples earlier (b2 in both axes) and so costs less per channel than the 2024 schedule.
CP_MOBILE_2023 = dict(base_channels=32, channels_multiplier=2.3, expansion_rate=3.0,
                      n_blocks=(3, 2, 1), strides={2: (2, 2), 4: (2, 1)}, use_grn=True)
# Report 004 (UniSA): the baseline "adapted from" the CP-Mobile paper, i.e. with its scalar GRN,
# the only option that gives the report's 119.5 kB (= KiB) at fp16 with the baseline's MACs.
UNISA_2024 = dict(BASELINE, use_grn=True)


class CPMobile(nn.Module):
    def __init__(self, n_classes: int = 10, in_channels: int = 1, base_channels: int = 32,
                 channels_multiplier: float = 1.8, expansion_rate: float = 2.1, n_blocks=(3, 2, 1),
                 strides: dict | None = None, use_grn: bool = False, stem_channels: int | None = None,
                 expand_groups: int = 1):
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
                hidden = make_divisible(cin * expansion_rate, 8)
                if cin % expand_groups or hidden % expand_groups:
                    raise TinyAscError(f"CPMobile: expand_groups={expand_groups} does not divide the {cin} -> "
                                       f"{hidden} channels of block b{index}")
                blocks.append(InvertedBottleneck(cin, cout, expansion_rate=expansion_rate,
                                                 stride=strides.get(index, 1), use_grn=use_grn,
                                                 expand_groups=expand_groups))
                cin = cout
        self.stages = nn.Sequential(*blocks)
        self.head = ConvHead(cin, n_classes)
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


@register_model("dcase24_baseline", report="004",
                title="DCASE 2024 Task 1 baseline (simplified CP-Mobile)",
                report_params=61_148, report_macs=29_419_156, frontend=DCASE24_FRONTEND)
def dcase24_baseline(n_classes: int = 10, in_channels: int = 1, **cfg) -> CPMobile:
    return CPMobile(n_classes=n_classes, in_channels=in_channels, **{**BASELINE, **cfg})


@register_model("cp_mobile", report="001, 004",
                title="DCASE 2023 CP-Mobile with GRN (CP-JKU)",
                report_params=126_952, report_macs=31_680_000, frontend=DCASE24_FRONTEND)
def cp_mobile(n_classes: int = 10, in_channels: int = 1, **cfg) -> CPMobile:
    return CPMobile(n_classes=n_classes, in_channels=in_channels, **{**CP_MOBILE_2023, **cfg})


# Report 004 gives a size, not a count: 119.5 kB at fp16 (2 bytes each), read as KiB -> 61,184
# parameters (+-26 from the rounding); MACs "29.43 M" on its 256 x 68 input (hop 472).
@register_model("dcase24_baseline_unisa", report="004",
                title="MobileNet variant of the DCASE 2024 baseline with GRN (UniSA, hop 472)",
                report_params=61_184, report_macs=29_430_000,
                frontend=dict(DCASE24_FRONTEND, hop_length=472))
def dcase24_baseline_unisa(n_classes: int = 10, in_channels: int = 1, **cfg) -> CPMobile:
    return CPMobile(n_classes=n_classes, in_channels=in_channels, **{**UNISA_2024, **cfg})
