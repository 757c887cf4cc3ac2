"""DCASE Task 1 metrics from predicted probabilities.

Macro class-wise accuracy (the mean over classes of per-class accuracy) is the primary metric.
Log loss is the mean multi-class cross-entropy with probabilities clipped to [1e-15, 1]. Per-device
results group TAU devices into seen (a, b, c, s1-s3) and unseen (s4-s6) when the devices are TAU's.
A metric with no clips to average over (a class without test clips) is None, ``null`` in JSON: NaN is
not JSON, and a mean over no clips is no number. Means over classes skip such classes.
"""
from __future__ import annotations

import numpy as np
import torch

from tinyasc.data.tau import device_group

EPS = 1e-15


def _group(correct: np.ndarray, nll: np.ndarray, mask: np.ndarray) -> dict:
    n = int(mask.sum())
    return {"accuracy": float(correct[mask].mean()) if n else None,
            "log_loss": float(nll[mask].mean()) if n else None, "n": n}


def macro_accuracy(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> float | None:
    accs = [np.mean(predictions[labels == k] == k) for k in range(n_classes) if np.any(labels == k)]
    return float(np.mean(accs)) if accs else None


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def compute_metrics(probs: np.ndarray, labels: np.ndarray, devices: np.ndarray, classes: list[str],
                    device_names: list[str]) -> dict:
    probs = np.asarray(probs, dtype=np.float64)
    labels, devices = np.asarray(labels), np.asarray(devices)
    pred = probs.argmax(axis=1)
    correct = (pred == labels).astype(np.float64)
    nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], EPS, 1.0))
    n_classes = len(classes)
    per_class = {name: _group(correct, nll, labels == k) for k, name in enumerate(classes)}
    per_device = {}
    for d, name in enumerate(device_names):
        mask = devices == d
        if mask.any():
            per_device[name] = {**_group(correct, nll, mask),
                                "macro_accuracy": macro_accuracy(labels[mask], pred[mask], n_classes)}
    groups = {}
    for group in ("seen", "unseen"):
        mask = np.array([device_group(device_names[d]) == group for d in devices], dtype=bool)
        if mask.any():
            groups[group] = {**_group(correct, nll, mask),
                             "macro_accuracy": macro_accuracy(labels[mask], pred[mask], n_classes)}
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    return {
        "accuracy": float(correct.mean()) if len(labels) else None,
        "macro_accuracy": macro_accuracy(labels, pred, n_classes),
        "log_loss": float(nll.mean()) if len(labels) else None,
        "macro_log_loss": _mean([v["log_loss"] for v in per_class.values()]),
        "n": int(len(labels)),
        "per_class": per_class,
        "per_device": per_device,
        "device_groups": groups,
        "classes": list(classes),
        "confusion": confusion.tolist(),
    }


def probabilities(logits) -> np.ndarray:
    """Class probabilities (softmax over the last axis, float32 as the model computed its logits)."""
    return torch.softmax(torch.as_tensor(logits).float(), dim=-1).numpy()


def metrics_from_logits(logits, labels, devices, ids, classes: list[str], device_names: list[str]) -> dict:
    """DCASE metrics of a test pass, each clip counted once: a sharded multi-process pass repeats the
    clips that pad the last shard, so rows are de-duplicated by clip id (first occurrence)."""
    ids = np.asarray(ids)
    _, first = np.unique(ids, return_index=True)
    probs = probabilities(logits)[first]
    return compute_metrics(probs, np.asarray(labels)[first], np.asarray(devices)[first], classes, device_names)
