"""Complexity counted the way quantisation-aware reports counted it: with every BatchNorm folded.

Report 001 fine-tuned with PyTorch's fused Conv+BN(+ReLU) modules and reported the fused model's
size: a folded BN has no parameters of its own, and its shift becomes a bias of the conv before it,
which torchinfo counts once per output position. Only a BN that directly follows a conv inside an
``nn.Sequential`` (every ``ConvNormAct`` and the CP heads) can be folded; any other BN stays.
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from tinyasc.complexity import torchinfo_counts


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` whose conv -> BN pairs are single convs with a bias."""
    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for conv_name, bn_name in zip(names, names[1:]):
            conv, bn = seq._modules[conv_name], seq._modules[bn_name]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
                seq._modules[bn_name] = nn.Identity()
    return folded


def folded_counts(model: nn.Module, input_shape) -> tuple[int, int]:
    """(params, MACs) of the BN-folded model, counted by torchinfo like the DCASE tool."""
    return torchinfo_counts(fold_batchnorm(model), input_shape)
