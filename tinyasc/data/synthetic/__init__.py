"""tinyasc's built-in synthetic scene dataset, laid out like TAU Urban Acoustic Scenes 2022 Mobile.

``synthesize(out_dir)`` writes ``audio/<scene>-<city>-<location>-<segment>-<device>.wav`` (1 s,
mono), ``meta.csv`` and the DCASE 2024 split lists ``split5/10/25/50/100.csv`` + ``test.csv``, so
every tool that reads TAU22 reads it unchanged. As in TAU22: ten scenes; recordings of ten 1 s
segments, each recording (identifier ``<city>-<location>``) wholly in train or in test; device
``a`` dominant in train, the test set balanced over nine devices, ``s4``-``s6`` only in test; the
smaller splits nested in the larger ones, whole recordings at a time. The audio comes from
``synthetic.scenes`` (what each scene sounds like) and ``synthetic.devices`` (the recording chains).
Generation is deterministic for a seed: the same arguments give the same bytes.
"""
from __future__ import annotations

import io
import json
import math
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from tinyasc.data.synthetic.devices import TEST_ONLY_DEVICES, TRAIN_DEVICES, record
from tinyasc.data.synthetic.scenes import SCENE_LABELS, render_scene
from tinyasc.base.errors import TinyAscError

CITIES = ("barcelona", "helsinki", "lisbon", "london", "lyon", "milan", "paris", "prague", "stockholm", "vienna")
SEGMENTS = 10  # 1 s segments per recording, as TAU's 10 s recordings
TEST_FRACTION = 0.25  # of the recordings (TAU22: 17.5 %; more here so per-device scores are stable)
SPLITS = (5, 10, 25, 50, 100)
# Device shares of the training recordings, those of TAU22's fold1_train (a: 102,150 of 139,620).
TRAIN_SHARES = {"a": 0.7316, **{d: (1 - 0.7316) / 5 for d in TRAIN_DEVICES[1:]}}
TEST_DEVICES = TRAIN_DEVICES + TEST_ONLY_DEVICES
DEFAULT_CLIPS = 7000
MIN_CLIPS = 2 * SEGMENTS  # one training and one test recording
VERSION = 1  # bump when the generated audio changes: cached copies are then regenerated
_PLAN, _AUDIO = 0, 1  # random streams: the layout, and each recording's sound


@dataclass(frozen=True)
class Recording:
    index: int  # position in the plan; seeds the recording's random stream
    scene: str
    city: str
    location: int
    device: str
    segments: int
    test: bool

    @property
    def identifier(self) -> str:
        return f"{self.city}-{self.location}"

    def filenames(self) -> list[str]:
        return [f"audio/{self.scene}-{self.city}-{self.location}-{s}-{self.device}.wav"
                for s in range(self.segments)]


def plan(n_clips: int, seed: int) -> tuple[list[Recording], dict[int, list[Recording]]]:
    """The dataset's recordings (test ones first) and, per split percentage, its training recordings."""
    rng = np.random.default_rng((seed, _PLAN))
    n_rec = math.ceil(n_clips / SEGMENTS)
    n_test = min(max(round(n_rec * TEST_FRACTION), 1), n_rec - 1)
    n_classes = len(SCENE_LABELS)
    # Test: i mod 10 and i mod 9 run through all 90 scene/device pairs before repeating.
    pairs = [(SCENE_LABELS[i % n_classes], TEST_DEVICES[i % len(TEST_DEVICES)]) for i in range(n_test)]
    n_train = n_rec - n_test
    devices = [_systematic(len(range(c, n_train, n_classes)), TRAIN_SHARES, rng.random()) for c in range(n_classes)]
    pairs += [(SCENE_LABELS[j % n_classes], devices[j % n_classes][j // n_classes]) for j in range(n_train)]
    cities = rng.integers(len(CITIES), size=n_rec)
    locations = rng.permutation(n_rec)
    recordings = [Recording(i, scene, CITIES[cities[i]], int(locations[i]), device,
                            n_clips - SEGMENTS * (n_rec - 1) if i == n_rec - 1 else SEGMENTS, i < n_test)
                  for i, (scene, device) in enumerate(pairs)]
    return recordings, nested_splits(recordings[n_test:], rng)


def _systematic(count: int, shares: dict[str, float], offset: float) -> list[str]:
    """``count`` devices in proportion to ``shares``: systematic sampling, so each device gets
    its share rounded up or down, never a random run of bad luck."""
    edges = np.cumsum(list(shares.values()))
    picks = np.searchsorted(edges, (np.arange(count) + offset) / max(count, 1), side="right")
    return [list(shares)[min(p, len(shares) - 1)] for p in picks]


def nested_splits(train: list[Recording], rng) -> dict[int, list[Recording]]:
    """split5 < split10 < ... < split100, whole recordings, each scene/device stratum in proportion.

    Every recording gets a key (rank + offset) / stratum size with a random rank and one random
    offset per stratum; a split is the lowest-keyed prefix, so the splits nest by construction.
    """
    strata: dict[tuple[str, str], list[Recording]] = {}
    for rec in train:
        strata.setdefault((rec.scene, rec.device), []).append(rec)
    keyed = []
    for members in strata.values():
        offset = rng.random()
        for rank, pick in enumerate(rng.permutation(len(members))):
            keyed.append(((rank + offset) / len(members), rng.random(), members[pick]))
    ordered = [rec for _, _, rec in sorted(keyed, key=lambda k: k[:2])]
    return {p: ordered[:max(1, round(p / 100 * len(ordered)))] for p in SPLITS}


def synthesize(out_dir, n_clips: int = DEFAULT_CLIPS, seed: int = 0, sample_rate: int = 32000,
               subtype: str = "PCM_16", progress: bool = False) -> Path:
    """Write the synthetic dataset of ``n_clips`` 1 s clips (train + test) to ``out_dir``.

    The folder is built under a hidden sibling name and renamed into place at the end, so an
    interrupted run leaves no folder that looks complete. ``out_dir`` must not exist, or be empty.
    """
    out = Path(out_dir)
    _check(out, n_clips, seed, sample_rate, subtype)
    recordings, splits = plan(n_clips, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    (partial / "audio").mkdir(parents=True)
    try:
        _write_audio(partial, recordings, seed, sample_rate, subtype, progress)
        _write_lists(partial, recordings, splits)
        settings = dict(generator="tinyasc.data.synthetic", version=VERSION, n_clips=n_clips, seed=seed,
                        sample_rate=sample_rate, subtype=subtype)
        (partial / "synthetic.json").write_text(json.dumps(settings, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty, checked above
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def _check(out: Path, n_clips, seed, sample_rate, subtype) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TinyAscError(f"{out}: already exists and is not an empty folder; remove it or choose another")
    if not isinstance(n_clips, (int, np.integer)) or isinstance(n_clips, bool) or n_clips < MIN_CLIPS:
        raise TinyAscError(f"n_clips={n_clips!r}: need an integer of at least {MIN_CLIPS} "
                           f"(one training and one test recording of {SEGMENTS} clips)")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TinyAscError(f"seed={seed!r}: need a non-negative integer")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate < 16000 or sample_rate % 2:
        raise TinyAscError(f"sample_rate={sample_rate!r}: need an even integer of at least 16000 Hz")
    if not sf.check_format("WAV", subtype):
        raise TinyAscError(f"subtype={subtype!r}: not a WAV sample format soundfile can write "
                           f"(e.g. PCM_16, PCM_24, FLOAT)")


def _write_audio(folder: Path, recordings, seed, sample_rate, subtype, progress) -> None:
    bar = None
    if progress:
        bar = tqdm(total=sum(r.segments for r in recordings), unit="clip", desc="synthesizing")
    for rec in recordings:
        rng = np.random.default_rng((seed, _AUDIO, rec.index))
        n = rec.segments * sample_rate
        wave = record(rng, render_scene(rng, rec.scene, n, sample_rate), rec.device, n, sample_rate)
        for name, clip in zip(rec.filenames(), wave.reshape(rec.segments, sample_rate)):
            buffer = io.BytesIO()  # one write per file: half the time of letting libsndfile write it
            sf.write(buffer, clip, sample_rate, subtype=subtype, format="WAV")
            (folder / name).write_bytes(buffer.getvalue())
        if bar is not None:
            bar.update(rec.segments)
    if bar is not None:
        bar.close()


def _write_lists(folder: Path, recordings, splits) -> None:
    def rows(recs, with_meta):
        out = []
        for rec in recs:
            for name in rec.filenames():
                out.append(f"{name}\t{rec.scene}\t{rec.identifier}\t{rec.device}" if with_meta
                           else f"{name}\t{rec.scene}")
        return sorted(out)

    def write(name, header, lines):
        (folder / name).write_text("\n".join([header, *lines]) + "\n")

    write("meta.csv", "filename\tscene_label\tidentifier\tsource_label", rows(recordings, True))
    for percent, recs in splits.items():
        write(f"split{percent}.csv", "filename\tscene_label", rows(recs, False))
    write("test.csv", "filename\tscene_label", rows([r for r in recordings if r.test], False))
