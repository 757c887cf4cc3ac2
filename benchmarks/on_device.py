"""Epoch time and the share of each step spent waiting for data: the loader path against data.on_device.

    python benchmarks/on_device.py [--clips 2048] [--batch-size 256] [--rounds 2] [--workers 0] [--work DIR]

Generates the built-in synthetic set (``--clips`` clips, train and test) once under ``--work`` and
trains dcase24_baseline with the DEFAULTS recipe (time roll, freq-MixStyle, frequency masking) for
one epoch through each path, in alternating rounds, on whatever accelerator Lightning finds: the
CPU here, a GPU unchanged. Per step, *waiting* is the time from the end of one step to the start of
the next (the loader's cache read and collation, or the gather on the device, plus Lightning's
bookkeeping) and *compute* the step itself; the accelerator is synchronised at both ends, so queued
GPU work counts where it runs. The on-device path's one copy of the cache to the device is timed
apart. Prints a markdown table of the medians over the rounds.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyasc import config as cfgmod  # noqa: E402
from tinyasc.data.build import make_datamodule  # noqa: E402
from tinyasc.data.on_device import OnDeviceDataModule  # noqa: E402
from tinyasc.data.synthetic import synthesize  # noqa: E402
from tinyasc.training.module import SceneClassifier  # noqa: E402
from tinyasc.training.trainer import quiet_lightning  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(L.Callback):
    """Per step: waiting (end of the previous step to the start of this one) and compute (the step)."""

    def __init__(self):
        self.wait, self.compute, self._end = [], [], 0.0

    def on_train_epoch_start(self, trainer, module):
        synchronize(module.device)
        self._end = time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        synchronize(module.device)
        self._start = time.perf_counter()
        self.wait.append(self._start - self._end)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        synchronize(module.device)
        self._end = time.perf_counter()
        self.compute.append(self._end - self._start)


def one_epoch(dm, config: dict) -> dict:
    L.seed_everything(0, verbose=False)
    module = SceneClassifier(config, dm.classes, dm.devices)
    timer = StepTimer()
    trainer = L.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="auto", devices=1,
                        use_distributed_sampler=False, callbacks=[timer])
    device = trainer.strategy.root_device
    copy_s = None
    if isinstance(dm, OnDeviceDataModule):  # the copy fit would make first, timed on its own; fit reuses it
        start = time.perf_counter()
        dm.device_loader("train", True, device)
        synchronize(device)
        copy_s = time.perf_counter() - start
    trainer.fit(module, datamodule=dm)
    wait, compute = sum(timer.wait), sum(timer.compute)
    return dict(steps=len(timer.compute), epoch_s=wait + compute, wait_ms=1000 * wait / len(timer.wait),
                wait_share=wait / (wait + compute), copy_s=copy_s, device=str(device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=2048, help="synthetic clips, training and test together")
    ap.add_argument("--batch-size", type=int, default=cfgmod.DEFAULTS["trainer"]["batch_size"])
    ap.add_argument("--rounds", type=int, default=2, help="epochs per path, alternating between the paths")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes of the loader path")
    ap.add_argument("--work", help="folder for the dataset and cache (default: a new temporary folder)")
    args = ap.parse_args()
    quiet_lightning()
    work = Path(args.work or tempfile.mkdtemp(prefix="tinyasc-on-device-"))
    os.environ.setdefault("TINYASC_CACHE", str(work / "cache"))
    data = work / f"synthetic-{args.clips}"
    if not (data / "meta.csv").is_file():
        synthesize(data, n_clips=args.clips, seed=0)
    paths = {}
    for name, on_device in (("loader", False), ("on device", True)):
        config = cfgmod.resolve(None, [{"data": {"dir": str(data), "val_fraction": 0.0, "num_workers": args.workers,
                                                 "on_device": on_device},
                                        "trainer": {"batch_size": args.batch_size}}])
        dm = make_datamodule(config, progress=False)
        dm.setup("fit")
        paths[name] = (dm, config, [])
    for _ in range(args.rounds):
        for dm, config, results in paths.values():
            results.append(one_epoch(dm, config))
    first = next(iter(paths.values()))[2][0]
    machine = torch.cuda.get_device_name() if first["device"].startswith("cuda") else platform.processor() or "CPU"
    print(f"\n{machine} ({first['device']}), torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(paths['loader'][0].sets['train'])} training clips, batch {args.batch_size}, "
          f"{first['steps']} steps, {args.workers} loader workers; medians of {args.rounds} rounds\n")
    print("| path | epoch s | waiting per step ms | waiting share | copy to device s |")
    print("|---|---:|---:|---:|---:|")
    for name, (_dm, _config, results) in paths.items():
        median = {k: statistics.median(r[k] for r in results) for k in ("epoch_s", "wait_ms", "wait_share")}
        copy = "" if results[0]["copy_s"] is None else f"{statistics.median(r['copy_s'] for r in results):.2f}"
        print(f"| {name} | {median['epoch_s']:.2f} | {median['wait_ms']:.1f} | {median['wait_share']:.2%} | {copy} |")


if __name__ == "__main__":
    main()
