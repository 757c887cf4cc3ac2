"""The LightningModule: front end, augmentations, model, loss and optimisation in one place.

The front end is an nn.Module inside the LightningModule, so features are computed on the training
device. Validation and test outputs are gathered across processes and de-duplicated by clip id
(under DDP a padded shard repeats clips), so metrics count every clip exactly once.
"""
from __future__ import annotations

import lightning as L
import numpy as np
import torch

from tinyasc.audio.features import MelFrontEnd
from tinyasc.augment import build_augmentations
from tinyasc.metrics import metrics_from_logits
from tinyasc.models import create_model
from tinyasc.training.distill import Teachers
from tinyasc.training.losses import build_loss
from tinyasc.training.optim import build_optimizer, build_schedule


class SceneClassifier(L.LightningModule):
    def __init__(self, config: dict, classes: list[str], devices: list[str]):
        super().__init__()
        self.save_hyperparameters({"config": config, "classes": list(classes), "devices": list(devices)})
        self.config, self.classes, self.device_names = config, list(classes), list(devices)
        self.frontend = MelFrontEnd(**config["frontend"])
        model_cfg = config["model"]
        self.model = create_model(model_cfg["name"], n_classes=len(classes), in_channels=self.frontend.out_channels,
                                  **(model_cfg.get("args") or {}))
        context = dict(sample_rate=config["frontend"]["sample_rate"], n_classes=len(classes), device_names=devices)
        self.wave_augment = build_augmentations(config["augment"].get("waveform"), "waveform", **context)
        self.spec_augment = build_augmentations(config["augment"].get("spectrogram"), "spectrogram", **context)
        self.mel_augment = build_augmentations(config["augment"].get("frontend"), "frontend", **context)
        self.loss_fn = build_loss(config["loss"])
        distill = config["loss"].get("distill")
        self.teachers = Teachers(**distill) if distill else None  # loaded at the first training step
        self._outputs: dict[str, list] = {"val": [], "test": []}
        self.test_results: dict | None = None

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.model(self.frontend(wave))

    def on_train_batch_start(self, batch, batch_idx):
        # Augmentation randomness depends only on (seed, step, rank), not on whatever else drew random
        # numbers before this batch, so a resumed run repeats an unbroken one exactly.
        seed = (int(self.config["seed"]) * 1_000_003 + self.global_step) * 64 + self.global_rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)

    def training_step(self, batch, batch_idx):
        wave, labels, devices = batch[0], batch[1], batch[2]
        # Mixup turns the labels into soft targets; the teachers see the same augmented batch.
        wave, targets = self.wave_augment(wave, labels, devices)
        feats = self.frontend(wave, mel_fb=self.mel_augment.filterbank(self.frontend))
        feats, targets = self.spec_augment(feats, targets, devices)
        logits = self.model(feats)
        if self.teachers is None:
            loss = self.loss_fn(logits, targets)
        else:
            loss = self.loss_fn(logits, targets, self.teachers.probs(self, batch, wave, feats))
        acc = (logits.argmax(1) == labels).float().mean()
        # sync_dist: under DDP the logged values average over all processes (a no-op in one process)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(labels), sync_dist=True)
        self.log("train/acc", acc, prog_bar=False, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True)
        return loss

    def _collect(self, stage: str, batch):
        wave, labels, devices, ids = batch
        self._outputs[stage].append((self(wave).float(), labels, devices, ids))

    def validation_step(self, batch, batch_idx):
        self._collect("val", batch)

    def test_step(self, batch, batch_idx):
        self._collect("test", batch)

    def _metrics(self, stage: str) -> dict:
        """Metrics of the collected outputs, gathered from every process (the shared metric code)."""
        logits, labels, devices, ids = (torch.cat(t) for t in zip(*self._outputs[stage]))
        self._outputs[stage] = []
        if self.trainer.world_size > 1:
            logits, labels, devices, ids = (self.all_gather(t).flatten(0, 1) for t in (logits, labels, devices, ids))
        logits, labels, devices, ids = (t.cpu().numpy() for t in (logits, labels, devices, ids))
        return metrics_from_logits(logits, labels, devices, ids, self.classes, self.device_names)

    def on_validation_epoch_end(self):
        if not self._outputs["val"]:
            return
        m = self._metrics("val")
        self.log_dict({"val/macro_acc": m["macro_accuracy"], "val/acc": m["accuracy"], "val/loss": m["log_loss"]},
                      prog_bar=True, sync_dist=False, rank_zero_only=False)

    def on_test_epoch_end(self):
        self.test_results = {"metrics": self._metrics("test")}

    def configure_optimizers(self):
        optimizer = build_optimizer(self.parameters(), self.config["optim"])
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": build_schedule(optimizer, self.config["schedule"], total, per_epoch)}
