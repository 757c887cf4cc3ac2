"""Batch augmentations, run on the training device inside the LightningModule.

Waveform augmentations take [B, samples]; spectrogram ones take [B, C, mels, frames]; a front-end
one returns a jittered mel filterbank. Each is an nn.Module active only in training mode, built from
a config entry ``{name: ..., **args}`` through one registry, and draws from torch's global random
generator, which the run seed seeds.
"""
from tinyasc.augment.registry import AugmentChain, build_augmentations, list_augmentations, register_augmentation

from tinyasc.augment import spectrogram, waveform  # noqa: F401,E402  (registers the built-in ones)
from tinyasc.augment import device_ir, filterbank, mixup, pitch  # noqa: F401,E402

__all__ = ["AugmentChain", "build_augmentations", "list_augmentations", "register_augmentation"]
