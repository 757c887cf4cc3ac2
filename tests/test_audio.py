import numpy as np
import pytest
import soundfile as sf

from tinyasc.audio.io import fit_length, load_audio, read_audio
from tinyasc.base.errors import TinyAscError


def tone(rate, freq=1000.0, seconds=1.0, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_bit_depths_decode_to_the_same_signal(tmp_path, subtype):
    path = tmp_path / f"x_{subtype}.wav"
    sf.write(path, tone(32000), 32000, subtype=subtype)
    wave, rate = read_audio(path)
    assert rate == 32000 and wave.dtype == np.float32
    assert np.abs(wave - tone(32000)).max() < 1e-3


def test_flac_and_multichannel_are_downmixed(tmp_path):
    stereo = np.stack([tone(16000), np.zeros(16000)], axis=1)
    sf.write(tmp_path / "s.flac", stereo, 16000)
    wave, _ = read_audio(tmp_path / "s.flac")
    assert np.abs(wave - tone(16000) / 2).max() < 1e-3


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_frequency_and_length(tmp_path, rate):
    sf.write(tmp_path / "t.wav", tone(rate, freq=1000.0), rate, subtype="PCM_24")
    wave = load_audio(tmp_path / "t.wav", 32000, duration=1.0)
    assert wave.shape == (32000,)
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 32000 / len(wave) - 1000.0) <= 1.0
    assert abs(wave[1000:-1000].std() - 0.5 / np.sqrt(2)) < 0.01  # amplitude preserved


def test_length_rule_crops_the_start_and_pads_the_end():
    x = np.arange(10, dtype=np.float32)
    assert np.array_equal(fit_length(x, 4), x[:4])
    padded = fit_length(x, 12)
    assert np.array_equal(padded[:10], x) and np.all(padded[10:] == 0)


def test_unreadable_inputs_raise_one_line_errors(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    sf.write(tmp_path / "empty.wav", np.zeros(0), 32000)
    sf.write(tmp_path / "nan.wav", np.full(100, np.nan, dtype=np.float32), 32000, subtype="FLOAT")
    for name, problem in [("corrupt.wav", "cannot decode"), ("empty.wav", "empty"), ("nan.wav", "NaN"),
                          ("missing.wav", "does not exist")]:
        with pytest.raises(TinyAscError) as err:
            read_audio(tmp_path / name)
        assert name in str(err.value) and problem in str(err.value) and "\n" not in str(err.value)
