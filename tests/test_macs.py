"""tinyasc's MAC counter: exactly torchinfo on conv nets, per-token Linears and attention matmuls
on token models (hand-computed examples)."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import prune

from tinyasc.complexity import torchinfo_counts
from tinyasc.base.errors import TinyAscError
from tinyasc.complexity.conventions import keras_counts, token_counts
from tinyasc.complexity.macs import count_macs, format_layer_table as format_table, layer_macs
from tinyasc.models import create_model


class ConvZoo(nn.Module):
    """Grouped, depthwise, biased, strided, 1-D and reused convs, BN, pooling and a Linear head."""

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(2, 8, 3, padding=1, groups=2, bias=True)
        self.bn = nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, (3, 1), stride=(2, 1), padding=(1, 0), groups=8, bias=False)
        self.pointwise = nn.Conv2d(8, 8, 1, bias=True)  # applied twice
        self.pruned = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        prune.l1_unstructured(self.pruned, "weight", amount=0.5)
        self.conv1d = nn.Conv1d(6 * 5, 12, 3, padding=1)
        self.head = nn.Sequential(nn.Linear(12, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))

    def forward(self, x):
        x = self.depthwise(F.relu(self.bn(self.grouped(x))))
        x = self.pointwise(self.pointwise(x))
        x = F.max_pool2d(self.pruned(x), (1, 2))  # [B, 6, 5, 4]
        x = self.conv1d(x.flatten(1, 2))
        return self.head(x.mean(dim=2))


class TinyAttention(nn.Module):
    """5 tokens of width 8 from a (1, 5, 8) input: qkv Linear, attention, output Linear."""

    def __init__(self, fused: bool, heads: int = 1):
        super().__init__()
        self.fused, self.heads = fused, heads
        self.qkv = nn.Linear(8, 24)
        self.out = nn.Linear(8, 8, bias=False)

    def forward(self, x):
        tokens = x.flatten(1, 2)  # [B, 5, 8]
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in self.qkv(tokens).chunk(3, dim=-1))
        if self.fused:
            a = F.scaled_dot_product_attention(q, k, v)
        else:
            a = (q @ k.transpose(-1, -2) / 8 ** 0.5).softmax(dim=-1) @ v
        return self.out(a.transpose(1, 2).flatten(2))


# qkv (8*24 + 24) per token x 5 = 1,080; q @ k^T 5*5*8 = 200; attn @ v 200; out 8*8 x 5 = 320.
ATTENTION_MACS = 1_080 + 200 + 200 + 320


def test_exactly_torchinfo_on_the_dcase24_baseline():
    model = create_model("dcase24_baseline")
    assert count_macs(model, (1, 256, 65)) == torchinfo_counts(model, (1, 1, 256, 65))[1] == 29_419_156


def test_exactly_torchinfo_row_by_row_on_grouped_depthwise_biased_convs():
    torch.manual_seed(0)
    model = ConvZoo()
    rows = layer_macs(model, (2, 10, 9))
    assert sum(r.macs for r in rows) == count_macs(model, (1, 2, 10, 9)) == torchinfo_counts(model, (1, 2, 10, 9))[1]
    assert all(r.macs == r.torchinfo_macs for r in rows)
    by_name = {r.name: r for r in rows}
    # grouped conv: (2*8/2*9 weights + 8 bias) x 10*9 positions
    assert by_name["grouped"].macs == (72 + 8) * 90
    assert by_name["depthwise"].macs == 8 * 3 * 5 * 9
    assert by_name["pointwise"].calls == 2 and by_name["pointwise"].macs == 2 * (64 + 8) * 5 * 9
    assert by_name["pruned"].macs == (8 * 6 * 9 // 2) * 5 * 9  # only unmasked weights, as torchinfo
    assert by_name["bn"].macs == 16 and by_name["head.0"].macs == 12 * 7 + 7


def test_linear_is_counted_once_per_token():
    model = nn.Sequential(nn.Flatten(1, 2), nn.Linear(8, 16))  # (1, 5, 8) -> 5 tokens
    assert count_macs(model, (1, 5, 8)) == (8 * 16 + 16) * 5
    assert torchinfo_counts(model, (1, 1, 5, 8))[1] == 8 * 16 + 16  # torchinfo: once per sample


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("heads", [1, 2])
def test_attention_matmuls_are_counted(fused, heads):
    model = TinyAttention(fused=fused, heads=heads)
    assert count_macs(model, (1, 5, 8)) == ATTENTION_MACS
    assert torchinfo_counts(model, (1, 1, 5, 8))[1] == 216 + 64  # Linears once, attention ignored
    kinds = {r.kind for r in layer_macs(model, (1, 5, 8))}
    assert kinds & {"matmul", "attention"}
    assert count_macs(model, (1, 5, 8), functional=False) == 1_080 + 320


def test_multihead_attention_fast_path_is_counted_and_restored():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            tokens = x.flatten(1, 2)
            return self.attn(tokens, tokens, tokens)[0]

    assert torch.backends.mha.get_fastpath_enabled()
    # in-projection 3 x (64 + 8) x 5, attention 2 x 5*5*8, out-projection (64 + 8) x 5
    assert count_macs(Block(), (1, 5, 8)) == 1_080 + 400 + 360
    assert torch.backends.mha.get_fastpath_enabled()


def test_functional_conv_and_einsum_outside_modules_are_counted():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.kernel = nn.Parameter(torch.randn(4, 1, 3, 3))  # not "weight": torchinfo ignores it
            self.mix = nn.Parameter(torch.randn(4, 4))

        def forward(self, x):
            y = F.conv2d(x, self.kernel, padding=1)  # [1, 4, 6, 5]
            return torch.einsum("bcft,cd->bdft", y, self.mix)

    model = Functional()
    assert count_macs(model, (1, 6, 5)) == 4 * 9 * 30 + 30 * 4 * 4
    assert torchinfo_counts(model, (1, 1, 6, 5))[1] == 0


def test_without_functional_ops_it_is_torchinfo_on_the_token_first_layout():
    class Tokens(nn.Module):
        def __init__(self, token_first: bool):
            super().__init__()
            self.token_first = token_first
            self.q = nn.Linear(8, 8)
            self.norm = nn.LayerNorm(8)

        def forward(self, x):
            t = x.flatten(1, 2)  # [B, T, d]
            if self.token_first:
                t = t.transpose(0, 1)  # [T, B, d], as the public Mobile-Former code
            a = (self.q(t) @ t.transpose(-1, -2)).softmax(-1) @ t
            return self.norm(a)

    batch_first, token_first = Tokens(False), Tokens(True)
    token_first.load_state_dict(batch_first.state_dict())
    expected = torchinfo_counts(token_first, (1, 1, 5, 8))[1]
    assert expected == (72 + 16) * 5
    assert count_macs(batch_first, (1, 5, 8), functional=False) == expected
    assert token_counts(batch_first, (1, 5, 8)) == (88, expected)


def test_model_is_left_as_found():
    model = TinyAttention(fused=True)
    model.train()
    count_macs(model, (1, 5, 8))
    assert model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_keras_counts_add_batchnorm_statistics():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4, affine=False))
    params, macs = keras_counts(model, (1, 5, 5))
    assert params == 36 + 4 + 8 + 8 + 8 and macs == torchinfo_counts(model, (1, 1, 5, 5))[1]


def test_table_and_bad_shape():
    table = format_table(layer_macs(TinyAttention(fused=False), (1, 5, 8)))
    assert table.splitlines()[-1].split()[:2] == ["total", f"{ATTENTION_MACS:,}"]
    with pytest.raises(TinyAscError, match="input shape"):
        count_macs(TinyAttention(fused=False), (5, 0, 8))
