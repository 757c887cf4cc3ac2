import librosa
import numpy as np
import pytest
import torch

from tinyasc.audio.features import MelFrontEnd, mel_filterbank


@pytest.mark.parametrize("scale,norm", [("htk", None), ("slaney", "slaney"), ("htk", "slaney"), ("slaney", None)])
@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(32000, 4096, 256, 0.0, None), (16000, 2048, 128, 50.0, 7000.0),
                                                       (44100, 1024, 40, 0.0, 22050.0)])
def test_filterbank_matches_librosa(scale, norm, sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, scale, norm)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=scale == "htk", norm=norm)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-7)


def test_default_is_the_dcase24_front_end_shape():
    assert MelFrontEnd()(torch.zeros(2, 32000)).shape == (2, 1, 256, 65)


def test_log_mel_matches_librosa_pipeline():
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(32000).astype(np.float32) * 0.1
    fe = MelFrontEnd(window="hamming", mel_scale="slaney", mel_norm="slaney")
    ours = fe(torch.from_numpy(wave))[0, 0].numpy()
    ref = librosa.feature.melspectrogram(y=wave, sr=32000, n_fft=4096, win_length=3072, hop_length=500,
                                         window="hamming", center=True, pad_mode="reflect", power=2.0,
                                         n_mels=256, htk=False, norm="slaney")
    np.testing.assert_allclose(ours, np.log(ref + 1e-5), atol=2e-3)


def test_batch_equals_per_clip_and_deltas_add_channels():
    x = torch.randn(3, 16000)
    fe = MelFrontEnd(sample_rate=16000, n_fft=1024, win_length=1024, hop_length=320, n_mels=64, deltas=2,
                     trim_frames=2)
    batch = fe(x)
    assert batch.shape == (3, 3, 64, 16000 // 320 + 1 - 4) and fe.out_channels == 3
    for i in range(3):
        torch.testing.assert_close(batch[i], fe(x[i:i + 1])[0], rtol=1e-4, atol=1e-4)
    # the delta of a feature that rises linearly in time is that slope
    ramp = torch.arange(20.0).view(1, 1, 1, 20).expand(1, 1, 2, 20)
    from tinyasc.audio.features import deltas
    assert torch.allclose(deltas(ramp, 5)[..., 3:-3], torch.ones(1, 1, 2, 14))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        MelFrontEnd(n_fft=512, win_length=1024)
    with pytest.raises(ValueError):
        MelFrontEnd(window="kaiser")
