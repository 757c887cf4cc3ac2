"""Figures written into run folders: confusion matrix and learning curves."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tinyasc.base.files import atomic_path  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    """Write a figure atomically (the format follows the file's suffix) and close it."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path, title: str = "") -> None:
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(classes), 0.6 + 0.55 * len(classes)))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{rows[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (row-normalised) {title}")
    fig.colorbar(im, ax=ax, fraction=0.04)
    save_figure(fig, path)


def learning_curves(metrics_csv: Path) -> dict[str, dict[int, float]]:
    """{series name: {epoch: value}} of the epoch-level losses and accuracies in Lightning's CSV log."""
    series: dict[str, dict[int, float]] = {}
    if not Path(metrics_csv).is_file():
        return series
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            for key in ("train/loss_epoch", "val/loss", "train/acc", "val/macro_acc", "val/acc"):
                if row.get(key):
                    series.setdefault(key, {})[epoch] = float(row[key])
    return series


def plot_learning_curves(metrics_csv: Path, path: Path) -> None:
    """Loss and accuracy per epoch from Lightning's CSV log."""
    series = learning_curves(metrics_csv)
    if not series:
        return
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    for key, values in series.items():
        ax = ax_loss if "loss" in key else ax_acc
        epochs = sorted(values)
        ax.plot([e + 1 for e in epochs], [values[e] for e in epochs], marker="o", label=key)
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)
