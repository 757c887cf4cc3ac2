"""The Lightning trainer of a run: callbacks, loggers, atomic checkpoints, quiet output.

With ``trainer.devices`` > 1 every process runs the whole program (Lightning's DDP strategy starts
the extra processes by re-running the command line; torchrun or srun start them all), see
docs/distributed.md; ``is_first_process`` tells the one that writes the run folder.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from tinyasc.base.files import atomic_path
from tinyasc.modelfile.checkpoint import load_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's default writer can leave a truncated file when a process is killed mid-write; this
    one writes through ``atomic_path``, so the previous ``last.ckpt`` survives until the new one is
    complete. Loading goes through tinyasc's safe loader."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_checkpoint(path, map_location or "cpu")


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*treespec.*", ".*TensorBoard.*",
                    ".*tensorboardX.*", ".*Checkpoint directory.*exists and is not empty.*",
                    ".*all_gather is deprecated.*"):  # inside Lightning's all_gather, not ours to change
        warnings.filterwarnings("ignore", message=pattern)


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
