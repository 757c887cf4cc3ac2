"""Evaluate a trained run or checkpoint on a test set and write its results into the run folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyasc.complexity import measure, model_input_shape
from tinyasc.config import check_names
from tinyasc.errors import TinyAscError
from tinyasc.training.checkpoints import load_checkpoint
from tinyasc.training.module import SceneClassifier


def resolve_checkpoint(run_or_ckpt: str | Path) -> tuple[Path, Path]:
    """(checkpoint, run folder) for a run folder (best.ckpt, else last.ckpt) or a checkpoint file."""
    path = Path(run_or_ckpt)
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name, path
        raise TinyAscError(f"{path}: no checkpoints/best.ckpt or checkpoints/last.ckpt in this run folder")
    if not path.exists():
        raise TinyAscError(f"{path}: no such run folder or checkpoint")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path, run_dir


def load_module(ckpt_path: str | Path) -> SceneClassifier:
    ckpt = load_checkpoint(ckpt_path)
    check_names(ckpt["hyper_parameters"]["config"], str(ckpt_path))
    module = SceneClassifier(**ckpt["hyper_parameters"])
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise TinyAscError(f"{ckpt_path}: weights do not fit the model its config describes ({str(exc)[:120]})") from None
    return module.eval()


def complexity_of(module: SceneClassifier, precision: str = "fp32") -> dict:
    shape = model_input_shape(module.frontend, module.config["data"]["duration"])
    return measure(module.model, shape, precision).to_dict()


def evaluate(run_or_ckpt: str | Path, data_dir: str | Path | None = None, progress: bool = True,
             datamodule=None, trainer=None) -> dict:
    """Test metrics of a checkpoint. ``trainer``: a multi-process trainer whose processes all call this
    (each tests its shard; the results come back in the first process, the others get {})."""
    from tinyasc.evaluation.plots import plot_confusion
    from tinyasc.training.run import make_datamodule, make_trainer, quiet_lightning, write_json

    quiet_lightning()
    ckpt_path, run_dir = resolve_checkpoint(run_or_ckpt)
    module = load_module(ckpt_path)
    dm = datamodule or make_datamodule(module.config, data_dir, progress)
    dm.setup("test")
    if dm.classes != module.classes:
        raise TinyAscError(f"{dm.folder.root}: its classes ({', '.join(dm.classes)}) differ from the model's "
                           f"({', '.join(module.classes)})")
    module.device_names = dm.devices
    (trainer or make_trainer(module.config, None, progress, fit=False)).test(module, datamodule=dm, verbose=False)
    if trainer is not None and trainer.global_rank != 0:
        return {}
    res = module.test_results
    metrics = res["metrics"]
    result = {"checkpoint": str(ckpt_path), "data": str(dm.folder.root), **metrics,
              "complexity": complexity_of(module)}
    if datamodule is None:  # a separate evaluate call: the run folder gets the new results
        write_json(result, run_dir / "metrics.json")
    plot_confusion(np.array(metrics["confusion"]), module.classes, run_dir / "confusion_matrix.png",
                   title=f"macro accuracy {metrics['macro_accuracy']:.1%}")
    return result
