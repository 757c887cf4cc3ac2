"""Scene prediction for audio files of any length, rate and channel count.

A file is decoded and resampled like the training data, cut into consecutive windows of the
model's clip duration (the last one zero-padded), and the window logits are averaged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tinyasc.audio.io import fit_length, load_audio


def windows(wave: np.ndarray, n_samples: int) -> np.ndarray:
    count = max(1, int(np.ceil(len(wave) / n_samples)))
    return fit_length(wave, count * n_samples).reshape(count, n_samples)


@torch.no_grad()
def predict_files(predictor, files: list[str | Path], batch_size: int = 64) -> list[dict]:
    """``predictor``: any loaded model (``tinyasc.modelfile.load_predictor``)."""
    sample_rate = predictor.sample_rate
    n_samples = int(round(predictor.duration * sample_rate))
    results = []
    for path in files:
        chunks = torch.from_numpy(windows(load_audio(path, sample_rate), n_samples))
        logits = torch.cat([predictor.logits(chunks[i:i + batch_size]) for i in range(0, len(chunks), batch_size)])
        probs = torch.softmax(logits.mean(0), 0).numpy()
        results.append({"file": str(path), "scene_label": predictor.classes[int(probs.argmax())],
                        "windows": len(chunks),
                        "probabilities": {c: round(float(p), 6) for c, p in zip(predictor.classes, probs)}})
    return results
