"""Lightning data module: files, splits, the waveform cache and loaders.

Batches are fetched whole from the memory-mapped cache (``__getitems__``), so loading a batch is
one sorted fancy-index read, not a Python loop over clips. Batches are (waves [B, samples] float32,
labels [B], device ids [B], clip ids [B]).

``setup`` checks every file of the lists it loads before anything trains (see
``tinyasc.data.validate``): all problems raise together, or, with ``skip_bad_files``, those files
are left out and listed in ``left_out``. A training split that lacks a class of the test list, or
holds a single class, is warned about (one line naming the split file). Under DDP every loader is
sharded by rank: training with ``EpochShuffle``, evaluation with ``RankShard``.

Clips longer than the dataset's segments (``data.duration: 2.0`` on TAU's 1 s segments; report 003's
ensemble 4): the cache holds single segments, and a training example joins consecutive segments of
one recording (``segment_windows``). Validation and test clips stay single segments, the input the
model is scored on (report 003 evaluates its long MobileNet on the 1 s test clips). A dataset whose
files are as long as ``duration`` or longer, or whose names carry no segment index, is cached at
``duration`` as before (a short file zero-padded).
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from tinyasc.data import validate
from tinyasc.data.cache import load_or_build
from tinyasc.data.tau import Clip, TauFolder, recording_segment
from tinyasc.base.errors import TinyAscError


class WaveSet(Dataset):
    def __init__(self, waves: np.ndarray, labels: np.ndarray, devices: np.ndarray, rows: np.ndarray):
        self.waves, self.labels, self.devices, self.rows = waves, labels, devices, rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, indices):
        order = np.sort(np.asarray(indices))  # sorted reads are sequential on disk
        rows = self.rows[order]
        waves = torch.from_numpy(np.asarray(self.waves[rows], dtype=np.float32))
        return (waves, torch.from_numpy(self.labels[rows]), torch.from_numpy(self.devices[rows]),
                torch.from_numpy(rows))


class JoinedWaves:
    """Training examples that join cache rows, read like the cache array they wrap (by a row, rows or a
    slice), so ``WaveSet`` and the on-device copy take it unchanged: example i is the concatenation of
    the rows ``windows[i]`` (-1: a segment of zeros), cut to ``n_samples``."""

    def __init__(self, base: np.ndarray, windows: np.ndarray, n_samples: int):
        self.base, self.windows, self.n_samples = base, windows, n_samples
        self.shape, self.dtype = (len(windows), n_samples), base.dtype

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, index):
        window = self.windows[index]
        parts = np.asarray(self.base[np.maximum(window, 0)])  # fancy indexing: a copy, safe to write
        parts[window < 0] = 0
        return parts.reshape(*window.shape[:-1], -1)[..., :self.n_samples]


def segment_windows(clips: list[Clip], usable: np.ndarray, k: int) -> np.ndarray:
    """[clips, k] cache rows whose concatenation is each clip's training example: the clip and the next
    k - 1 segments of its recording; where fewer follow, the window moves back to end at the last one
    (a 2 s example of a recording's last segment is the previous one and it). A recording with fewer
    than k consecutive usable segments joins those it has and is padded with zeros (-1), as is a clip
    whose name has no segment index: a 1-segment recording gives exactly today's zero-padded clip."""
    found = {where: row for row, c in enumerate(clips) if usable[row] and (where := recording_segment(c))}
    windows = np.full((len(clips), k), -1, dtype=np.int64)
    windows[:, 0] = np.arange(len(clips))
    for row, clip in enumerate(clips):
        where = recording_segment(clip)
        if where is None or not usable[row]:  # an unusable clip is never drawn: its row stays as it is
            continue
        recording, index = where
        last = index
        while last - index + 1 < k and (recording, last + 1) in found:
            last += 1
        first = index
        while last - first + 1 < k and (recording, first - 1) in found:
            first -= 1
        windows[row, :last - first + 1] = [found[(recording, i)] for i in range(first, last + 1)]
    return windows


class EpochShuffle(torch.utils.data.Sampler):
    """A shuffle that depends only on (seed, epoch): a resumed run sees the same order as an unbroken one.

    Lightning calls ``set_epoch`` before every epoch. Under DDP each rank takes every world_size-th
    index of the same permutation, padded by repetition so all ranks run the same number of steps.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.rank, self.world_size, self.epoch = n, seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return -(-self.n // self.world_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        order = torch.cat([order, order[: len(self) * self.world_size - self.n]])
        return iter(order[self.rank::self.world_size].tolist())


class RankShard(torch.utils.data.Sampler):
    """Evaluation order under DDP: rank r takes items r, r + W, r + 2W, ... of 0..n-1, padded by
    repetition so every rank runs the same number of batches; the module drops repeats by clip id."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        self.n, self.rank, self.world_size = n, rank, world_size

    def __len__(self):
        return -(-self.n // self.world_size)

    def __iter__(self):
        order = list(range(self.n)) + list(range(len(self) * self.world_size - self.n))
        return iter(order[self.rank::self.world_size])


def collate_batch(batch):
    return batch  # __getitems__ already returns a whole batch


def holdout_recordings(clips: list[Clip], fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of clips whose recording (identifier) is held out for validation."""
    if fraction <= 0:
        return np.zeros(len(clips), dtype=bool)
    def score(identifier):  # stable across runs and machines, unlike hash()
        return int(hashlib.md5(f"{seed}:{identifier}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return np.array([score(c.identifier) < fraction for c in clips])


def warn_about_classes(train_path: Path, train: list[Clip], test_path: Path, test: list[Clip]) -> None:
    """One warning line each: test classes the training split never shows, and a single-class split."""
    trained = sorted({c.label for c in train})
    missing = sorted({c.label for c in test} - set(trained))
    if missing:
        warnings.warn(f"{train_path}: no training clips of {len(missing)} class(es) the test list {test_path} "
                      f"holds: {', '.join(missing)}; the model cannot learn them")
    if len(trained) == 1:
        warnings.warn(f"{train_path}: the training split holds a single class ({trained[0]}); the model "
                      f"learns to answer it for every clip")


class SceneDataModule(L.LightningDataModule):
    def __init__(self, data_dir: str | Path, split: int | str = 100, sample_rate: int = 32000,
                 duration: float = 1.0, batch_size: int = 64, eval_batch_size: int = 256, num_workers: int = 0,
                 val_fraction: float = 0.1, seed: int = 0, cache_dir: str | None = None,
                 cache_dtype: str = "float16", skip_bad_files: bool = False, progress: bool = True):
        super().__init__()
        self.folder = TauFolder(data_dir)
        self.split, self.sample_rate, self.duration = split, sample_rate, duration
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.val_fraction, self.seed = val_fraction, seed
        self.cache_dir, self.cache_dtype = cache_dir, cache_dtype
        self.skip_bad_files, self.progress = skip_bad_files, progress
        self.classes = self.folder.classes
        self.devices = self.folder.devices
        self.sets: dict[str, WaveSet] = {}
        self.clips: dict[str, list[Clip]] = {}
        self.left_out: dict[str, str] = {}

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    def cached_samples(self, clips: list[Clip], probe: int = 16) -> int:
        """Samples per cached clip: ``n_samples``, or one segment when the dataset's files are shorter
        than ``duration`` and named as segments. The segment is the longest of the first ``probe``
        readable files, so one truncated file cannot pass for the dataset's segment length."""
        lengths = []
        for clip in clips:
            if len(lengths) == probe:
                break
            try:
                info = sf.info(str(self.folder.path(clip.filename)))
            except (RuntimeError, OSError):  # a bad file: validation names it later
                continue
            if recording_segment(clip) is None:
                return self.n_samples
            lengths.append(int(round(info.frames * self.sample_rate / info.samplerate)))
        segment = max(lengths, default=0)
        return segment if 0 < segment < self.n_samples else self.n_samples

    def _lists(self, stage: str | None) -> dict[str, tuple[Path, str | None]]:
        lists = {"train": self.folder.split_file(self.split)} if stage in (None, "fit", "validate") else {}
        return {**lists, "test": self.folder.test_file()}

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        lists = self._lists(stage)
        problems: dict[str, str] = {}  # filename -> reason, over all lists, reported together
        for name, (path, text) in lists.items():
            self.clips[name] = self.folder.read_list(path, text, mislabelled=problems)
            self.folder.check_files_exist(self.clips[name], path)
        if "train" in lists:
            warn_about_classes(lists["train"][0], self.clips["train"], lists["test"][0], self.clips["test"])
        cached = self.cached_samples(self.clips["train" if "train" in lists else "test"])
        caches = {name: load_or_build([self.folder.path(c.filename) for c in self.clips[name]], self.sample_rate,
                                      cached, self.cache_dir, self.cache_dtype, skip_bad=True,
                                      progress=self.progress) for name in lists}
        for name, cache in caches.items():
            problems.update(validate.unusable(self.folder, self.clips[name], cache))
        problems.update(validate.odd_sample_rates([c.filename for name in lists for c in self.clips[name]],
                                                  np.concatenate([caches[name].rates for name in lists])))
        n_files = len({c.filename for name in lists for c in self.clips[name]})
        validate.check(problems, n_files, self.folder.root, self.skip_bad_files,
                       validate.SKIP_HINT if "train" in lists else self._test_way_out(lists["test"][0]))
        if problems:
            warnings.warn(f"{self.folder.root}: left out {len(problems)} of {n_files} files with problems "
                          f"(first: {min(problems)}: {problems[min(problems)]})")
        self.left_out = dict(sorted(problems.items()))
        for name in lists:
            clips = self.clips[name]
            labels = np.array([self.classes.index(c.label) for c in clips], dtype=np.int64)
            devices = np.array([self.devices.index(c.device) for c in clips], dtype=np.int64)
            rows = np.flatnonzero([c.filename not in problems for c in clips])
            self.sets[name] = WaveSet(caches[name].waves, labels, devices, rows)
        if len(self.sets["test"]) == 0:
            raise TinyAscError(f"{lists['test'][0]}: no test clips left after leaving out files with problems")
        if "train" in lists:
            full = self.sets.pop("train")
            held = holdout_recordings(self.clips["train"], self.val_fraction, self.seed)[full.rows]
            waves = full.waves
            if cached < self.n_samples:  # held-out recordings are whole, so no window reaches into them
                usable = np.zeros(len(self.clips["train"]), dtype=bool)
                usable[full.rows] = True
                windows = segment_windows(self.clips["train"], usable, -(-self.n_samples // cached))
                waves = JoinedWaves(full.waves, windows, self.n_samples)
            self.sets["train"] = WaveSet(waves, full.labels, full.devices, full.rows[~held])
            self.sets["val"] = WaveSet(full.waves, full.labels, full.devices, full.rows[held])
            if len(self.sets["train"]) == 0:
                raise TinyAscError(f"{lists['train'][0]}: no training clips left after holding out validation "
                                   f"recordings and leaving out files with problems")

    def _test_way_out(self, test_path: Path) -> str:
        """Scoring has no --skip-bad-files (a score over fewer clips is another score): the test list is the lever."""
        if test_path.is_file():
            return f"remove them from the test list {test_path}"
        return f"write a test list without them as {self.folder.root / 'test.csv'} (it replaces the shipped one)"

    def sampler(self, name: str, shuffle: bool) -> EpochShuffle | RankShard:
        """This process's order of a set: shuffled by (seed, epoch) for training, in order for evaluation."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        n = len(self.sets[name])
        return EpochShuffle(n, self.seed, rank, world) if shuffle else RankShard(n, rank, world)

    def loader(self, name: str, shuffle: bool) -> DataLoader:
        dataset = self.sets[name]
        sampler = self.sampler(name, shuffle)
        return DataLoader(dataset, batch_size=self.batch_size if shuffle else self.eval_batch_size,
                          sampler=sampler, collate_fn=collate_batch, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self.loader("train", shuffle=True)

    def val_dataloader(self):
        return self.loader("val", shuffle=False) if len(self.sets.get("val", [])) else []

    def test_dataloader(self):
        return self.loader("test", shuffle=False)
