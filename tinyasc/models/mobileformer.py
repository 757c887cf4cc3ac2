"""Mobile-Former (Chen et al., CVPR 2022) as modified by KT for DCASE 2023 (report 000, Table 3).

A MobileNet branch (feature map) and a Former branch (a handful of learned tokens) run in
parallel and talk through two light cross-attentions: Mobile->Former lets the tokens read the
feature map (the feature map itself serves as keys and values, no projection), Former->Mobile
adds the tokens back to every position. The first token drives the dynamic ReLUs of the Mobile
branch. KT kept three downsampling blocks, 4 tokens of size 16, and grouped the 1x1 convs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tinyasc.base.errors import TinyAscError
from tinyasc.models.blocks import ChannelShuffle, ConvNormAct
from tinyasc.models.registry import register_model

# Report 000, Table 3: stem to 8 channels at F/2 x T/2, then three Mobile-Former down blocks.
# Row: (out_channels, stride, dw1 expansion, dw2 expansion). The expansions are not in the report:
# tinyasc chose them to meet its 20,516 params / 0.617 M MACs (docs/models/attention_and_keras.md).
KT_STAGES = [
    (12, 2, 1, 1),
    (18, 2, 3, 2),
    (24, 2, 3, 1),
]
KT = dict(stages=KT_STAGES, stem_channels=8, token_num=4, token_dim=16, heads=2, groups=2,
          ffn_expansion=2, head_expansion=6, head_hidden=64, head_groups=4)


def _attend(q, k, v, heads: int):
    """Multi-head attention without projections: q [B, L, C], k/v [B, S, C] -> [B, L, C]."""
    b, length, c = q.shape
    split = lambda t: t.reshape(b, t.shape[1], heads, c // heads).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(b, length, c)


class Mobile2Former(nn.Module):
    """Tokens query the feature map; the map's channels are the keys and values (no projection)."""

    def __init__(self, channels: int, token_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(token_dim, channels)
        self.proj = nn.Linear(channels, token_dim)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, x, tokens):
        kv = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        return self.norm(tokens + self.proj(_attend(self.q(tokens), kv, kv, self.heads)))


class Former(nn.Module):
    """Transformer on the tokens: self-attention (keys = values = tokens) and an FFN, post-norm."""

    def __init__(self, token_dim: int, heads: int, ffn_expansion: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(token_dim, token_dim)
        self.proj = nn.Linear(token_dim, token_dim)
        self.norm1 = nn.LayerNorm(token_dim)
        self.ffn = nn.Sequential(nn.Linear(token_dim, token_dim * ffn_expansion), nn.GELU(),
                                 nn.Linear(token_dim * ffn_expansion, token_dim))
        self.norm2 = nn.LayerNorm(token_dim)

    def forward(self, tokens):
        tokens = self.norm1(tokens + self.proj(_attend(self.q(tokens), tokens, tokens, self.heads)))
        return self.norm2(tokens + self.ffn(tokens))


class Former2Mobile(nn.Module):
    """Every map position queries the tokens (the map itself is the query) and adds the answer."""

    def __init__(self, channels: int, token_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        # No key bias: it shifts all scores of a query equally, softmax cancels it, it never learns.
        self.k = nn.Linear(token_dim, channels, bias=False)
        self.v = nn.Linear(token_dim, channels)

    def forward(self, x, tokens):
        b, c, h, w = x.shape
        out = _attend(x.flatten(2).transpose(1, 2), self.k(tokens), self.v(tokens), self.heads)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class TokenDyReLU(nn.Module):
    """Dynamic ReLU max(a1 * x, a2 * x) whose per-channel slopes come from the first token."""

    def __init__(self, channels: int, token_dim: int, reduction: int = 4):
        super().__init__()
        self.hyper = nn.Sequential(nn.Linear(token_dim, token_dim // reduction), nn.ReLU(),
                                   nn.Linear(token_dim // reduction, 2 * channels), nn.Hardsigmoid())

    def forward(self, x, tokens):
        a1, a2 = self.hyper(tokens[:, 0])[:, :, None, None].chunk(2, dim=1)
        # slopes: a1 in [0, 2] (around 1), a2 in [-1, 1] (around 0), as in Dynamic ReLU
        return torch.maximum(x * (2 * a1), x * (2 * a2 - 1))


def grouped_pointwise(in_channels: int, out_channels: int, groups: int, act=None) -> nn.Sequential:
    """Channel shuffle, then a grouped 1x1 conv + BN: each group sees channels of every group before."""
    shuffle = [ChannelShuffle(groups)] if groups > 1 else []
    return nn.Sequential(*shuffle, ConvNormAct(in_channels, out_channels, 1, groups=groups, act=act))


class MobileFormerDown(nn.Module):
    """Mobile-Former block: Mobile->Former, Former, the Mobile sub-block, Former->Mobile.

    Mobile sub-block (the public code's down-sampling variant): depthwise 3x3 / stride expanding
    x ``dw1_expansion`` + BN + dynamic ReLU; grouped 1x1 to ``out`` + BN; depthwise 3x3 expanding
    x ``dw2_expansion`` + BN + dynamic ReLU; grouped 1x1 back to ``out`` + BN, added to the first
    1x1's output. Identity shortcut around the whole block when stride is 1 and widths agree.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, dw1_expansion: int = 2,
                 dw2_expansion: int = 2, groups: int = 2, token_dim: int = 16, heads: int = 2,
                 ffn_expansion: int = 2):
        super().__init__()
        hidden1, hidden2 = in_channels * dw1_expansion, out_channels * dw2_expansion
        for c in (in_channels, out_channels, hidden1, hidden2):
            if c % groups or c % heads:
                raise TinyAscError(f"mobileformer: {c} channels do not split into {groups} groups / {heads} heads")
        self.mobile2former = Mobile2Former(in_channels, token_dim, heads)
        self.former = Former(token_dim, heads, ffn_expansion)
        self.dw1 = ConvNormAct(in_channels, hidden1, 3, stride=stride, groups=in_channels, act=None)
        self.act1 = TokenDyReLU(hidden1, token_dim)
        self.pw1 = grouped_pointwise(hidden1, out_channels, groups)
        self.dw2 = ConvNormAct(out_channels, hidden2, 3, groups=out_channels, act=None)
        self.act2 = TokenDyReLU(hidden2, token_dim)
        self.pw2 = grouped_pointwise(hidden2, out_channels, groups)
        self.former2mobile = Former2Mobile(out_channels, token_dim, heads)
        self.identity = stride in (1, (1, 1)) and in_channels == out_channels

    def forward(self, x, tokens):
        tokens = self.former(self.mobile2former(x, tokens))
        y = self.pw1(self.act1(self.dw1(x), tokens))
        y = self.former2mobile(y + self.pw2(self.act2(self.dw2(y), tokens)), tokens)
        return (x + y if self.identity else y), tokens


class GroupedLinear(nn.Conv1d):
    """Linear layer split into ``groups`` independent blocks (report 000: "group-wise connected")."""

    def __init__(self, in_features: int, out_features: int, groups: int = 1):
        super().__init__(in_features, out_features, 1, groups=groups)

    def forward(self, x):  # [B, in_features] -> [B, out_features]
        return super().forward(x[:, :, None])[:, :, 0]


class MergeClassifier(nn.Module):
    """Grouped 1x1 conv to ``expansion`` x channels, pool, concat the first token, two Linears."""

    def __init__(self, channels: int, n_classes: int, token_dim: int, expansion: int = 6, hidden: int = 64,
                 groups: int = 2, fc_groups: int = 4, dropout: float = 0.2):
        super().__init__()
        self.conv = grouped_pointwise(channels, channels * expansion, groups, act=nn.ReLU6)
        self.fc = nn.Sequential(GroupedLinear(channels * expansion + token_dim, hidden, groups=fc_groups),
                                nn.BatchNorm1d(hidden), nn.Hardswish(), nn.Dropout(dropout),
                                nn.Linear(hidden, n_classes))

    def forward(self, x, tokens):
        pooled = F.hardswish(self.conv(x).mean(dim=(2, 3)))
        return self.fc(torch.cat([pooled, tokens[:, 0]], dim=1))


class MobileFormer(nn.Module):
    def __init__(self, n_classes: int = 10, in_channels: int = 1, stages=None, stem_channels: int = 8,
                 token_num: int = 4, token_dim: int = 16, heads: int = 2, groups: int = 2, ffn_expansion: int = 2,
                 head_expansion: int = 6, head_hidden: int = 64, head_groups: int = 4, dropout: float = 0.2):
        super().__init__()
        stages = KT_STAGES if stages is None else stages
        self.tokens = nn.Parameter(torch.randn(token_num, token_dim))  # N(0, 1) like nn.Embedding
        self.stem = ConvNormAct(in_channels, stem_channels, 3, stride=2, act=nn.ReLU6)
        blocks, cin = [], stem_channels
        for cout, stride, e1, e2 in stages:
            blocks.append(MobileFormerDown(cin, cout, stride=stride, dw1_expansion=e1, dw2_expansion=e2,
                                           groups=groups, token_dim=token_dim, heads=heads,
                                           ffn_expansion=ffn_expansion))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.mobile2former = Mobile2Former(cin, token_dim, heads)  # tokens read the last map
        self.head = MergeClassifier(cin, n_classes, token_dim, expansion=head_expansion, hidden=head_hidden,
                                    groups=groups, fc_groups=head_groups, dropout=dropout)

    def forward(self, x):
        tokens = self.tokens.expand(x.shape[0], -1, -1)  # [B, T, d]
        x = self.stem(x)
        for block in self.blocks:
            x, tokens = block(x, tokens)
        return self.head(x, self.mobile2former(x, tokens))


KT_FRONTEND = dict(sample_rate=16000, n_fft=2048, win_length=2048, hop_length=512, n_mels=256)


@register_model("mobileformer_kt", report="000",
                title="Mobile-Former, 3 down blocks, 4 tokens x 16 (KT, DCASE 2023)",
                report_params=20_516, report_macs=617_000, counting="tokens",
                frontend=KT_FRONTEND)
def mobileformer_kt(n_classes: int = 10, in_channels: int = 1, **cfg) -> MobileFormer:
    return MobileFormer(n_classes=n_classes, in_channels=in_channels, **{**KT, **cfg})
