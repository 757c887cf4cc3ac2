"""The Lightning trainer of a run: callbacks, loggers, atomic checkpoints, quiet output.

Resuming is exact at epoch boundaries: ``last.ckpt`` is rewritten at the end of every epoch whatever
the monitored metric does (``best.ckpt`` follows the metric), the CSV log is flushed to disk before
each ``last.ckpt`` is written, and a resumed run keeps the log rows of the steps its checkpoint
holds and appends to them (TensorBoard drops the events after that step). With
``trainer.checkpoint_every_n_steps``, ``last.ckpt`` is also written inside long epochs, and Ctrl-C
writes it at the step reached; resuming from inside an epoch restarts that epoch's data order, so it
is not bit-identical to an unbroken run.

With ``trainer.devices`` > 1 every process runs the whole program (Lightning's DDP strategy starts
the extra processes by re-running the command line; torchrun or srun start them all), see
docs/distributed.md; ``is_first_process`` tells the one that writes the run folder.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO

from tinyasc.base.files import atomic_path, write_text
from tinyasc.modelfile.checkpoint import load_checkpoint
from tinyasc.training.loggers import RunProgressBar, make_loggers


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's default writer can leave a truncated file when a process is killed mid-write; this
    one writes through ``atomic_path``, so the previous ``last.ckpt`` survives until the new one is
    complete. Loading goes through tinyasc's safe loader."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        # An open file, not a path: torch's own writer reports a full disk as RuntimeError, a file object as OSError.
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_checkpoint(path, map_location or "cpu")


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``: at the end of every epoch (or every ``every_n_steps`` steps), and at the step
    reached when the run is interrupted (Ctrl-C). The loggers are flushed first, so the CSV log on
    disk holds every row of the steps the checkpoint holds."""

    def __init__(self, dirpath, every_n_steps: int | None = None):
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, enable_version_counter=False,
                         save_on_train_epoch_end=True, every_n_train_steps=every_n_steps)

    def _save_checkpoint(self, trainer, filepath) -> None:
        flush_loggers(trainer)
        super()._save_checkpoint(trainer, filepath)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        flush_loggers(trainer)  # the previous epoch's epoch-level rows are logged after its checkpoint

    def on_exception(self, trainer, pl_module, exception) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.global_step > 0:
            self._save_checkpoint(trainer, str(Path(self.dirpath) / "last.ckpt"))


def flush_loggers(trainer) -> None:
    for logger in trainer.loggers:
        logger.save()


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; this one keeps the rows of the steps
    before ``resume_step`` (the resumed checkpoint's global step) and appends after them."""

    def __init__(self, log_dir: str, resume_step: int | None = None):
        self.resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if self.resume_step is None:  # a new run in a folder with old logs: start afresh
            path.unlink()
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            keys, rows = list(reader.fieldnames or []), [r for r in reader if int(r["step"]) < self.resume_step]
        self.metrics_keys = keys
        kept = io.StringIO()
        writer = csv.DictWriter(kept, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
        write_text(path, kept.getvalue())


class ResumableCSVLogger(CSVLogger):
    def __init__(self, *args, resume_step: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._resume_step = resume_step

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir, resume_step=self._resume_step)
        return self._experiment


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*treespec.*", ".*TensorBoard.*",
                    ".*tensorboardX.*", ".*Checkpoint directory.*exists and is not empty.*",
                    ".*all_gather is deprecated.*"):  # inside Lightning's all_gather, not ours to change
        warnings.filterwarnings("ignore", message=pattern)


def make_trainer(config: dict, run_dir: Path | None, progress: bool = True, fit: bool = True,
                 has_val: bool = True, resume_step: int | None = None) -> L.Trainer:
    """The trainer of a run; ``resume_step``: the global step of the checkpoint a resumed run starts from."""
    t = config["trainer"]
    kwargs = dict(accelerator=t["accelerator"], devices=t["devices"] if fit else 1,
                  num_nodes=t.get("num_nodes", 1) if fit else 1, strategy=t["strategy"] if fit else "auto",
                  precision=t["precision"],
                  deterministic=t["deterministic"], enable_progress_bar=progress, enable_model_summary=False,
                  plugins=[AtomicCheckpointIO()], use_distributed_sampler=False)  # EpochShuffle shards itself
    if not fit:
        return _unfilled(L.Trainer(logger=False, **kwargs), t["deterministic"])
    callbacks = [LearningRateMonitor(logging_interval="step")]
    if has_val:  # best.ckpt follows the validation metric; listed first, so last.ckpt holds its updated state
        callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/macro_acc",
                                         mode="max", save_top_k=1, enable_version_counter=False))
    callbacks.append(LastCheckpoint(run_dir / "checkpoints"))
    if t.get("checkpoint_every_n_steps"):
        callbacks.append(LastCheckpoint(run_dir / "checkpoints", every_n_steps=int(t["checkpoint_every_n_steps"])))
    if progress:
        callbacks.append(RunProgressBar(refresh_rate=5))
    loggers = [ResumableCSVLogger(run_dir, name="logs", version="", resume_step=resume_step),
               *make_loggers(config, run_dir, resume_step)]  # TensorBoard, W&B, MLflow: trainer.loggers
    return _unfilled(L.Trainer(max_epochs=t["epochs"], callbacks=callbacks, logger=loggers, num_sanity_val_steps=0,
                               log_every_n_steps=t["log_every_n_steps"], limit_val_batches=1.0 if has_val else 0,
                               **kwargs), t["deterministic"])


def _unfilled(trainer: L.Trainer, deterministic) -> L.Trainer:
    """Lightning's ``deterministic="warn"`` (the default) turns on torch's deterministic mode, which also
    NaN-fills every new tensor (``fill_uninitialized_memory``), a cost on every step that "warn" does not
    ask for: no kernel tinyasc runs reads memory it has not written. ``deterministic: true`` keeps it."""
    torch.utils.deterministic.fill_uninitialized_memory = deterministic != "warn"
    return trainer


def is_first_process() -> bool:
    """False in the extra processes of a multi-process run, told by the environment their launcher
    (Lightning's DDP re-launch, torchrun, srun) gives them, so it is known before any Trainer exists."""
    rank = next((os.environ[k] for k in ("RANK", "SLURM_PROCID", "LOCAL_RANK") if k in os.environ), "0")
    return int(rank) == 0 and os.environ.get("NODE_RANK", "0") == "0"
