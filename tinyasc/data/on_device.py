"""Training data on the accelerator: the whole waveform cache copied to the training device once.

With ``data.on_device: true`` the run's data module is an ``OnDeviceDataModule``. When Lightning
asks it for the training (and validation) batches, it copies the cache of the training list, with
its labels and device ids, to the trainer's device (TAU22's 139,620 training clips of 1 s at
32 kHz in float16 are 8.9 GB) and draws every batch there by index: no loader workers, no host
copy per batch. A batch already lies on the training device, so Lightning's transfer is a no-op.

The batches are the loader path's, clip for clip and in the same order: the same ``EpochShuffle``
(training) and ``RankShard`` (validation) samplers give the indices, cut into batches the way
``DataLoader`` cuts them and sorted within a batch as ``WaveSet`` sorts them. So a run gives the
same result either way (tests/test_on_device.py), a resumed run continues the epoch order
(Lightning sets the sampler's epoch), and under DDP each process draws its own shard of the same
permutation, as it does through the loader; each process holds the whole cache on its own device.

Without a trainer (calibration, teacher precomputation, fine-tuning loops given a loader) there is
no training device, and the loaders of ``SceneDataModule`` serve. The test list always uses them.
"""
from __future__ import annotations

import numpy as np
import torch

from tinyasc.data.datamodule import SceneDataModule, WaveSet

ROWS_PER_COPY = 2048  # 131 MB of float16 1 s clips at 32 kHz: the host holds one piece at a time


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Copy a (memory-mapped) array to ``device`` piece by piece, never holding a second whole copy on the host."""
    out = torch.empty(array.shape, dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype, device=device)
    for start in range(0, len(array), ROWS_PER_COPY):
        piece = np.array(array[start:start + ROWS_PER_COPY])  # a writable copy: torch warns on a read-only memory map
        out[start:start + ROWS_PER_COPY].copy_(torch.from_numpy(piece))
    return out


class DeviceWaves:
    """A cache's waveforms, labels and device ids (indexed by cache row) as tensors on one device."""

    def __init__(self, dataset: WaveSet, device: torch.device):
        self.device = torch.device(device)
        self.waves = to_device(dataset.waves, self.device)
        self.labels = torch.from_numpy(dataset.labels).to(self.device)
        self.devices = torch.from_numpy(dataset.devices).to(self.device)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What ``WaveSet`` gives for these cache rows: (waves float32, labels, device ids, rows)."""
        return self.waves[rows].float(), self.labels[rows], self.devices[rows], rows


class DeviceBatches:
    """The batches ``DataLoader(dataset, batch_size, sampler)`` yields over a ``WaveSet``, drawn on the device.

    The sampler's order crosses to the device once per epoch; each batch is then a gather there.
    """

    batch_sampler = None  # Lightning looks for one beside ``sampler`` (whose epoch it sets)

    def __init__(self, data: DeviceWaves, rows: np.ndarray, sampler: torch.utils.data.Sampler, batch_size: int):
        self.data, self.sampler, self.batch_size = data, sampler, batch_size
        self.rows = torch.from_numpy(rows).to(data.device)

    def __len__(self):
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self):
        order = torch.tensor(list(self.sampler), dtype=torch.long).to(self.data.device)
        for indices in order.split(self.batch_size):
            yield self.data.batch(self.rows[indices.sort().values])  # sorted, as WaveSet reads them


class OnDeviceDataModule(SceneDataModule):
    """``SceneDataModule`` whose training and validation batches are drawn from the cache on the trainer's device."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_device: dict[int, DeviceWaves] = {}  # id of a cache's array -> its copy on the device

    def device_loader(self, name: str, shuffle: bool, device: torch.device) -> DeviceBatches:
        dataset = self.sets[name]
        key = id(dataset.waves)  # training and validation sets share one cache: one copy
        if key not in self.on_device or self.on_device[key].device != torch.device(device):
            self.on_device[key] = DeviceWaves(dataset, device)
        return DeviceBatches(self.on_device[key], dataset.rows, self.sampler(name, shuffle),
                             self.batch_size if shuffle else self.eval_batch_size)

    def train_dataloader(self):
        if self.trainer is None:
            return super().train_dataloader()
        return self.device_loader("train", True, self.trainer.strategy.root_device)

    def val_dataloader(self):
        if self.trainer is None or not len(self.sets.get("val", [])):
            return super().val_dataloader()
        return self.device_loader("val", False, self.trainer.strategy.root_device)

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            self.on_device.clear()  # gives the device memory back before the test
