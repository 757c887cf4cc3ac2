"""Batch augmentations, run on the training device inside the LightningModule.

Waveform augmentations take [B, samples]; spectrogram ones take [B, C, mels, frames]. Each is an
nn.Module active only in training mode, built from a config entry ``{name: ..., **args}`` through
one registry.
"""
from tinyasc.augment.registry import build_augmentations, list_augmentations, register_augmentation

from tinyasc.augment import spectrogram, waveform  # noqa: F401,E402  (registers the built-in ones)

__all__ = ["build_augmentations", "list_augmentations", "register_augmentation"]
