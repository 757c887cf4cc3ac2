"""Training clips longer than the dataset's segments join consecutive segments of one recording
(report 003's ensemble 4 trains a MobileNet on 2 s of TAU's 1 s segments)."""
from __future__ import annotations

import numpy as np
import soundfile as sf

from conftest import write_tau_folder
from tinyasc.data.datamodule import JoinedWaves, SceneDataModule

RATE = 8000  # the files' own rate: nothing is resampled, so cached samples equal the decoded file


def datamodule(root, duration: float) -> SceneDataModule:
    dm = SceneDataModule(root, split=100, sample_rate=RATE, duration=duration, val_fraction=0.0,
                         cache_dtype="float32", progress=False)
    dm.setup("fit")
    return dm


def decoded(root, filename: str) -> np.ndarray:
    return sf.read(root / filename, dtype="float32")[0]


def segment_name(filename: str, index: int) -> str:
    head, device = filename.rsplit("-", 2)[0], filename.rsplit("-", 1)[1]
    return f"{head}-{index}-{device}"


def test_a_2s_example_is_this_segment_and_the_next_of_its_recording(tmp_path):
    root = write_tau_folder(tmp_path / "tau", recordings_per_class=2, segments=3, rate=RATE)
    dm = datamodule(root, 2.0)
    train = dm.sets["train"]
    assert isinstance(train.waves, JoinedWaves)
    waves, _, _, rows = train.__getitems__(list(range(len(train))))
    assert waves.shape == (len(train), 2 * RATE) and len(train) == 3 * 3 * 2  # classes x segments x devices
    for wave, row in zip(waves.numpy(), rows.tolist()):
        name = dm.clips["train"][row].filename
        index = int(name.rsplit("-", 2)[1])
        first = index if index < 2 else 1  # the last segment (2) joins the previous one before it
        expected = np.concatenate([decoded(root, segment_name(name, first)), decoded(root, segment_name(name, first + 1))])
        assert np.array_equal(wave, expected), name
    # validation and test clips stay single 1 s segments: the input the model is scored on
    test_waves = dm.sets["test"].__getitems__([0])[0]
    assert test_waves.shape == (1, RATE)
    assert np.array_equal(test_waves[0].numpy(), decoded(root, dm.clips["test"][0].filename))


def test_a_recording_with_one_segment_is_padded_with_zeros(tmp_path):
    root = write_tau_folder(tmp_path / "tau", recordings_per_class=2, segments=1, rate=RATE)
    train = datamodule(root, 2.0).sets["train"]
    waves, _, _, rows = train.__getitems__([0, 1])
    for wave, row in zip(waves.numpy(), rows.tolist()):
        own = decoded(root, datamodule_name(root, row))
        assert np.array_equal(wave[:RATE], own) and not wave[RATE:].any()


def datamodule_name(root, row: int) -> str:
    return (root / "split100.csv").read_text().splitlines()[1 + row].split("\t")[0]


def test_a_1s_duration_reads_the_cache_as_before(tmp_path):
    root = write_tau_folder(tmp_path / "tau", recordings_per_class=2, segments=2, rate=RATE)
    dm = datamodule(root, 1.0)
    assert isinstance(dm.sets["train"].waves, np.ndarray) and dm.sets["train"].waves.shape[1] == RATE
    # a 1.5 s example: this segment and half of the next
    train = datamodule(root, 1.5).sets["train"]
    wave, _, _, row = train.__getitems__([0])
    name = datamodule_name(root, int(row))
    expected = np.concatenate([decoded(root, name), decoded(root, segment_name(name, 1))[:RATE // 2]])
    assert np.array_equal(wave[0].numpy(), expected)
