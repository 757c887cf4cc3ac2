"""Orchestration: resolve the dataset, build module and trainer, train, evaluate, write the run folder.

A run folder holds ``config.yaml`` (the resolved config, seed included), ``checkpoints/`` (``last.ckpt``
and ``best.ckpt``), ``logs/`` (CSV and TensorBoard), ``metrics.json``, ``confusion_matrix.png`` and
``learning_curves.png``; ``left_out.csv`` lists the files --skip-bad-files left out.

With ``trainer.devices`` > 1 every process runs this whole program (Lightning's DDP strategy starts
the extra processes by re-running the command line; torchrun or srun start them all). Only the
first process checks and writes the run folder; all of them train, and all of them test, each on
its shard of the test set (see docs/distributed.md).
"""
from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from tinyasc import config as cfgmod
from tinyasc.data.cache import default_cache_root
from tinyasc.data.datamodule import SceneDataModule
from tinyasc.errors import TinyAscError
from tinyasc.training.checkpoints import AtomicCheckpointIO, load_checkpoint
from tinyasc.training.module import SceneClassifier
from tinyasc.training.optim import METRIC_SCHEDULES


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*treespec.*", ".*TensorBoard.*",
                    ".*tensorboardX.*", ".*Checkpoint directory.*exists and is not empty.*",
                    ".*all_gather is deprecated.*"):  # inside Lightning's all_gather, not ours to change
        warnings.filterwarnings("ignore", message=pattern)


def synthetic_dir(clips: int | None, seed: int, progress: bool = True) -> Path:
    """The built-in synthetic dataset, generated once into the cache folder."""
    from tinyasc.data import synthetic

    clips = clips or synthetic.DEFAULT_CLIPS
    folder = default_cache_root() / "synthetic" / f"v{synthetic.VERSION}-clips{clips}-seed{seed}"
    if not (folder / "meta.csv").is_file():
        print(f"Generating the synthetic scene dataset ({clips} clips) in {folder}")
        synthetic.synthesize(folder, n_clips=clips, seed=seed, progress=progress)
    return folder


def make_datamodule(config: dict, data_dir: str | Path | None = None, progress: bool = True) -> SceneDataModule:
    d = config["data"]
    data_dir = data_dir or d.get("dir") or synthetic_dir(d.get("synthetic_clips"), d.get("synthetic_seed", 0), progress)
    t = config["trainer"]
    return SceneDataModule(data_dir, split=d["split"], sample_rate=config["frontend"]["sample_rate"],
                           duration=d["duration"], batch_size=t["batch_size"], eval_batch_size=t["eval_batch_size"],
                           num_workers=d["num_workers"], val_fraction=d["val_fraction"], seed=config["seed"],
                           cache_dir=d.get("cache_dir"), cache_dtype=d["cache_dtype"],
                           skip_bad_files=d["skip_bad_files"], progress=progress)


def make_trainer(config: dict, run_dir: Path | None, progress: bool = True, fit: bool = True,
                 has_val: bool = True) -> L.Trainer:
    t = config["trainer"]
    kwargs = dict(accelerator=t["accelerator"], devices=t["devices"] if fit else 1,
                  num_nodes=t.get("num_nodes", 1) if fit else 1, strategy=t["strategy"] if fit else "auto",
                  precision=t["precision"],
                  deterministic=t["deterministic"], enable_progress_bar=progress, enable_model_summary=False,
                  plugins=[AtomicCheckpointIO()], use_distributed_sampler=False)  # EpochShuffle shards itself
    if not fit:
        return L.Trainer(logger=False, **kwargs)
    callbacks = [ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/macro_acc",
                                 mode="max", save_last=True, enable_version_counter=False)
                 if has_val else  # no validation set: keep only the newest checkpoint, as last.ckpt, every epoch
                 ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, monitor=None,
                                 enable_version_counter=False, save_on_train_epoch_end=True),
                 LearningRateMonitor(logging_interval="step")]
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=5))
    loggers = [CSVLogger(run_dir, name="logs", version=""), TensorBoardLogger(run_dir, name="logs", version="tb")]
    return L.Trainer(max_epochs=t["epochs"], callbacks=callbacks, logger=loggers, num_sanity_val_steps=0,
                     log_every_n_steps=t["log_every_n_steps"], limit_val_batches=1.0 if has_val else 0, **kwargs)


def is_first_process() -> bool:
    """False in the extra processes of a multi-process run, told by the environment their launcher
    (Lightning's DDP re-launch, torchrun, srun) gives them, so it is known before any Trainer exists."""
    rank = next((os.environ[k] for k in ("RANK", "SLURM_PROCID", "LOCAL_RANK") if k in os.environ), "0")
    return int(rank) == 0 and os.environ.get("NODE_RANK", "0") == "0"


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
    quiet_lightning()
    run_dir = Path(run_dir)
    first = is_first_process()
    ckpt_path = prepare_run_dir(run_dir, resume, first)
    L.seed_everything(config["seed"], workers=True, verbose=False)
    dm = make_datamodule(config, progress=progress)
    dm.setup("fit")
    has_val = len(dm.sets["val"]) > 0
    if not has_val and config["schedule"].get("name") in METRIC_SCHEDULES:
        raise TinyAscError(f"schedule {config['schedule']['name']!r} follows a validation metric, but no validation "
                           f"recordings are held out; set data.val_fraction > 0")
    module = SceneClassifier(config, dm.classes, dm.devices)
    if first:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfgmod.save(config, run_dir / "config.yaml")
        if dm.left_out:
            write_left_out(dm.left_out, run_dir / "left_out.csv")
    trainer = make_trainer(config, run_dir, progress, fit=True, has_val=has_val)
    start = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    train_seconds = time.time() - start
    # The other processes may have named a different default run folder: all take the first one's.
    ckpt = trainer.strategy.broadcast(str(run_dir / "checkpoints" / ("best.ckpt" if has_val else "last.ckpt")))
    from tinyasc.evaluation.evaluate import evaluate

    # Processes started by re-launch, torchrun or srun are all still here: they test together, each
    # on its shard. After ddp_spawn/ddp_fork only this one is, and it tests alone.
    together = trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
    result = evaluate(ckpt, progress=progress, datamodule=dm, trainer=trainer if together else None)
    if trainer.global_rank != 0:
        return {}
    result["train_seconds"] = round(train_seconds, 1)
    result["processes"] = trainer.world_size
    result["left_out_files"] = len(dm.left_out)
    write_json(result, run_dir / "metrics.json")
    from tinyasc.evaluation.plots import plot_learning_curves

    plot_learning_curves(run_dir / "logs" / "metrics.csv", run_dir / "learning_curves.png")
    return result


def write_left_out(left_out: dict[str, str], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("filename\tproblem\n" + "".join(f"{name}\t{reason}\n" for name, reason in left_out.items()))
    os.replace(tmp, path)


def write_json(data: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    os.replace(tmp, path)
