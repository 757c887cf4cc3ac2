"""DCASE 2022/2023 Task 1 baseline: a three-layer Keras-era CNN on 40 log-mel bands x 51 frames.

Reports 000 and 002 quote its figures, 46,512 params and 29.235 M MACs, as printed by the
baseline's own tool: NeSsi on the int8 TFLite file. The 46,512 there are BYTES of that file (BN
folded into the convs, int8 weights, int32 biases); the Keras model has 46,246 weights (46,118
trainable). ``tinyasc.complexity.conventions.tflite_counts`` reproduces the baseline's convention.
"""
from __future__ import annotations

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


# dcase_util "mel" extractor of the baseline: 40 ms Hamming window, 20 ms hop, magnitude (not power)
# spectrum, librosa's Slaney mel bank 0-22.05 kHz, log(x + machine epsilon); 1 s -> 51 frames.
BASELINE22_FRONTEND = dict(sample_rate=44100, n_fft=2048, win_length=1764, hop_length=882, n_mels=40, fmin=0,
                           fmax=22050, window="hamming", mel_scale="slaney", mel_norm="slaney",
                           log_offset=2.220446049250313e-16)


@register_model("dcase22_baseline", report="000, 002",
                title="DCASE 2022/2023 Task 1 baseline (3-layer CNN, Keras)",
                report_params=46_512, report_macs=29_234_920, counting="tflite", frontend=BASELINE22_FRONTEND)
def dcase22_baseline(n_classes: int = 10, in_channels: int = 1, **cfg) -> DCASE22Baseline:
    return DCASE22Baseline(n_classes=n_classes, in_channels=in_channels, **cfg)
