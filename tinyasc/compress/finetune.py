"""Short fine-tuning runs for compressed networks (QAT, recovery after a pruning step).

The run's own LightningModule is reused with its network swapped for the compressed one, so the
fine-tuning sees the run's front end, augmentations and loss; only the optimiser's learning rate,
the schedule and the epoch count change. Nothing is checkpointed or logged: the caller saves the
compressed model itself.
"""
from __future__ import annotations

import copy
import warnings

import lightning as L
from torch import nn

from tinyasc.training.module import SceneClassifier
from tinyasc.training.trainer import quiet_lightning


def module_around(record: dict, network: nn.Module) -> SceneClassifier:
    """The run's LightningModule around ``network`` (its float network replaced)."""
    hyper = record["hyper_parameters"]
    module = SceneClassifier(copy.deepcopy(hyper["config"]), hyper["classes"], hyper["devices"])
    module.model = network
    return module


def finetune(module, dm, epochs: int, lr: float, schedule: dict, progress: bool = True) -> None:
    """Train ``module`` for ``epochs`` on ``dm``'s training clips with a fresh optimiser."""
    if epochs <= 0:
        return
    quiet_lightning()
    config = copy.deepcopy(module.config)
    config["optim"]["lr"] = lr
    config["schedule"] = dict(schedule)
    module.config = config  # configure_optimizers reads it
    module.train()  # Lightning leaves modules in the mode it finds them (BN must update)
    t = config["trainer"]
    trainer = L.Trainer(max_epochs=epochs, accelerator=t["accelerator"],
                        devices=1, precision=t["precision"], deterministic=t["deterministic"], logger=False,
                        enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0)
    with warnings.catch_warnings():  # the run's module has a validation step; fine-tuning skips it
        warnings.filterwarnings("ignore", message=".*validation_step.*but have no.*val_dataloader.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        trainer.fit(module, train_dataloaders=dm.train_dataloader())
    module.cpu()
