"""DCASE 2022/2023 Task 1 baseline: a three-layer Keras-era CNN on 40 log-mel bands x 51 frames.

Reports 000 and 002 quote its figures, 46,512 params and 29.235 M MACs, as printed by the
baseline's own tool: NeSsi on the int8 TFLite file. The 46,512 there are BYTES of that file (BN
folded into the convs, int8 weights, int32 biases); the Keras model has 46,246 weights (46,118
trainable). ``tflite_counts`` reproduces the baseline's convention.
"""
from __future__ import annotations

from math import prod

import torch
from torch import nn

from tinyasc.models.blocks import ConvNormAct
from tinyasc.models.registry import register_model

# Row per conv layer: (filters, kernel, max-pool after it or None, dropout after the pool).
# Pools are (mel, frame); Keras "valid" pooling floors: 40 x 51 -> 8 x 10 -> 2 x 1.
BASELINE_LAYERS = [
    (16, 7, None, 0.0),
    (16, 7, (5, 5), 0.3),
    (32, 7, (4, 10), 0.3),
]


class DCASE22Baseline(nn.Module):
    """``input_size`` (mel bins, frames) of the input fixes the width of the flattened features."""

    def __init__(self, n_classes: int = 10, in_channels: int = 1, layers=None, input_size=(40, 51),
                 hidden: int = 100, dropout: float = 0.3):
        super().__init__()
        layers = BASELINE_LAYERS if layers is None else layers
        convs, cin, (f, t) = [], in_channels, input_size
        for filters, kernel, pool, drop in layers:
            # Keras Conv2D keeps its bias although BN follows ("same" padding, stride 1).
            convs.append(ConvNormAct(cin, filters, kernel, bias=True))
            if pool is not None:
                convs += [nn.MaxPool2d(pool), nn.Dropout(drop)]
                f, t = f // pool[0], t // pool[1]
            cin = filters
        self.features = nn.Sequential(*convs)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin * f * t, hidden), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


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


# dcase_util "mel" extractor of the baseline: 40 ms Hamming window, 20 ms hop, magnitude (not power)
# spectrum, librosa's Slaney mel bank 0-22.05 kHz, log(x + machine epsilon); 1 s -> 51 frames.
BASELINE22_FRONTEND = dict(sample_rate=44100, n_fft=2048, win_length=1764, hop_length=882, n_mels=40, fmin=0,
                           fmax=22050, window="hamming", mel_scale="slaney", mel_norm="slaney",
                           log_offset=2.220446049250313e-16)


@register_model("dcase22_baseline", input_shape=(1, 40, 51), report="000, 002",
                title="DCASE 2022/2023 Task 1 baseline (3-layer CNN, Keras)",
                report_params=46_512, report_macs=29_234_920, counting="tflite",
                report_counter=tflite_counts, frontend=BASELINE22_FRONTEND)
def dcase22_baseline(n_classes: int = 10, in_channels: int = 1, **cfg) -> DCASE22Baseline:
    return DCASE22Baseline(n_classes=n_classes, in_channels=in_channels, **cfg)
