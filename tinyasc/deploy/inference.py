"""Batched CPU inference and evaluation of any predictor (float, fp16, int8, pruned, ensemble, ONNX).

Evaluation here is a plain loop under ``torch.inference_mode`` instead of a Lightning test run:
int8 kernels are CPU-only, and one loop scores every kind of model the same way, so a float model
and its compressed copy are compared on exactly the same clips with exactly the same metric code.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from tqdm import tqdm

from tinyasc.errors import TinyAscError
from tinyasc.evaluation.metrics import compute_metrics


def use_all_cores() -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))


def collect(predictor, loader, progress: bool = False, desc: str = "inference") -> dict:
    """Logits, labels, device ids and clip ids over a data loader of (waves, labels, devices, ids)."""
    logits, labels, devices, ids = [], [], [], []
    for waves, y, d, i in tqdm(loader, desc=desc, disable=not progress, leave=False):
        logits.append(predictor.logits(waves.float()))
        labels.append(y)
        devices.append(d)
        ids.append(i)
    if not logits:
        raise TinyAscError(f"{desc}: the data set is empty")
    return {"logits": torch.cat(logits).numpy(), "labels": torch.cat(labels).numpy(),
            "devices": torch.cat(devices).numpy(), "ids": torch.cat(ids).numpy()}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check_classes(predictor, dm) -> None:
    if list(dm.classes) != list(predictor.classes):
        raise TinyAscError(f"{dm.folder.root}: its classes ({', '.join(dm.classes)}) differ from the model's "
                           f"({', '.join(predictor.classes)})")


def loader_for(dm, stage: str):
    if stage == "test":
        return dm.test_dataloader()
    if stage == "val":
        if not len(dm.sets.get("val", [])):
            raise TinyAscError(f"{dm.folder.root}: no held-out validation clips (data.val_fraction is 0)")
        return dm.val_dataloader()
    return dm._loader("train", shuffle=False)


def evaluate_predictor(predictor, dm, stage: str = "test", progress: bool = False) -> dict:
    """DCASE metrics of ``predictor`` on the ``stage`` clips of data module ``dm`` (set up already)."""
    check_classes(predictor, dm)
    out = collect(predictor, loader_for(dm, stage), progress, desc=f"{stage} set")
    metrics = compute_metrics(softmax(out["logits"]), out["labels"], out["devices"], predictor.classes, dm.devices)
    return {**metrics, "outputs": out}


def datamodule_for(predictor, data_dir=None, stage: str = "fit", progress: bool = False, batch_size=None):
    """The data module of the run a predictor was trained in (or of ``data_dir``), set up."""
    from tinyasc.training.run import make_datamodule

    config = predictor.config
    if batch_size:
        config = {**config, "trainer": {**config["trainer"], "eval_batch_size": batch_size}}
    dm = make_datamodule(config, data_dir, progress)
    dm.setup(stage)
    return dm


def summary(metrics: dict) -> dict:
    """The headline numbers of a metrics dict (no per-clip outputs)."""
    keep = ("accuracy", "macro_accuracy", "log_loss", "macro_log_loss", "n", "per_class", "per_device",
            "device_groups")
    return {k: metrics[k] for k in keep if k in metrics}
