"""Figures written into run folders: confusion matrix and learning curves."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from tinyasc.base.files import atomic_path  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    """Write a figure atomically (the format follows the file's suffix) and close it."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path, title: str = "", data: str = "",
                   checkpoint: str = ""):
    """Row-normalised confusion matrix; the title names the model file and the data it was scored on.
    Returns the (closed) figure."""
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
    what = " on ".join(filter(None, (short_path(checkpoint), Path(data).name if data else "")))
    ax.set_title("\n".join(filter(None, ("Confusion matrix (rows sum to 1)", what, title))), fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    save_figure(fig, path)
    return fig


def short_path(path: str, parts: int = 3) -> str:
    """The last few parts of a path: enough to name a run's checkpoint (run/checkpoints/best.ckpt)."""
    return "/".join(Path(path).parts[-parts:]) if path else ""


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


# Lightning's log keys -> what a reader calls them, and a colour per data set (training, validation)
SERIES_NAMES = {"train/loss_epoch": "training loss", "val/loss": "validation loss", "train/acc": "training accuracy",
                "val/macro_acc": "validation macro class-wise accuracy", "val/acc": "validation accuracy"}
SERIES_STYLE = {"train/loss_epoch": ("C0", "-"), "train/acc": ("C0", "-"), "val/loss": ("C1", "-"),
                "val/macro_acc": ("C1", "-"), "val/acc": ("C1", ":")}


def plot_learning_curves(metrics_csv: Path, path: Path, title: str = ""):
    """Loss and accuracy (%) per epoch from Lightning's CSV log, with the epoch best.ckpt keeps (the
    highest validation macro accuracy) marked. Returns the (closed) figure, or None without a log."""
    series = learning_curves(metrics_csv)
    if not series:
        return None
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, values in series.items():
        is_loss = "loss" in key
        epochs = sorted(values)
        ax = ax_loss if is_loss else ax_acc
        color, style = SERIES_STYLE.get(key, (None, "-"))
        ax.plot([e + 1 for e in epochs], [values[e] * (1 if is_loss else 100) for e in epochs], marker="o",
                color=color, linestyle=style, label=SERIES_NAMES.get(key, key))
    best = series.get("val/macro_acc")
    if best:
        epoch = max(best, key=best.get) + 1
        for ax in (ax_loss, ax_acc):
            ax.axvline(epoch, color="grey", linestyle="--", linewidth=1,
                       label=f"best epoch {epoch} (best.ckpt, {100 * max(best.values()):.1f} %)")
    for ax, name in ((ax_loss, "loss (cross-entropy)"), (ax_acc, "accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, max(max(v) for v in series.values()) + 1.5)  # whole epochs, even for one
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Learning curves" + (f": {title}" if title else ""))
    save_figure(fig, path)
    return fig
