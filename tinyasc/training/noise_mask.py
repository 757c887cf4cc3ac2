"""Report 003's mask-based noise reduction (Section 2.3.2), a training-only auxiliary target.

The report: "we compute a frequency domain mask by comparing the features of the clean audio with
the corresponding noise-added frequencies. We then train our model with the noise-added data, using
the frequency domain mask as the label." It names neither the noise, nor the comparison, nor the
head that predicts the mask; this is tinyasc's reading:

- The clean audio is each training clip as the waveform augmentations leave it; the noise is white
  Gaussian noise at an SNR drawn per clip from [min_snr_db, max_snr_db] (the ``noise`` augmentation),
  added to it. The network sees the noise-added clip's features.
- The mask is 1 in a time-frequency bin where the noise raised the log-mel by at most
  ``threshold_db`` (noisy - clean <= 3 dB, i.e. a local SNR of about 0 dB or more: the ideal binary
  mask's usual criterion), else 0.
- The clean features go through the same spectrogram augmentations with the same random draws as the
  noisy ones (crop, masks, mixup partner and weight), so the target lines up with the input the
  network sees; a masked bin is equal in both, hence 1.
- The head is a 1x1 conv on the network's decoder map (Mini-SegNet: the output of its conv stages),
  its logits resized bilinearly to the input's mel x frame grid; the loss adds ``weight`` x the mean
  binary cross-entropy to the classification loss. The head lives here, outside the network: the
  report counts Mini-SegNet without one (276.49 k parameters), so model files, complexity counts,
  pruning and quantisation never see it.

Config: ``loss: {name: cross_entropy, noise_mask: {weight: 1.0, threshold_db: 3.0, min_snr_db: 10,
max_snr_db: 30}}`` (``noise_mask: null`` turns it off); a model without a ``decoder_output`` (the name of its decoder module) is refused.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.augment.waveform import AdditiveNoise
from tinyasc.base.errors import TinyAscError

ARGS = ("weight", "threshold_db", "min_snr_db", "max_snr_db")


def mask_target(noisy_logmel: torch.Tensor, clean_logmel: torch.Tensor, threshold_db: float = 3.0) -> torch.Tensor:
    """1.0 where the natural-log mel power rose by at most ``threshold_db`` decibels, else 0.0."""
    return (noisy_logmel - clean_logmel <= threshold_db * math.log(10) / 10).float()


def decoder_module(model: nn.Module) -> nn.Module | None:
    name = getattr(model, "decoder_output", None)
    return model.get_submodule(name) if name else None


def decoder_channels(model: nn.Module) -> int | None:
    decoder = decoder_module(model)
    convs = [m for m in decoder.modules() if isinstance(m, nn.Conv2d)] if decoder is not None else []
    return convs[-1].out_channels if convs else None


class NoiseMask(nn.Module):
    def __init__(self, model: nn.Module, weight: float = 1.0, threshold_db: float = 3.0,
                 min_snr_db: float = 10.0, max_snr_db: float = 30.0):
        super().__init__()
        if weight < 0:
            raise TinyAscError(f"loss.noise_mask: weight={weight} must be >= 0")
        if min_snr_db > max_snr_db:
            raise TinyAscError(f"loss.noise_mask: min_snr_db={min_snr_db} is above max_snr_db={max_snr_db}")
        channels = decoder_channels(model)
        if channels is None:
            raise TinyAscError(f"loss.noise_mask: {type(model).__name__} has no decoder map to predict the mask "
                               "from (models with one: mini_segnet, mini_segnet_pruned)")
        self.weight, self.threshold_db = weight, threshold_db
        self.noise = AdditiveNoise(min_snr_db, max_snr_db)
        self.head = nn.Conv2d(channels, 1, 1)

    @classmethod
    def from_config(cls, model: nn.Module, cfg: dict) -> "NoiseMask":
        unknown = sorted(set(cfg) - set(ARGS))
        if unknown:
            raise TinyAscError(f"loss.noise_mask: unknown key(s) {', '.join(unknown)}; known: {', '.join(ARGS)}")
        return cls(model, **cfg)

    def fit_head(self, model: nn.Module) -> bool:
        """A fresh head when the network was swapped for a narrower one (pruning); False when the new
        network has no decoder map (an int8 graph), for which the mask is left out."""
        channels = decoder_channels(model)
        if channels is not None and channels != self.head.in_channels:
            self.head = nn.Conv2d(channels, 1, 1).to(self.head.weight.device)
        return channels is not None

    @contextlib.contextmanager
    def decoder_map(self, model: nn.Module):
        """Collects the decoder's output of the forward passes run inside the block."""
        maps: list[torch.Tensor] = []
        hook = decoder_module(model).register_forward_hook(lambda module, args, out: maps.append(out))
        try:
            yield maps
        finally:
            hook.remove()

    def mask_loss(self, decoder_map: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``weight`` x mean binary cross-entropy of the head's mask logits against ``mask`` [B, 1, mels, frames]."""
        logits = F.interpolate(self.head(decoder_map), size=mask.shape[-2:], mode="bilinear", align_corners=False)
        return self.weight * F.binary_cross_entropy_with_logits(logits.float(), mask)

    def forward(self, module, wave: torch.Tensor, mel_fb, targets: torch.Tensor, devices: torch.Tensor):
        """One training batch of ``module`` (a SceneClassifier) with noise added: (noisy augmented
        features, targets, logits, the weighted mask loss, the mask)."""
        clean = module.frontend(wave, mel_fb=mel_fb)
        noisy = module.frontend(self.noise(wave), mel_fb=mel_fb)
        rng_devices = [wave.device] if wave.device.type != "cpu" else []
        with torch.random.fork_rng(devices=rng_devices, device_type=wave.device.type if rng_devices else "cuda"):
            clean, _ = module.spec_augment(clean, targets, devices)  # the same draws as the noisy pass below
        noisy, targets = module.spec_augment(noisy, targets, devices)
        mask = mask_target(noisy[:, :1], clean[:, :1], self.threshold_db)
        with self.decoder_map(module.model) as maps:
            logits = module.network(noisy)
        return noisy, targets, logits, self.mask_loss(maps[-1], mask), mask
