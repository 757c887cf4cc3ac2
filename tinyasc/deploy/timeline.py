"""Scene timelines of long recordings: one label per window (1 s for DCASE models), CSV and PNG.

The file is cut into consecutive windows of the model's clip length (the last one zero-padded),
classified in batches, and the class probabilities are optionally smoothed with a centred moving
average over ``smooth`` windows (scenes change slowly; single-window flickers are usually errors).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from matplotlib.colors import ListedColormap

from tinyasc.audio.io import load_audio
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import atomic_path, check_output_dir
from tinyasc.deploy.predict import windows
from tinyasc.evaluation.plots import plt, save_figure
from tinyasc.metrics import probabilities


def moving_average(probs: np.ndarray, width: int) -> np.ndarray:
    """Centred mean over ``width`` rows (odd); near the ends over the rows that exist."""
    if width <= 1:
        return probs
    half = width // 2
    cumsum = np.vstack([np.zeros((1, probs.shape[1])), np.cumsum(probs, axis=0)])
    idx = np.arange(len(probs))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(probs))
    return (cumsum[hi] - cumsum[lo]) / (hi - lo)[:, None]


def scene_timeline(predictor, path: str | Path, smooth: int = 1, batch_size: int = 64) -> dict:
    if smooth < 1 or smooth % 2 == 0:
        raise TinyAscError(f"--smooth {smooth}: must be an odd number of windows (1 = no smoothing)")
    wave = load_audio(path, predictor.sample_rate)
    n_samples = int(round(predictor.duration * predictor.sample_rate))
    chunks = torch.from_numpy(windows(wave, n_samples))
    logits = torch.cat([predictor.logits(chunks[i:i + batch_size]) for i in range(0, len(chunks), batch_size)])
    raw = probabilities(logits)
    probs = moving_average(raw, smooth)
    starts = np.arange(len(chunks)) * predictor.duration
    return {"file": str(path), "seconds": len(wave) / predictor.sample_rate, "window": predictor.duration,
            "smooth": smooth, "classes": list(predictor.classes), "start": starts, "raw": raw, "probs": probs,
            "labels": [predictor.classes[k] for k in probs.argmax(1)],
            "raw_labels": [predictor.classes[k] for k in raw.argmax(1)]}


def output_paths(audio_file: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """The CSV and PNG files of ``audio_file``'s timeline in ``out_dir``, checked before any work: the
    folder is created if needed and must be writable, and no folder may stand where a file goes."""
    out_dir = check_output_dir(out_dir)
    stem = Path(audio_file).stem
    paths = out_dir / f"{stem}.timeline.csv", out_dir / f"{stem}.timeline.png"
    for path in paths:
        if path.is_dir():
            raise TinyAscError(f"{path}: is a folder, so the timeline cannot be written there")
    return paths


def write_csv(timeline: dict, path: str | Path) -> Path:
    """TAB-separated: start, end, scene_label (smoothed), raw_label, then one probability per class."""
    end_of_audio = timeline["seconds"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["start", "end", "scene_label", "raw_label", *timeline["classes"]])
        for i, start in enumerate(timeline["start"]):
            end = min(start + timeline["window"], end_of_audio)
            w.writerow([f"{start:.3f}", f"{end:.3f}", timeline["labels"][i], timeline["raw_labels"][i],
                        *(f"{p:.4f}" for p in timeline["probs"][i])])
    return Path(path)


def plot_timeline(timeline: dict, path: str | Path) -> Path:
    """Class probabilities over time (heat map) above the chosen label per window (colour strip)."""
    classes, probs = timeline["classes"], timeline["probs"]
    end = timeline["start"][-1] + timeline["window"]
    fig, (ax, strip) = plt.subplots(2, 1, figsize=(min(16, 4 + 0.12 * len(probs)), 1.2 + 0.32 * len(classes)),
                                    sharex=True, gridspec_kw={"height_ratios": [len(classes), 1.4]})
    ax.imshow(probs.T, aspect="auto", origin="lower", cmap="magma", vmin=0, vmax=1, interpolation="nearest",
              extent=(0, end, -0.5, len(classes) - 0.5))
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    smooth = f", smoothed over {timeline['smooth']} windows" if timeline["smooth"] > 1 else ""
    ax.set_title(f"{Path(timeline['file']).name}: scene probabilities per {timeline['window']:g} s{smooth}", fontsize=9)
    palette = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    colours = ListedColormap([palette(i % palette.N) for i in range(len(classes))])
    index = np.array([classes.index(label) for label in timeline["labels"]])
    strip.imshow(index[None, :], aspect="auto", cmap=colours, vmin=-0.5, vmax=len(classes) - 0.5,
                 interpolation="nearest", extent=(0, end, 0, 1))
    strip.set_yticks([])
    strip.set_xlabel("time (s)")
    shown = sorted(set(index))
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours(k)) for k in shown]
    strip.legend(handles, [classes[k] for k in shown], loc="upper center", bbox_to_anchor=(0.5, -0.9),
                 ncol=min(5, len(shown)), fontsize=8, frameon=False)
    save_figure(fig, path)
    return Path(path)
