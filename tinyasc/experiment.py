"""One run, end to end: check the run folder, train, evaluate the best checkpoint, plot, write results.

A run folder holds ``config.yaml`` (the resolved config, seed included), ``checkpoints/`` (``last.ckpt``
and ``best.ckpt``), ``logs/`` (CSV and TensorBoard), ``metrics.json``, ``confusion_matrix.png`` and
``learning_curves.png``; ``left_out.csv`` lists the files --skip-bad-files left out.

With ``trainer.devices`` > 1 every process runs this whole program. Only the first process checks
and writes the run folder; all of them train, and all of them test, each on its shard of the test
set (see docs/distributed.md).
"""
from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import write_json, write_text
from tinyasc.data.build import make_datamodule
from tinyasc.evaluation.evaluate import evaluate, evaluate_sharded
from tinyasc.evaluation.plots import plot_confusion, plot_learning_curves
from tinyasc.modelfile.checkpoint import load_checkpoint
from tinyasc.training.module import SceneClassifier
from tinyasc.training.optim import follows_metric
from tinyasc.training.trainer import is_first_process, make_trainer, quiet_lightning


def prepare_run_dir(run_dir: Path, resume: bool, first_process: bool = True) -> Path | None:
    """Checks before anything is written; returns the checkpoint to resume from."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if not first_process:  # the first process has checked, and may have written config.yaml already
        return last if resume else None
    if resume:
        if not last.is_file():
            raise TinyAscError(f"{run_dir}: nothing to resume (no checkpoints/last.ckpt)")
        load_checkpoint(last)  # fails cleanly on a damaged checkpoint before training starts
        return last
    if (run_dir / "checkpoints").exists() or (run_dir / "config.yaml").exists():
        raise TinyAscError(f"{run_dir}: already holds a run; use --resume to continue it or choose another --out")
    return None


def train(config: dict, run_dir: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train a run, evaluate its best checkpoint on the test set and write the run folder; returns the
    results (``{}`` in the extra processes of a multi-process run)."""
    quiet_lightning()
    run_dir = Path(run_dir)
    first = is_first_process()
    ckpt_path = prepare_run_dir(run_dir, resume, first)
    L.seed_everything(config["seed"], workers=True, verbose=False)
    dm = make_datamodule(config, progress=progress)
    dm.setup("fit")
    has_val = len(dm.sets["val"]) > 0
    if not has_val and follows_metric(config["schedule"].get("name", "cosine_warmup")):
        raise TinyAscError(f"schedule {config['schedule']['name']!r} follows a validation metric, but no validation "
                           f"recordings are held out; set data.val_fraction > 0")
    module = SceneClassifier(config, dm.classes, dm.devices)
    if first:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfgmod.save(config, run_dir / "config.yaml")
        if dm.left_out:
            write_text(run_dir / "left_out.csv",
                       "filename\tproblem\n" + "".join(f"{n}\t{why}\n" for n, why in dm.left_out.items()))
    trainer = make_trainer(config, run_dir, progress, fit=True, has_val=has_val)
    start = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    train_seconds = time.time() - start
    # The other processes may have named a different default run folder: all take the first one's.
    ckpt = trainer.strategy.broadcast(str(run_dir / "checkpoints" / ("best.ckpt" if has_val else "last.ckpt")))
    # Processes started by re-launch, torchrun or srun are all still here: they test together, each
    # on its shard. After ddp_spawn/ddp_fork only this one is, and it tests alone.
    together = trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
    if together:
        result = evaluate_sharded(module, trainer, dm, ckpt)
        if result:
            plot_confusion(np.array(result["confusion"]), dm.classes, run_dir / "confusion_matrix.png",
                           title=f"macro accuracy {result['macro_accuracy']:.1%}")
    else:
        result = evaluate(ckpt, progress=progress, datamodule=dm)
    if trainer.global_rank != 0:
        return {}
    result["train_seconds"] = round(train_seconds, 1)
    result["processes"] = trainer.world_size
    result["left_out_files"] = len(dm.left_out)
    write_json(run_dir / "metrics.json", result)
    plot_learning_curves(run_dir / "logs" / "metrics.csv", run_dir / "learning_curves.png")
    return result


def train_seeds(config: dict, out: str | Path, n_seeds: int, progress: bool = True) -> dict:
    """One run per seed in out/seed<k>, then mean and std (over seeds) of the test metrics in out/seeds.json."""
    out = Path(out)
    seeds = [config["seed"] + k for k in range(n_seeds)]
    results = [train(dict(config, seed=seed), out / f"seed{seed}", progress=progress) for seed in seeds]
    if not all(results):
        return {}  # not the main process of a multi-device run
    metrics = {"macro_accuracy": [r["macro_accuracy"] for r in results], "accuracy": [r["accuracy"] for r in results],
               "log_loss": [r["log_loss"] for r in results]}
    for group in results[0].get("device_groups", {}):
        metrics[f"macro_accuracy_{group}"] = [r["device_groups"][group]["macro_accuracy"] for r in results]
    summary = {name: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "runs": v}
               for name, v in metrics.items()}
    write_json(out / "seeds.json", {"seeds": seeds, **summary})
    return {"seeds": seeds, **summary}
