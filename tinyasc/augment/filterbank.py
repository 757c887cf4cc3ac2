"""Front-end augmentation: a randomly moved mel filterbank (the fmin/fmax jitter of the CP-JKU PaSST
and CP-Mobile training code), listed under ``augment.frontend``."""
from __future__ import annotations

import torch
from torch import nn

from tinyasc.audio.features import mel_filterbank
from tinyasc.augment.registry import register_augmentation


@register_augmentation("mel_jitter", "frontend")
class MelJitter(nn.Module):
    """Per training batch, draw fmin uniformly from a ``fmin_range`` Hz window around the front end's
    fmin (not below 0) and fmax from a ``fmax_range`` Hz window around its fmax (not above Nyquist),
    and return that filterbank for ``MelFrontEnd.forward(wave, mel_fb=...)``; None in evaluation."""

    def __init__(self, fmin_range: float = 10.0, fmax_range: float = 2000.0):
        super().__init__()
        self.fmin_range, self.fmax_range = fmin_range, fmax_range

    def forward(self, frontend) -> torch.Tensor | None:
        if not self.training or (self.fmin_range <= 0 and self.fmax_range <= 0):
            return None
        nyquist = frontend.sample_rate / 2
        fmax = nyquist if frontend.fmax is None else frontend.fmax
        lo_min = max(frontend.fmin - self.fmin_range / 2, 0.0)
        hi_max = min(fmax + self.fmax_range / 2, nyquist)
        u = torch.rand(2).tolist()
        fmin = lo_min + self.fmin_range * u[0]
        fmax = hi_max - self.fmax_range * u[1]
        fb = mel_filterbank(frontend.sample_rate, frontend.n_fft, frontend.n_mels, fmin, fmax,
                            frontend.mel_scale, frontend.mel_norm)
        return torch.from_numpy(fb).to(frontend.mel_fb.device)
