"""Front-end and training-step throughput on this machine, measured side by side in one run.

    python benchmarks/throughput.py [--batch 64] [--steps 30] [--threads N]

Prints (1) log-mel front-end throughput, batched torch vs librosa one clip at a time, with the
same DCASE 2024 settings; (2) the DCASE 2024 baseline's training-step throughput from a warm
waveform cache, and the share of each step spent outside the model (loading from the cache,
features, augmentation).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def frontend_rows(batch: int) -> list[tuple[str, float]]:
    import librosa

    from tinyasc.audio.features import MelFrontEnd

    fe = MelFrontEnd()
    waves = torch.randn(batch, 32000) * 0.1
    torch_s = timed(lambda: fe(waves), 5) / batch
    clips = waves.numpy()[:16]

    def per_clip():
        for clip in clips:
            mel = librosa.feature.melspectrogram(y=clip, sr=32000, n_fft=4096, win_length=3072, hop_length=500,
                                                 n_mels=256, htk=True, norm=None, power=2.0, pad_mode="reflect")
            np.log(mel + 1e-5)

    librosa_s = timed(per_clip, 2) / len(clips)
    return [("front end, torch batched", 1 / torch_s), ("front end, librosa per clip", 1 / librosa_s)]


def training_rows(batch: int, steps: int) -> tuple[list, dict]:
    from tinyasc import config as cfgmod
    from tinyasc.data.datamodule import SceneDataModule
    from tinyasc.data.synthetic import synthesize
    from tinyasc.training.module import SceneClassifier

    tmp = Path(tempfile.mkdtemp(prefix="tinyasc-bench-"))
    os.environ["TINYASC_CACHE"] = str(tmp / "cache")
    data = synthesize(tmp / "synth", n_clips=max(400, batch * 8), seed=0)
    config = cfgmod.resolve(None, [{"trainer": {"batch_size": batch}}])
    dm = SceneDataModule(data, batch_size=batch, val_fraction=0.0, progress=False)
    dm.setup("fit")  # builds the cache: everything after this reads a warm cache
    module = SceneClassifier(config, dm.classes, dm.devices).train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    parts = dict(load=0.0, augment=0.0, features=0.0, model=0.0)
    loader, done = iter(dm.train_dataloader()), 0
    for step in range(steps + 3):
        t0 = time.perf_counter()
        try:
            wave, labels, _, _ = next(loader)
        except StopIteration:
            loader = iter(dm.train_dataloader())
            wave, labels, _, _ = next(loader)
        t1 = time.perf_counter()
        wave = module.wave_augment(wave)
        t2 = time.perf_counter()
        feats = module.frontend(wave)
        t3 = time.perf_counter()
        feats = module.spec_augment(feats)
        t4 = time.perf_counter()
        loss = module.loss_fn(module.model(feats), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t5 = time.perf_counter()
        if step >= 3:  # skip warm-up steps
            parts["load"] += t1 - t0
            parts["augment"] += (t2 - t1) + (t4 - t3)
            parts["features"] += t3 - t2
            parts["model"] += t5 - t4
            done += len(labels)
    total = sum(parts.values())
    rows = [("training step, whole (clips/s)", done / total), ("training step, model only (clips/s)", done / parts["model"])]
    return rows, {k: v / total for k, v in parts.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, CPU: {os.cpu_count()} cores")
    fe = frontend_rows(args.batch)
    train, shares = training_rows(args.batch, args.steps)
    width = max(len(name) for name, _ in fe + train)
    print(f"\n{'measurement':<{width}}  {'clips/s':>10}")
    for name, value in fe + train:
        print(f"{name:<{width}}  {value:>10.1f}")
    print(f"\nfront end speed-up over librosa: {fe[0][1] / fe[1][1]:.1f}x (target >= 20x)")
    print("share of a training step: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))
    outside = shares["load"] + shares["augment"] + shares["features"]
    print(f"outside the model: {outside:.1%}; data loading alone: {shares['load']:.1%} (target <= 20 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
