"""Training throughput at TAU22 scale: a synthetic dataset the size of the 100 % split, one epoch.

    python benchmarks/scale.py [--clips 139620] [--test-clips 29680] [--pool 2000] [--steps N]
                               [--rate 32000] [--subtype PCM_16] [--batch-size 256] [--workers 0]
                               [--work /tmp/tinyasc-scale] [--keep]

1. Builds a dataset in TAU layout with ``--clips`` training clips (default: TAU22's 139,620) and
   ``--test-clips`` test clips (default: TAU22's 29,680 scaled by the same factor). Generating every
   clip with ``tinyasc.data.synthetic`` would take longer than the benchmark itself (about 4 ms of
   CPU per clip), so a pool of ``--pool`` clips is generated once and the dataset is written as byte
   copies of pool clips, each under its own name: every file is a real file on disk, read and
   decoded on its own, as in TAU22. ``--rate 44100 --subtype PCM_24`` writes TAU22's own format,
   which the cache then resamples to 32 kHz.
2. Builds the waveform cache through ``SceneDataModule.setup`` (checking every file as training
   does), then times a second setup that reuses it.
3. Reads 20 batches through the training loader alone (cache read and collation, no model).
4. Trains dcase24_baseline (the DEFAULTS recipe: batch 256, time roll, freq-MixStyle, frequency
   masking) for one epoch, or ``--steps`` steps, and splits each step into time waiting for the
   next batch (cache read and collation, plus Lightning's bookkeeping between steps) and compute
   (forward, backward, optimiser; the log-mel front end, timed on its own, is part of it).
   ``--steps 0`` stops after the cache.

Prints a markdown table and writes ``results.json`` under ``--work``; the dataset and cache are
deleted at the end unless ``--keep``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyasc import config as cfgmod  # noqa: E402
from tinyasc.data import synthetic  # noqa: E402
from tinyasc.data.datamodule import SceneDataModule  # noqa: E402
from tinyasc.data.tau import TauFolder  # noqa: E402
from tinyasc.training.module import SceneClassifier  # noqa: E402
from tinyasc.training.trainer import quiet_lightning  # noqa: E402

TAU22_TRAIN, TAU22_TEST = 139_620, 29_680


def memory_mb(field: str) -> float:
    """A /proc/self/status field (VmHWM: peak resident; RssAnon: resident, not file-backed) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def write_dataset(root: Path, n_train: int, n_test: int, pool: Path) -> None:
    """TAU layout over copies of the pool's clips; recordings of 10 segments, as TAU's."""
    pool_rows = [line.split("\t") for line in (pool / "meta.csv").read_text().splitlines()[1:]]
    (root / "audio").mkdir(parents=True)
    meta, train, test, copies = [], [], [], []
    for k in range(n_train + n_test):
        source, scene, _, device = pool_rows[k % len(pool_rows)]
        name = f"audio/{scene}-scale-{k // 10}-{k % 10}-{device}.wav"
        copies.append((pool / source, root / name))
        meta.append(f"{name}\t{scene}\tscale-{k // 10}\t{device}")
        (train if k < n_train else test).append(f"{name}\t{scene}")
    with ThreadPoolExecutor(4) as ex:  # file creation waits on the file system, not the CPU
        list(ex.map(lambda pair: shutil.copyfile(*pair), copies))
    (root / "meta.csv").write_text("filename\tscene_label\tidentifier\tsource_label\n" + "\n".join(meta) + "\n")
    (root / "split100.csv").write_text("filename\tscene_label\n" + "\n".join(train) + "\n")
    (root / "test.csv").write_text("filename\tscene_label\n" + "\n".join(test) + "\n")


class StepTimer(L.Callback):
    """Per step: time from the end of the previous step to the start of this one (waiting for the
    batch) and from its start to its end (compute); the front end's share via forward hooks."""

    def __init__(self):
        self.wait, self.compute, self.frontend, self.anon_peak = [], [], 0.0, 0.0
        self._end = self._start = self._fe = None

    def on_train_epoch_start(self, trainer, module):
        module.frontend.register_forward_pre_hook(lambda *_: setattr(self, "_fe", time.perf_counter()))
        module.frontend.register_forward_hook(lambda *_: self._add_frontend())
        self._end = time.perf_counter()

    def _add_frontend(self):
        self.frontend += time.perf_counter() - self._fe

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._start = time.perf_counter()
        self.wait.append(self._start - self._end)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._end = time.perf_counter()
        self.compute.append(self._end - self._start)
        if batch_idx % 10 == 0:
            self.anon_peak = max(self.anon_peak, memory_mb("RssAnon"))
            done = sum(self.wait) + sum(self.compute)
            print(f"  step {batch_idx + 1}: {done:.0f} s, {(batch_idx + 1) * len(batch[0]) / done:.1f} clips/s, "
                  f"waiting {sum(self.wait) / done:.1%}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=TAU22_TRAIN, help="training clips (default: TAU22's 100 %% split)")
    ap.add_argument("--test-clips", type=int, help="test clips (default: TAU22's 29,680 scaled like --clips)")
    ap.add_argument("--pool", type=int, default=2000, help="distinct synthetic clips the dataset is copied from")
    ap.add_argument("--steps", type=int, help="train this many steps instead of a full epoch (0: no training)")
    ap.add_argument("--rate", type=int, default=32000, help="sample rate of the written clips")
    ap.add_argument("--subtype", default="PCM_16", help="WAV sample format of the written clips")
    ap.add_argument("--batch-size", type=int, default=cfgmod.DEFAULTS["trainer"]["batch_size"])
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument("--work", default="/tmp/tinyasc-scale", help="folder for the dataset, cache and results")
    ap.add_argument("--keep", action="store_true", help="keep the dataset and cache")
    args = ap.parse_args()
    n_test = args.test_clips if args.test_clips is not None else max(20, round(args.clips * TAU22_TEST / TAU22_TRAIN))
    work = Path(args.work)
    root, cache = work / f"data-{args.clips}-{args.rate}-{args.subtype}", work / "cache"
    pool = work / f"pool-{args.pool}-{args.rate}-{args.subtype}"
    quiet_lightning()
    res: dict = {"train_clips": args.clips, "test_clips": n_test, "format": f"{args.rate} Hz {args.subtype}",
                 "batch_size": args.batch_size, "workers": args.workers, "cpu_cores": os.cpu_count(),
                 "torch_threads": torch.get_num_threads()}

    if not (root / "meta.csv").is_file():
        start = time.perf_counter()
        if not (pool / "meta.csv").is_file():
            synthetic.synthesize(pool, n_clips=args.pool, seed=0, sample_rate=args.rate, subtype=args.subtype)
        res["pool_seconds"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        shutil.rmtree(root, ignore_errors=True)
        write_dataset(root, args.clips, n_test, pool)
        res["copy_seconds"] = round(time.perf_counter() - start, 1)
    res["dataset_mb"] = round(disk_mb(root))

    start = time.perf_counter()
    TauFolder(root)
    res["index_seconds"] = round(time.perf_counter() - start, 2)  # meta.csv read and path checks

    config = cfgmod.resolve(None, [{"data": {"dir": str(root), "val_fraction": 0.0, "num_workers": args.workers},
                                    "trainer": {"batch_size": args.batch_size, "epochs": 1}}])

    def datamodule():
        d, t = config["data"], config["trainer"]
        return SceneDataModule(root, split=100, sample_rate=config["frontend"]["sample_rate"], duration=d["duration"],
                               batch_size=t["batch_size"], eval_batch_size=t["eval_batch_size"],
                               num_workers=d["num_workers"], val_fraction=0.0, seed=0, cache_dir=str(cache))

    start = time.perf_counter()
    datamodule().setup("fit")
    res["cache_build_seconds"] = round(time.perf_counter() - start, 1)
    res["cache_mb"] = round(disk_mb(cache))
    start = time.perf_counter()
    dm = datamodule()
    dm.setup("fit")
    res["cache_reuse_seconds"] = round(time.perf_counter() - start, 1)
    res["rss_after_setup_mb"] = round(memory_mb("VmHWM"))

    # The loader alone, over batches of another epoch's order (so training's first batches stay cold).
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(99)
    batches = iter(loader)
    start = time.perf_counter()
    n_read = min(20, len(loader))
    for _ in range(n_read):
        next(batches)
    res["loader_ms_per_batch"] = round(1000 * (time.perf_counter() - start) / n_read, 1)
    del batches
    if args.steps != 0:
        train_epoch(dm, config, args.steps, args.batch_size, res)
    (work / "results.json").write_text(json.dumps(res, indent=2))
    print("\n| measure | value |\n|---|---|")
    for key, value in res.items():
        print(f"| {key} | {value} |")
    if not args.keep:
        del dm
        for folder in (root, cache, pool):
            shutil.rmtree(folder, ignore_errors=True)


def train_epoch(dm: SceneDataModule, config: dict, steps: int | None, batch_size: int, res: dict) -> None:
    L.seed_everything(0, verbose=False)
    module = SceneClassifier(config, dm.classes, dm.devices)
    timer = StepTimer()
    trainer = L.Trainer(max_epochs=1, limit_train_batches=steps or 1.0, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1, deterministic=True, use_distributed_sampler=False,
                        callbacks=[timer])
    print(f"training: {len(dm.sets['train'])} clips, {len(dm.train_dataloader())} steps per epoch", flush=True)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    trainer.fit(module, datamodule=dm)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    n_steps, wait, compute = len(timer.compute), sum(timer.wait), sum(timer.compute)
    per_epoch = len(dm.train_dataloader())
    clips = min(n_steps * batch_size, len(dm.sets["train"]))
    res.update(steps=n_steps, steps_per_epoch=per_epoch, full_epoch=n_steps == per_epoch, epoch_clips=clips,
               fit_seconds=round(wall, 1), step_seconds=round((wait + compute) / n_steps, 3),
               cpu_seconds_per_step=round(cpu / n_steps, 2),  # all threads; less sensitive to other load
               clips_per_second=round(clips / (wait + compute), 1), wait_share=round(wait / (wait + compute), 4),
               wait_per_step_ms=round(1000 * wait / n_steps, 1),
               frontend_share=round(timer.frontend / (wait + compute), 4),
               peak_rss_mb=round(memory_mb("VmHWM")), peak_rss_anon_mb=round(timer.anon_peak),
               maxrss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


if __name__ == "__main__":
    main()
