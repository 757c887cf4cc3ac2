"""The LightningModule: front end, augmentations, model, loss and optimisation in one place.

The front end is an nn.Module inside the LightningModule, so features are computed on the training
device. Validation and test outputs are gathered across processes and de-duplicated by clip id
(under DDP a padded shard repeats clips), so metrics count every clip exactly once.
"""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.ao.quantization import FakeQuantizeBase

from tinyasc.audio.features import MelFrontEnd
from tinyasc.augment import build_augmentations
from tinyasc.metrics import metrics_from_logits
from tinyasc.models import create_model
from tinyasc.training.distill import Teachers
from tinyasc.training.losses import build_loss
from tinyasc.training.noise_mask import NoiseMask
from tinyasc.training.optim import build_optimizer, build_schedule


def runs_channels_last(model: nn.Module) -> bool:
    """A float network with 2-D convolutions: channels-last made the DCASE 2024 baseline's whole training
    step 1.3x faster on an AVX-512 CPU (benchmarks/README.md). Quantisation-aware networks keep NCHW."""
    modules = list(model.modules())
    return any(isinstance(m, nn.Conv2d) for m in modules) and not any(isinstance(m, FakeQuantizeBase) for m in modules)


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
        noise_mask = config["loss"].get("noise_mask")  # report 003 Section 2.3.2: a training-only mask target
        self.noise_mask = NoiseMask.from_config(self.model, noise_mask) if noise_mask else None
        self.mask_on = self.noise_mask is not None
        self._outputs: dict[str, list] = {"val": [], "test": []}
        self.test_results: dict | None = None
        self.channels_last = False  # set while fitting or testing a network that runs faster so

    def _memory_format(self, channels_last: bool) -> None:
        self.channels_last = channels_last and runs_channels_last(self.model)
        self.model.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def on_fit_start(self):
        self._memory_format(True)

    def on_test_start(self):
        self._memory_format(True)

    def on_fit_end(self):  # whoever uses the network next (compression, export) gets the usual layout
        self._memory_format(False)

    def on_test_end(self):
        self._memory_format(False)

    def on_save_checkpoint(self, checkpoint):
        # Checkpoints hold plain contiguous tensors whatever layout the network trains in.
        checkpoint["state_dict"] = {k: v.contiguous() for k, v in checkpoint["state_dict"].items()}

    def setup(self, stage):
        if self.noise_mask is not None:  # the network may have been swapped (pruned, int8) since __init__
            self.mask_on = self.noise_mask.fit_head(self.model)

    def network(self, feats: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            feats = feats.contiguous(memory_format=torch.channels_last)
        return self.model(feats)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.network(self.frontend(wave))

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
        mel_fb = self.mel_augment.filterbank(self.frontend)
        if self.mask_on:  # noise added, the mask target from the same augmentations (tinyasc.training.noise_mask)
            feats, targets, logits, mask_loss, _ = self.noise_mask(self, wave, mel_fb, targets, devices)
        else:
            feats = self.frontend(wave, mel_fb=mel_fb)
            feats, targets = self.spec_augment(feats, targets, devices)
            logits = self.network(feats)
        if self.teachers is None:
            loss = self.loss_fn(logits, targets)
        else:
            loss = self.loss_fn(logits, targets, self.teachers.probs(self, batch, wave, feats))
        if self.mask_on:
            loss = loss + mask_loss
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
