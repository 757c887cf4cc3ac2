import numpy as np
import pytest
import torch

from tinyasc.audio.features import MelFrontEnd, mel_filterbank

librosa = pytest.importorskip("librosa", reason="librosa (a test reference, in tinyasc[dev]) is not installed")


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


@pytest.mark.parametrize("settings", [{}, dict(n_fft=2048, win_length=1500, hop_length=256, n_mels=40, fmin=100.0,
                                               fmax=7000.0, mel_scale="slaney", mel_norm="slaney")])
def test_blocked_cpu_path_equals_dense_stft_and_matmul(settings):
    """The CPU path (chunks, only the bins each band group touches) gives what one torch.stft and a dense
    filterbank matmul give, also for a filterbank passed per call with empty and rescaled bands."""
    fe = MelFrontEnd(**settings)
    wave = torch.randn(7, 32000) * 0.1
    jittered = fe.mel_fb.clone()
    jittered[:20] = 0  # a whole group of bands empty, as a moved fmin can make them
    jittered[30:33] *= 1.5
    for fb in (None, jittered):
        dense = torch.matmul(fe.mel_fb if fb is None else fb, fe.power_spectrogram(wave))
        torch.testing.assert_close(fe(wave, mel_fb=fb), torch.log(dense + fe.log_offset).unsqueeze(1),
                                   rtol=1e-5, atol=5e-5)
