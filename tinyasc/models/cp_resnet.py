"""CP-ResNet (CP-JKU): a ResNet whose receptive field is kept small on purpose.

Kernel sizes come from {1, 3} per conv, chosen by CP-JKU's receptive-field rule (rho), and max-pools
rather than strided convs do the downsampling, so the frequency resolution a block sees is set by
the stage table. CP-ResNet59 (report 001) narrows the DCASE 2023 teacher (multiplier 2.0 -> 1.4)
and adds two max-pools to fit 16 M MACs.
"""
from __future__ import annotations

from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.models.blocks import ConvHead, ConvNormAct
from tinyasc.models.registry import register_model

# Table 1 of report 001, one row per stage. ``kernels``: (k1, k2) of each block, the CP-JKU rule at
# rho = 8. ``pools``: max-pools (F, T) by position, i = before block i; i >= blocks: after the last.
CP_RESNET59_STAGES = [
    dict(groups=1, kernels=[(3, 1), (3, 3)], pools={0: (2, 2), 1: (2, 1), 2: (2, 1)}),
    dict(groups=2, kernels=[(3, 3)], pools={0: (2, 1)}),  # pool added by CP-ResNet59: 15 x 10 -> 7 x 10
    dict(groups=1, kernels=[(3, 1)], pools={0: (1, 2)}),  # pool added: the table halves time, 7 x 10 -> 7 x 5
]


class BasicBlock(nn.Module):
    """conv k1 + BN + ReLU, conv k2 + BN, add the shortcut (1x1 conv + BN when the width changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, k1: int = 3, k2: int = 3, groups: int = 1):
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, k1, groups=groups)
        self.conv2 = ConvNormAct(out_channels, out_channels, k2, groups=groups, act=None)
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else ConvNormAct(in_channels, out_channels, 1, groups=groups, act=None))
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


def stage_channels(base_channels: int, channels_multiplier: float, cut_channels) -> list[int]:
    """CP-JKU widths: base * multiplier**stage minus a per-stage cut, truncated (1.4 -> 32, 44, 26)."""
    return [int(base_channels * channels_multiplier ** i - cut) for i, cut in enumerate(cut_channels)]


class CPResNet(nn.Module):
    def __init__(self, n_classes: int = 10, in_channels: int = 1, base_channels: int = 32,
                 channels_multiplier: float = 1.4, cut_channels=(0, 0, 36), n_blocks=None,
                 stages: list[dict] | None = None, stem_kernel: int = 5, stem_padding: int = 1):
        super().__init__()
        stages = [_read_stage(row) for row in (CP_RESNET59_STAGES if stages is None else stages)]
        n_blocks = [len(row["kernels"]) for row in stages] if n_blocks is None else list(n_blocks)
        if len(cut_channels) != len(stages) or len(n_blocks) != len(stages):
            raise TinyAscError(f"CPResNet: {len(stages)} stages need as many cut_channels ({len(cut_channels)}) "
                               f"and n_blocks ({len(n_blocks)})")
        widths = stage_channels(base_channels, channels_multiplier, cut_channels)
        for width, row in zip(widths, stages):
            if width < 1 or width % row["groups"]:
                raise TinyAscError(f"CPResNet: stage width {width} does not fit groups={row['groups']}; "
                                   f"check base_channels, channels_multiplier and cut_channels")
        # The CP-JKU stem: 5x5, stride 2, padding 1 (256 x 43 -> 127 x 21, the table's first shape).
        self.stem = ConvNormAct(in_channels, base_channels, stem_kernel, stride=2, padding=stem_padding)
        layers, cin = [], base_channels
        for width, row, repeats in zip(widths, stages, n_blocks):
            for index in range(repeats):
                layers += [_max_pool(row["pools"][index])] if index in row["pools"] else []
                # Blocks past the table's kernels add depth but no receptive field (CP-JKU: 1x1).
                k1, k2 = row["kernels"][index] if index < len(row["kernels"]) else (1, 1)
                layers.append(BasicBlock(cin, width, k1=k1, k2=k2, groups=row["groups"]))
                cin = width
            # Pools past the last block keep the resolution schedule when a stage gets shallower.
            layers += [_max_pool(pool) for pos, pool in sorted(row["pools"].items()) if pos >= repeats]
        self.stages = nn.Sequential(*layers)
        self.head = ConvHead(cin, n_classes)
        self.apply(_init_weights)

    def forward(self, x):
        return self.head(self.stages(self.stem(x))).flatten(1)


def _read_stage(row: dict) -> dict:
    # Rows may come from YAML/JSON, where pool positions are strings and pairs are lists.
    try:
        return dict(groups=int(row.get("groups", 1)),
                    kernels=[tuple(int(k) for k in pair) for pair in row["kernels"]],
                    pools={int(pos): tuple(int(p) for p in pool) for pos, pool in row.get("pools", {}).items()})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TinyAscError(f"CPResNet: bad stage row {row!r} ({exc}); expected groups, kernels, pools") from None


def _max_pool(pool) -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=pool, stride=pool)


def _init_weights(m):
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")


# Report 001: 32 kHz, 96 ms window, 23.4 ms hop (750 samples) -> 43 frames; 256 mels up to 16 kHz.
@register_model("cp_resnet59", report="001",
                title="CP-ResNet59 (NTU/Panasonic, ensemble member)",
                report_params=58_000, report_macs=16_000_000, param_tolerance=0.05, mac_tolerance=0.05,
                counting="bn_fused",
                frontend=dict(sample_rate=32000, n_fft=4096, win_length=3072, hop_length=750, n_mels=256,
                              fmin=0, fmax=16000))
def cp_resnet59(n_classes: int = 10, in_channels: int = 1, **cfg) -> CPResNet:
    return CPResNet(n_classes=n_classes, in_channels=in_channels, **cfg)


# Report 001, Table 4 ("model accuracies before QAT"): CP-ResNet-128k, "a model with 128k number of
# parameters": CP-ResNet59 before section 4.1's two changes, i.e. multiplier 2.0 (widths 32, 64, 92)
# and without the two added max-pools. 127,684 params (-0.2 %), 28.8 M MACs.
CP_RESNET_128K_STAGES = [dict(CP_RESNET59_STAGES[0]), dict(CP_RESNET59_STAGES[1], pools={}),
                         dict(CP_RESNET59_STAGES[2], pools={})]
# Macro accuracy by split (% of the training set) before QAT, Table 4 of report 001.
TABLE4_ACCURACY = {"cp_resnet_128k": {100: 0.6065, 50: 0.5888, 25: 0.5518, 10: 0.5082, 5: 0.4708}}


@register_model("cp_resnet_128k", report="001",
                title="CP-ResNet-128k (NTU/Panasonic, Table 4)",
                report_params=128_000, report_macs=None, param_tolerance=0.05,
                frontend=dict(sample_rate=32000, n_fft=4096, win_length=3072, hop_length=750, n_mels=256,
                              fmin=0, fmax=16000),
                defaults=dict(channels_multiplier=2.0, stages=CP_RESNET_128K_STAGES))
def cp_resnet_128k(n_classes: int = 10, in_channels: int = 1, **cfg) -> CPResNet:
    return CPResNet(n_classes=n_classes, in_channels=in_channels, **cfg)
