"""Scene prediction for audio files of any length, rate and channel count.

A file is decoded and resampled like the training data, cut into consecutive windows of the
model's clip duration (the last one zero-padded), and the window logits are averaged.

``predict_logits`` keeps every core busy: threads decode and resample the next files
(``load_audio_ahead``) while the network works on the current batch, and the windows of many files
go through the network together in large batches.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tinyasc.audio.io import fit_length, load_audio_ahead


def windows(wave: np.ndarray, n_samples: int) -> np.ndarray:
    count = max(1, int(np.ceil(len(wave) / n_samples)))
    return fit_length(wave, count * n_samples).reshape(count, n_samples)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def predict_windows(predictor, paths: list[str | Path], batch_size: int = 256, workers: int | None = None,
                    progress: bool | None = True) -> tuple[np.ndarray, np.ndarray]:
    """(logits [files, classes] averaged over each file's windows, windows per file); see ``predict_logits``."""
    paths = list(paths)
    n_samples = int(round(predictor.duration * predictor.sample_rate))
    sums = np.zeros((len(paths), len(predictor.classes)))
    counts = np.zeros(len(paths), dtype=np.int64)
    workers = workers or default_workers()
    waves, owners = [], []  # windows waiting for a full batch, and the index of the file each came from
    bar = tqdm(total=len(paths), unit=" clips", desc="predicting", file=sys.stderr, dynamic_ncols=True,
               disable=None if progress is None else not progress)

    def run(final: bool) -> None:
        batch, owner = np.concatenate(waves), np.concatenate(owners)
        end = len(batch) if final else len(batch) - len(batch) % batch_size
        for start in range(0, end, batch_size):
            logits = predictor.logits(torch.from_numpy(batch[start:min(start + batch_size, end)]))
            np.add.at(sums, owner[start:start + len(logits)], logits.cpu().numpy())
        np.add.at(counts, owner[:end], 1)
        waves[:], owners[:] = ([batch[end:]], [owner[end:]]) if end < len(batch) else ([], [])
        bar.update((owner[end] if end < len(batch) else owner[-1] + 1) - bar.n)  # files with every window done

    with bar:
        held = 0
        for index, wave in enumerate(load_audio_ahead(paths, predictor.sample_rate, workers=workers,
                                                      ahead=2 * batch_size)):
            chunks = windows(wave, n_samples)
            waves.append(chunks)
            owners.append(np.full(len(chunks), index))
            held += len(chunks)
            if held >= batch_size:
                run(final=False)
                held = sum(len(w) for w in waves)
        if waves:
            run(final=True)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32), counts


def predict_logits(predictor, paths: list[str | Path], batch_size: int = 256, workers: int | None = None,
                   progress: bool | None = True) -> np.ndarray:
    """Logits [files, classes] of audio files, in the order of ``paths``: each file's windows' logits
    averaged. ``predictor``: any loaded model (``tinyasc.modelfile.load_predictor``). ``workers``
    threads decode ahead (default: one per CPU core) while the network runs on batches of
    ``batch_size`` windows. ``progress``: a bar with clips/s on stderr (None: only on a terminal).
    An unreadable file raises its one-line TinyAscError."""
    return predict_windows(predictor, paths, batch_size, workers, progress)[0]


def predict_files(predictor, files: list[str | Path], batch_size: int = 256, workers: int | None = None,
                  progress: bool | None = None) -> list[dict]:
    """Scene label, window count and class probabilities of each file."""
    logits, counts = predict_windows(predictor, files, batch_size, workers, progress)
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    return [{"file": str(path), "scene_label": predictor.classes[int(p.argmax())], "windows": int(n),
             "probabilities": {c: round(float(v), 6) for c, v in zip(predictor.classes, p)}}
            for path, p, n in zip(files, probs, counts)]
