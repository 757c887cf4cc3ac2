import os

import numpy as np
import pytest
import soundfile as sf

from tinyasc.audio.io import load_audio
from tinyasc.data import cache as cache_mod
from tinyasc.data.cache import load_or_build
from tinyasc.base.errors import TinyAscError


@pytest.fixture
def wavs(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(44100)).astype(np.float32), 44100, subtype="PCM_24")
        paths.append(p)
    return paths


def test_cache_holds_resampled_audio_and_is_reused(wavs, tmp_path):
    first = load_or_build(wavs, 32000, 32000, tmp_path / "c", progress=False)
    assert first.built and first.waves.shape == (5, 32000)
    np.testing.assert_allclose(first.waves[2], load_audio(wavs[2], 32000, 1.0), atol=1e-3)  # float16 storage
    again = load_or_build(wavs, 32000, 32000, tmp_path / "c", progress=False)
    assert not again.built and again.folder == first.folder


def test_changed_inputs_build_a_new_cache(wavs, tmp_path):
    root = tmp_path / "c"
    base = load_or_build(wavs, 32000, 32000, root, progress=False)
    assert load_or_build(wavs, 16000, 16000, root, progress=False).built  # sample rate
    assert load_or_build(wavs, 32000, 16000, root, progress=False).built  # clip length
    sf.write(wavs[0], np.zeros(22050, dtype=np.float32), 44100)  # file content (size and mtime change)
    os.utime(wavs[0], ns=(1, 1))
    changed = load_or_build(wavs, 32000, 32000, root, progress=False)
    assert changed.built and changed.folder != base.folder and np.all(changed.waves[0] == 0)


def test_interrupted_build_leaves_nothing_that_looks_complete(wavs, tmp_path, monkeypatch):
    root = tmp_path / "c"
    calls = {"n": 0}
    real = cache_mod.load_audio

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "load_audio", dying)
    with pytest.raises(KeyboardInterrupt):
        load_or_build(wavs, 32000, 32000, root, workers=1, progress=False)
    assert not any(p.name.startswith("waves-") for p in root.iterdir())
    monkeypatch.setattr(cache_mod, "load_audio", real)
    assert load_or_build(wavs, 32000, 32000, root, progress=False).built


def test_damaged_cache_is_detected_and_rebuilt(wavs, tmp_path):
    root = tmp_path / "c"
    first = load_or_build(wavs, 32000, 32000, root, progress=False)
    data = first.folder / "waves.npy"
    del first
    with open(data, "r+b") as f:
        f.truncate(1000)
    rebuilt = load_or_build(wavs, 32000, 32000, root, progress=False)
    assert rebuilt.built and rebuilt.waves.shape == (5, 32000)


def test_bad_files_summarised_then_skipped(wavs, tmp_path):
    wavs[1].write_bytes(b"not audio at all")
    sf.write(wavs[3], np.zeros(0), 44100)
    with pytest.raises(TinyAscError) as err:
        load_or_build(wavs, 32000, 32000, tmp_path / "c", progress=False)
    assert "2 of 5 audio files are unusable" in str(err.value)
    assert len(err.value.details) == 2 and "c1.wav" in err.value.details[0] and "c3.wav" in err.value.details[1]
    skipped = load_or_build(wavs, 32000, 32000, tmp_path / "c", skip_bad=True, progress=False)
    assert set(skipped.bad) == {str(wavs[1]), str(wavs[3])}
