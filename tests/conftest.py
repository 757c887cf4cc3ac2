"""Shared fixtures: a tiny dataset in TAU layout written by the tests themselves, and a private cache."""
from __future__ import annotations

import gc
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from tinyasc.base.runtime import glibc

# The suite keeps glibc's default malloc (for this process and every tinyasc it starts): the tuned
# allocator keeps freed memory, and one process running hundreds of different models then peaked at
# 5.2 GB instead of 3.5 GB. tests/test_runtime.py checks the tuning itself in fresh interpreters.
os.environ.setdefault("TINYASC_NO_TUNE", "1")


@pytest.fixture(autouse=True)
def give_memory_back():
    """After each test, hand freed heap memory back to the system (glibc keeps it otherwise, and the
    suite's resident size would only grow: 3.4 GB peak without this). After a test that grew the
    process by more than 256 MB, collect reference cycles first: a Lightning trainer and its module
    refer to each other, so their tensors wait for the cycle collector (a collection after every
    test would double the suite's time)."""
    before = resident_mb()
    yield
    if resident_mb() - before > 256:
        gc.collect()
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


def resident_mb() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
    except OSError:  # no /proc (not Linux): never collect
        return 0


CLASSES = ("airport", "bus", "park")
DEVICES_TRAIN = ("a", "b")
DEVICES_TEST = ("a", "b", "s4")


def tone_clip(label_index: int, rng: np.random.Generator, rate: int = 44100, seconds: float = 1.0) -> np.ndarray:
    """A learnable clip: a class-specific tone plus noise."""
    t = np.arange(int(rate * seconds)) / rate
    freq = 300.0 * (label_index + 1) * (1 + 0.02 * rng.standard_normal())
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def write_tau_folder(root, recordings_per_class: int = 3, segments: int = 4, rate: int = 44100, seed: int = 0,
                     subtype: str = "PCM_24"):
    """meta.csv, split100.csv, split50.csv and test.csv over 1 s clips of ``rate`` Hz."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True)
    meta, train, test = [], [], []
    for k, label in enumerate(CLASSES):
        for r in range(recordings_per_class):
            is_test = r == recordings_per_class - 1
            identifier = f"city{r}-{100 + r}"
            for s in range(segments):
                for device in DEVICES_TEST if is_test else DEVICES_TRAIN:
                    name = f"audio/{label}-{identifier}-{s}-{device}.wav"
                    sf.write(root / name, tone_clip(k, rng, rate), rate, subtype=subtype)
                    meta.append(f"{name}\t{label}\t{identifier}\t{device}")
                    (test if is_test else train).append(f"{name}\t{label}")
    (root / "meta.csv").write_text("filename\tscene_label\tidentifier\tsource_label\n" + "\n".join(meta) + "\n")
    (root / "split100.csv").write_text("filename\tscene_label\n" + "\n".join(train) + "\n")
    (root / "split50.csv").write_text("filename\tscene_label\n" + "\n".join(train[::2]) + "\n")
    (root / "test.csv").write_text("filename\tscene_label\n" + "\n".join(test) + "\n")
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYASC_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    return tmp_path / "cache"


@pytest.fixture
def tau_dir(tmp_path):
    return write_tau_folder(tmp_path / "tau")
