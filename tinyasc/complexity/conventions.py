"""Report counting conventions: how each seed report counted its model, chosen by name.

A model's spec names its report's convention (``ModelSpec.counting``); ``report_counts`` applies it.
DCASE's own is ``dcase`` (torchinfo, as NeSsi). The others:

- ``bn_fused``: with every BatchNorm folded into the conv before it. Report 001 fine-tuned with
  PyTorch's fused Conv+BN(+ReLU) modules and reported the fused model's size: a folded BN has no
  parameters of its own, and its shift becomes a bias of the conv before it, which torchinfo counts
  once per output position. Only a BN that directly follows a conv inside an ``nn.Sequential``
  (every ``ConvNormAct`` and the CP heads) can be folded; any other BN stays.
- ``keras``: BN moving statistics counted as parameters (Keras' summary).
- ``tflite``: bytes of the int8 TFLite file, as the DCASE 2022 baseline's tool printed them.
- ``tokens``: Linears charged once per token, attention matmuls left out (the public Mobile-Former
  code, tokens first); ``attention`` adds the attention matmuls.
"""
from __future__ import annotations

import copy
from math import prod

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from tinyasc.base.registry import Registry
from tinyasc.complexity.counts import torchinfo_counts
from tinyasc.complexity.macs import count_macs

CONVENTIONS = Registry("counting convention")
CONVENTIONS.register("dcase", torchinfo_counts)


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


@CONVENTIONS.register("bn_fused")
def folded_counts(model: nn.Module, input_shape) -> tuple[int, int]:
    """(params, MACs) of the BN-folded model, counted by torchinfo like the DCASE tool."""
    return torchinfo_counts(fold_batchnorm(model), input_shape)


@CONVENTIONS.register("keras")
def keras_counts(model: nn.Module, input_shape) -> tuple[int, int]:
    """(params, MACs) as Keras counts params: BN moving mean/variance included (``counting="keras"``)."""
    stats = sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None)
    return _n_params(model) + stats, count_macs(model, input_shape)


@CONVENTIONS.register("tflite")
def tflite_counts(model: nn.Module, input_shape) -> tuple[int, int]:
    """(bytes, MACs) the way the DCASE 2022 baseline reported them (NeSsi on the int8 TFLite model).

    Bytes: BN folds into the conv before it, so every conv/Linear stores int8 weights and one int32
    bias per output channel. MACs: convs and Linears count weights x output positions (no bias),
    max-pools count window size x outputs, everything else 0.
    """
    n_bytes, macs = 0, 0
    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            n_bytes += layer.weight.numel() + 4 * layer.weight.shape[0]

    def hook(module, args, out):
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            macs += module.weight.numel() * prod(out.shape[2:])
        elif isinstance(module, nn.Linear):
            macs += module.weight.numel()
        else:  # max-pool: one comparison per window element and output
            k = module.kernel_size
            macs += (k * k if isinstance(k, int) else prod(k)) * out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear, nn.MaxPool2d))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *tuple(input_shape)[-3:])))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return n_bytes, macs


@CONVENTIONS.register("attention")
def attention_counts(model: nn.Module, input_shape) -> tuple[int, int]:
    """(params, MACs) with attention counted: a ``report_counter`` for ``counting="attention"``."""
    return _n_params(model), count_macs(model, input_shape)


@CONVENTIONS.register("tokens")
def token_counts(model: nn.Module, input_shape) -> tuple[int, int]:
    """(params, MACs) with Linears per token but no attention matmuls: ``counting="tokens"``."""
    return _n_params(model), count_macs(model, input_shape, functional=False)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def report_counts(model: nn.Module, input_shape, convention: str = "dcase") -> tuple[int, int]:
    """(params, MACs) of ``model`` counted by the named convention (tflite: (bytes, MACs))."""
    return CONVENTIONS.get(convention)(model, input_shape)
