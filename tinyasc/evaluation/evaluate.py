"""The one evaluator: DCASE metrics of any model (float, fp16, int8, pruned, ensemble, ONNX) on a split.

Evaluation is a plain loop under ``torch.inference_mode`` over the data module's clips: every kind of
model is scored the same way, so a float model and its compressed copy are compared on exactly the
same clips with exactly the same metric code (``tinyasc.metrics``). Only a multi-process run tests
through Lightning (``evaluate_sharded``: each process its shard), with that same metric code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import write_json
from tinyasc.data.build import datamodule_for
from tinyasc.evaluation.plots import plot_confusion
from tinyasc.metrics import metrics_from_logits
from tinyasc.modelfile import load_predictor, predictor_from_record, read_model_file, run_dir_of
from tinyasc.modelfile.checkpoint import load_checkpoint


def collect(predictor, loader, progress: bool = False, desc: str = "inference") -> dict:
    """Logits, labels, device ids and clip ids over a data loader of (waves, labels, devices, ids)."""
    logits, labels, devices, ids = [], [], [], []
    for waves, y, d, i in tqdm(loader, desc=desc, disable=not progress, leave=False):
        logits.append(predictor.logits(waves.float()).cpu())
        labels.append(y)
        devices.append(d)
        ids.append(i)
    if not logits:
        raise TinyAscError(f"{desc}: the data set is empty")
    return {"logits": torch.cat(logits).numpy(), "labels": torch.cat(labels).numpy(),
            "devices": torch.cat(devices).numpy(), "ids": torch.cat(ids).numpy()}


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
    return dm.loader("train", shuffle=False)


def evaluate_predictor(predictor, dm, stage: str = "test", progress: bool = False) -> dict:
    """DCASE metrics of ``predictor`` on the ``stage`` clips of data module ``dm`` (set up already),
    with the per-clip ``outputs`` (logits, labels, devices, ids) beside them."""
    check_classes(predictor, dm)
    out = collect(predictor, loader_for(dm, stage), progress, desc=f"{stage} set")
    metrics = metrics_from_logits(out["logits"], out["labels"], out["devices"], out["ids"], predictor.classes,
                                  dm.devices)
    return {**metrics, "outputs": out}


def summary(metrics: dict) -> dict:
    """The headline numbers of a metrics dict (no per-clip outputs)."""
    keep = ("accuracy", "macro_accuracy", "log_loss", "macro_log_loss", "n", "per_class", "per_device",
            "device_groups")
    return {k: metrics[k] for k in keep if k in metrics}


def result_paths(file: Path, data_dir=None) -> tuple[Path, Path]:
    """Where an evaluation of model ``file`` writes its metrics and confusion matrix: a training
    checkpoint's go into its run folder (``metrics.json``, ``confusion_matrix.png``); any other model
    file's (compressed, ensemble) beside it, named after it (``<stem>.metrics.json``), so the run's
    training-time results stay as they are. Another dataset (``data_dir``) adds its folder name
    (``metrics-<name>.json``)."""
    folder, prefix = (run_dir_of(file), "") if file.parent.name == "checkpoints" else (file.parent, f"{file.stem}.")
    suffix = "" if data_dir is None else f"-{Path(data_dir).expanduser().resolve().name or 'data'}"
    return folder / f"{prefix}metrics{suffix}.json", folder / f"{prefix}confusion_matrix{suffix}.png"


def evaluate(model_path, data_dir=None, progress: bool = True, datamodule=None, write: bool = True) -> dict:
    """Test metrics of any model file or run folder; with ``write``, its run folder gets ``metrics.json``
    and ``confusion_matrix.png`` (``metrics-<name>.json`` and ``confusion_matrix-<name>.png`` when
    ``data_dir`` names another dataset; see ``result_paths``), listed in the result's ``written``.
    ``datamodule``: one already set up (the training run's)."""
    record, _, file = read_model_file(model_path)
    predictor = predictor_from_record(record, str(file))
    dm = datamodule or datamodule_for(predictor.config, data_dir, "test", progress)
    if datamodule is not None:
        dm.setup("test")
    metrics = evaluate_predictor(predictor, dm, "test", progress)
    metrics.pop("outputs")
    result = {"checkpoint": str(file), "data": str(dm.folder.root), **metrics, "complexity": predictor.complexity()}
    if write:
        metrics_path, figure_path = result_paths(file, None if datamodule is not None else data_dir)
        if datamodule is None:  # a separate evaluate call: the run folder gets the new results
            write_json(metrics_path, result)
        plot_confusion(np.array(metrics["confusion"]), predictor.classes, figure_path,
                       title=f"macro accuracy {metrics['macro_accuracy']:.1%}", data=result["data"],
                       checkpoint=str(file))
        if datamodule is None:  # the training run writes its own metrics.json, without this list
            result["written"] = [str(metrics_path), str(figure_path)]
    return result


def evaluate_sharded(module, trainer, dm, checkpoint) -> dict:
    """The test pass of a multi-process run: every process tests its shard with the weights of
    ``checkpoint``; the metrics come back in the first process, the others get {}."""
    module.load_state_dict(load_checkpoint(checkpoint)["state_dict"])
    dm.setup("test")
    check_classes(module, dm)
    trainer.test(module, datamodule=dm, verbose=False)
    if trainer.global_rank != 0:
        return {}
    predictor = load_predictor(checkpoint)
    return {"checkpoint": str(checkpoint), "data": str(dm.folder.root), **module.test_results["metrics"],
            "complexity": predictor.complexity()}
