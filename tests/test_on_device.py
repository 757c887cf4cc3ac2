"""data.on_device: batches drawn from the cache on the training device equal the loader's, and so do runs."""
import csv
import json

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

import tinyasc.experiment as experiment
from tinyasc import config as cfgmod
from tinyasc.data.datamodule import EpochShuffle, SceneDataModule, collate_batch
from tinyasc.data.on_device import DeviceBatches, DeviceWaves, OnDeviceDataModule
from tinyasc.experiment import train

CPU = torch.device("cpu")


def assert_same_batches(loader, on_device):
    expected, drawn = list(loader), list(on_device)
    assert len(expected) == len(drawn) == len(on_device) == len(loader)
    for a, b in zip(expected, drawn):
        assert [t.dtype for t in a] == [t.dtype for t in b]
        for x, y in zip(a, b):
            assert torch.equal(x, y)


def test_device_batches_are_the_loader_batches_in_every_epoch_and_shard(tau_dir):
    dm = OnDeviceDataModule(tau_dir, batch_size=5, eval_batch_size=7, val_fraction=0.7, progress=False)
    dm.setup("fit")
    assert len(dm.sets["train"]) % 5 and len(dm.sets["val"]) % 7  # a short last batch in both
    train_loader, train_device = dm.loader("train", True), dm.device_loader("train", True, CPU)
    for epoch in (0, 3):
        train_loader.sampler.set_epoch(epoch)
        train_device.sampler.set_epoch(epoch)
        assert_same_batches(train_loader, train_device)
    assert_same_batches(dm.loader("val", False), dm.device_loader("val", False, CPU))
    assert len(dm.on_device) == 1  # training and validation read one copy of the cache
    first, second = (torch.cat([b[3] for b in dm.device_loader("train", True, CPU)]) for _ in range(2))
    assert torch.equal(first, second) and not torch.equal(first, first.sort().values)  # shuffled, by (seed, epoch)

    # Under DDP, rank r draws its shard of the same permutation, through the loader and on the device alike.
    train = dm.sets["train"]
    data = DeviceWaves(train, CPU)
    shards = []
    for rank in range(3):
        loader = DataLoader(train, batch_size=4, sampler=EpochShuffle(len(train), 0, rank, 3), collate_fn=collate_batch)
        on_device = DeviceBatches(data, train.rows, EpochShuffle(len(train), 0, rank, 3), 4)
        loader.sampler.set_epoch(2)
        on_device.sampler.set_epoch(2)
        assert_same_batches(loader, on_device)
        shards.append(torch.cat([b[3] for b in on_device]))
    assert set(torch.cat(shards).tolist()) == set(train.rows.tolist())


def test_without_a_trainer_the_loaders_serve(tau_dir):
    """Calibration and teacher precomputation read a few batches: no copy of the whole cache for them."""
    dm = OnDeviceDataModule(tau_dir, batch_size=4, progress=False)
    dm.setup("fit")
    assert isinstance(dm.train_dataloader(), DataLoader) and not dm.on_device


def run_config(tau_dir, on_device):
    augment = {"waveform": [{"name": "time_roll", "max_shift_s": 0.1}, {"name": "dir", "p": 0.5, "devices": ["a"]},
                            {"name": "mixup", "alpha": 0.3}],
               "spectrogram": [{"name": "freq_mixstyle", "p": 1.0}, {"name": "freq_mask", "width": 16},
                               {"name": "time_mask", "width": 4}]}
    return cfgmod.resolve(None, [{"data": {"dir": str(tau_dir), "val_fraction": 0.7, "on_device": on_device},
                                  "trainer": {"epochs": 2, "batch_size": 8, "eval_batch_size": 16},
                                  "schedule": {"warmup_steps": 3}, "augment": augment}])


def run_results(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    del metrics["train_seconds"], metrics["checkpoint"]
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        log = list(csv.DictReader(f))
    weights = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return metrics, log, weights


class StopAtEpoch(L.Callback):
    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == 1:
            raise RuntimeError("stopped at the start of epoch 1")


def test_training_on_device_repeats_the_loader_run_and_resumes(tau_dir, tmp_path, monkeypatch):
    """Same seed: the same metrics, log and final weights through the loader and on the device (here the
    CPU), with every kind of batch augmentation; a run stopped after an epoch resumes to the same result."""
    train(run_config(tau_dir, False), tmp_path / "loader", progress=False)
    train(run_config(tau_dir, True), tmp_path / "device", progress=False)
    (m_loader, log_loader, w_loader), (m_device, log_device, w_device) = (
        run_results(tmp_path / name) for name in ("loader", "device"))
    assert m_device == m_loader and log_device == log_loader
    assert w_device.keys() == w_loader.keys() and all(torch.equal(w_device[k], w_loader[k]) for k in w_loader)
    assert sum(1 for row in log_device if row["val/macro_acc"]) == 2  # validation ran on the device too

    make_trainer = experiment.make_trainer
    def stopping_trainer(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        trainer.callbacks.append(StopAtEpoch())
        return trainer
    monkeypatch.setattr(experiment, "make_trainer", stopping_trainer)
    with pytest.raises(RuntimeError, match="epoch 1"):
        train(run_config(tau_dir, True), tmp_path / "resumed", progress=False)
    monkeypatch.setattr(experiment, "make_trainer", make_trainer)
    train(run_config(tau_dir, True), tmp_path / "resumed", resume=True, progress=False)
    m_resumed, log_resumed, w_resumed = run_results(tmp_path / "resumed")
    assert m_resumed == m_loader and log_resumed == log_loader
    assert all(torch.equal(w_resumed[k], w_loader[k]) for k in w_loader)
