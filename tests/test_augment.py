import numpy as np
import pytest
import soundfile as sf
import torch

from tinyasc.audio.features import MelFrontEnd
from tinyasc.augment import build_augmentations, list_augmentations
from tinyasc.augment.device_ir import convolve, load_ir_folder, synthetic_device_irs
from tinyasc.augment.pitch import pitch_shift
from tinyasc.augment.spectrogram import warp_axis
from tinyasc.base.errors import TinyAscError

SR = 32000
SHARED_DIRS = "../shared/dirs"


def chain(domain, **entry):
    return build_augmentations([entry], domain, sample_rate=SR, n_classes=4, device_names=["a", "b", "s4"]).train()


def tone(freq, n=SR):
    return torch.sin(2 * np.pi * freq * torch.arange(n) / SR)


def peak_hz(wave):
    spectrum = np.abs(np.fft.rfft(wave.numpy() * np.hanning(len(wave))))
    return spectrum.argmax() * SR / len(wave)


WAVE_ENTRIES = [dict(name="time_roll"), dict(name="dir", p=1.0), dict(name="noise"), dict(name="pitch_shift"),
                dict(name="speed"), dict(name="random_crop", duration_s=0.5)]
SPEC_ENTRIES = [dict(name="freq_mixstyle", p=1.0), dict(name="freq_mask"), dict(name="time_mask"),
                dict(name="time_warp"), dict(name="freq_warp"), dict(name="time_crop", frames=20)]


def test_registry_lists_every_augmentation_and_checks_domains():
    assert set(list_augmentations("waveform")) >= {e["name"] for e in WAVE_ENTRIES} | {"mixup"}
    assert set(list_augmentations("spectrogram")) >= {e["name"] for e in SPEC_ENTRIES} | {"mixup"}
    assert list_augmentations("frontend") == ["mel_jitter"]
    with pytest.raises(TinyAscError, match="augment.waveform"):
        build_augmentations([{"name": "noise"}], "spectrogram")
    with pytest.raises(TinyAscError, match="unknown augmentation"):
        build_augmentations([{"name": "reverb"}], "waveform")
    with pytest.raises(TinyAscError, match="bad argument"):
        build_augmentations([{"name": "noise", "snr": 3}], "waveform")


@pytest.mark.parametrize("entry", WAVE_ENTRIES, ids=lambda e: e["name"])
def test_waveform_augmentations_change_training_batches_only_and_follow_the_seed(entry):
    x = torch.randn(4, SR) * 0.1
    aug = chain("waveform", **entry)
    torch.manual_seed(1)
    first = aug(x)
    torch.manual_seed(1)
    torch.testing.assert_close(aug(x), first)  # same seed, same batch
    assert not torch.equal(first, x[:, :first.shape[1]])
    assert torch.equal(aug.eval()(x), x)


@pytest.mark.parametrize("entry", SPEC_ENTRIES, ids=lambda e: e["name"])
def test_spectrogram_augmentations_change_training_batches_only_and_follow_the_seed(entry):
    x = torch.randn(4, 2, 64, 40)
    aug = chain("spectrogram", **entry)
    torch.manual_seed(1)
    first = aug(x)
    torch.manual_seed(1)
    torch.testing.assert_close(aug(x), first)
    assert first.shape[:3] == x.shape[:3] and not torch.equal(first, x[..., :first.shape[3]])
    assert torch.equal(aug.eval()(x), x)


def test_convolution_is_full_convolution_cropped_and_a_unit_impulse_changes_nothing():
    rng = np.random.default_rng(0)
    wave, ir = rng.standard_normal((3, 1000)), rng.standard_normal((3, 77))
    ours = convolve(torch.from_numpy(wave), torch.from_numpy(ir)).numpy()
    for row in range(3):
        np.testing.assert_allclose(ours[row], np.convolve(wave[row], ir[row])[:1000], atol=1e-9)
    delta = torch.zeros(3, 50, dtype=torch.float64)
    delta[:, 0] = 1
    torch.testing.assert_close(convolve(torch.from_numpy(wave), delta), torch.from_numpy(wave))


def test_impulse_response_folder_any_rate_is_resampled_and_normalised(tmp_path):
    for name, rate in (("mic&one.wav", 44100), ("mic two.flac", 48000), ("notes.txt", 0)):
        if rate:
            ir = np.zeros(rate // 10, dtype=np.float32)
            ir[0], ir[40] = 0.8, -0.3
            sf.write(tmp_path / name, ir, rate)
        else:
            (tmp_path / name).write_text("not audio")
    irs = load_ir_folder(tmp_path, SR, max_ir_s=0.05)
    assert irs.shape == (2, 1600)  # two audio files, cut to 50 ms at 32 kHz
    np.testing.assert_allclose((irs ** 2).sum(axis=1), 1.0, rtol=1e-4)
    with pytest.raises(TinyAscError, match="does not exist"):
        load_ir_folder(tmp_path / "missing", SR)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TinyAscError, match="no impulse-response audio"):
        load_ir_folder(empty, SR)


@pytest.mark.skipif(not __import__("os").path.isdir(SHARED_DIRS), reason="shared MicIRP folder not present")
def test_shared_micirp_folder_loads_all_66_responses():
    irs = load_ir_folder(SHARED_DIRS, SR)
    assert irs.shape[0] == 66 and irs.shape[1] <= SR // 2 and np.isfinite(irs).all()


def test_synthetic_device_responses_are_deterministic_distinct_and_minimum_phase():
    a, b = synthetic_device_irs(16, SR, seed=0), synthetic_device_irs(16, SR, seed=0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, synthetic_device_irs(16, SR, seed=1))
    energy = np.cumsum(a ** 2, axis=1)
    assert (energy[:, 256] > 0.8).all()  # a minimum-phase response has its energy up front
    spectra = 20 * np.log10(np.abs(np.fft.rfft(a, 8192, axis=1)) + 1e-9)
    assert np.min([np.abs(spectra[i] - spectra[j]).mean() for i in range(16) for j in range(i)]) > 1.0


def test_dir_only_touches_clips_of_the_listed_devices_and_loads_its_folder_lazily(tmp_path):
    aug = chain("waveform", name="dir", p=1.0, devices=["a"])
    x = torch.randn(6, SR) * 0.1
    devices = torch.tensor([0, 1, 0, 2, 1, 0])
    y = aug(x, None, devices)
    changed = (y - x).abs().amax(dim=1) > 1e-4
    assert changed.tolist() == [True, False, True, False, False, True]
    with pytest.raises(TinyAscError, match="not in the dataset's devices"):
        chain("waveform", name="dir", devices=["z"])
    missing = chain("waveform", name="dir", p=1.0, folder=str(tmp_path / "none"))  # built fine, eval fine
    assert torch.equal(missing.eval()(x), x)
    with pytest.raises(TinyAscError, match="does not exist"):
        missing.train()(x)


def test_noise_reaches_the_requested_snr():
    x = tone(440).repeat(8, 1) * 0.3
    y = chain("waveform", name="noise", min_snr_db=20.0, max_snr_db=20.0)(x)
    snr = 10 * torch.log10(x.pow(2).mean(1) / (y - x).pow(2).mean(1))
    torch.testing.assert_close(snr, torch.full((8,), 20.0), atol=0.3, rtol=0)


def test_pitch_shift_moves_a_tone_by_the_semitones_and_keeps_length_and_level():
    x = torch.stack([tone(1000), tone(1500), tone(1234)])
    y = pitch_shift(x, torch.tensor([12.0, -5.0, 1.5]))
    assert y.shape == x.shape
    for row, expected in zip(y, (2000, 1500 * 2 ** (-5 / 12), 1234 * 2 ** (1.5 / 12))):
        assert abs(peak_hz(row) - expected) < 2
        assert abs(row[4000:-4000].pow(2).mean().sqrt().item() - 0.707) < 0.03


def test_speed_change_scales_frequency_within_the_range():
    x = tone(1000).repeat(16, 1)
    y = chain("waveform", name="speed", max_change=0.2)(x)
    peaks = np.array([peak_hz(row) for row in y])
    assert (peaks >= 799).all() and (peaks <= 1201).all() and peaks.std() > 20


def test_random_crop_returns_a_contiguous_window():
    x = torch.arange(10 * SR, dtype=torch.float32).view(10, SR)
    y = chain("waveform", name="random_crop", duration_s=0.25)(x)
    assert y.shape == (10, SR // 4)
    assert (torch.diff(y, dim=1) == 1).all()


@pytest.mark.parametrize("axis,name", [(2, "freq_mask"), (3, "time_mask")])
def test_masks_respect_count_and_width_per_clip_across_channels(axis, name):
    x = torch.ones(64, 2, 80, 60)
    y = chain("spectrogram", name=name, width=7, count=2, value=0.0)(x)
    reduce = 3 if axis == 2 else 2
    masked = (y == 0).all(dim=reduce)  # [B, C, size]: the whole row/column is masked
    assert torch.equal(masked[:, 0], masked[:, 1])  # the same mask in every channel
    runs = masked[:, 0].int().diff(dim=1, prepend=torch.zeros(64, 1, dtype=torch.int32)).eq(1).sum(1)
    assert runs.max() <= 2 and masked[:, 0].sum(1).max() <= 14 and masked[:, 0].sum(1).max() > 7
    assert len({tuple(row.tolist()) for row in masked[:, 0]}) > 32  # independent per clip


def test_warps_are_monotone_keep_the_ends_and_actually_move():
    ramp = torch.arange(50, dtype=torch.float32)
    x = ramp.view(1, 1, 1, 50).expand(32, 1, 3, 50).contiguous()
    y = warp_axis(x, 3, max_shift=5)
    assert (y[..., 0] == 0).all() and (y[..., -1] == 49).all()
    assert (torch.diff(y, dim=3) >= 0).all()
    assert (y - x).abs().amax(dim=(1, 2, 3)).max() > 1
    f = warp_axis(x.transpose(2, 3).contiguous(), 2, max_shift=5)
    assert (f[:, :, 0] == 0).all() and (torch.diff(f, dim=2) >= 0).all()


def test_freq_mixstyle_leaves_identical_clips_alone_and_mixes_band_statistics():
    same = torch.randn(1, 1, 32, 20).expand(6, 1, 32, 20).contiguous()
    aug = chain("spectrogram", name="freq_mixstyle", p=1.0, alpha=0.3)
    torch.testing.assert_close(aug(same), same, atol=1e-4, rtol=1e-4)
    x = torch.randn(6, 1, 32, 20) + torch.arange(6).view(6, 1, 1, 1) * 3.0
    band_means = aug(x).mean(dim=(1, 3))
    assert (band_means.min(dim=1).values > -1.5).all() and (band_means.max(dim=1).values < 16.5).all()
    assert not torch.allclose(band_means, x.mean(dim=(1, 3)), atol=0.1)


@pytest.mark.parametrize("domain,shape", [("waveform", (8, 100)), ("spectrogram", (8, 1, 4, 5))])
def test_mixup_mixes_inputs_and_soft_targets_alike(domain, shape):
    aug = build_augmentations([{"name": "mixup", "alpha": 0.4}], domain, n_classes=8).train()
    x, labels = torch.randn(shape), torch.arange(8)
    y, targets = aug(x, labels)
    perm, lam = aug[0].last_mix
    assert (lam >= 0.5).all() and torch.allclose(targets.sum(1), torch.ones(8))
    for i in range(8):
        torch.testing.assert_close(y[i], lam[i] * x[i] + (1 - lam[i]) * x[perm[i]])
        expected = torch.zeros(8)
        expected[i] += lam[i]
        expected[perm[i]] += 1 - lam[i]
        torch.testing.assert_close(targets[i], expected)
    assert torch.equal(aug.eval()(x, labels)[1], labels)


def test_mel_jitter_draws_fmin_fmax_within_the_windows():
    fe = MelFrontEnd(sample_rate=16000, n_fft=512, win_length=512, hop_length=256, n_mels=32, fmin=100.0, fmax=7000.0)
    aug = build_augmentations([{"name": "mel_jitter", "fmin_range": 50, "fmax_range": 1000}], "frontend").train()
    fb = aug.filterbank(fe)
    assert fb.shape == fe.mel_fb.shape and not torch.allclose(fb, fe.mel_fb)
    freqs = np.linspace(0, 8000, 257)
    nonzero = freqs[(fb.numpy() > 0).any(axis=0)]
    assert 75 - 32 <= nonzero.min() <= 125 + 32 and 6500 - 32 <= nonzero.max() <= 7500
    fixed = build_augmentations([{"name": "mel_jitter", "fmin_range": 0, "fmax_range": 0}], "frontend").train()
    assert fixed.filterbank(fe) is None and aug.eval().filterbank(fe) is None
    top = MelFrontEnd(sample_rate=16000, n_fft=512, win_length=512, hop_length=256, n_mels=32)  # fmax: Nyquist
    for _ in range(5):  # the window slides below Nyquist instead of reaching past it
        highest = freqs[(aug.train().filterbank(top).numpy() > 0).any(axis=0)].max()
        assert 7000 - 32 <= highest < 8000
    with pytest.raises(TinyAscError, match="at most one"):
        build_augmentations([{"name": "mel_jitter"}] * 2, "frontend")
