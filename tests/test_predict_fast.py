"""Prediction on many files: parallel decoding and large batches give the per-file path's logits, in order."""
import numpy as np
import pytest
import soundfile as sf
import torch

from tinyasc import config as cfgmod
from tinyasc.audio.io import load_audio, load_audio_ahead
from tinyasc.base.errors import TinyAscError
from tinyasc.deploy.predict import predict_files, predict_logits, windows
from tinyasc.modelfile import load_predictor
from tinyasc.modelfile import format as artifact
from tinyasc.modelfile.int8 import calibrate, convert, prepare
from tinyasc.models import create_model

CLASSES = ["airport", "bus", "park"]


def network_record(precision: str = "fp32") -> dict:
    torch.manual_seed(0)
    config = cfgmod.resolve(None, [])
    hyper = {"config": config, "classes": CLASSES, "devices": ["a"]}
    net = create_model(config["model"]["name"], n_classes=len(CLASSES), **config["model"]["args"]).eval()
    if precision == "fp16":
        net = net.half()
    if precision == "int8":
        feats = artifact.input_shape(config)
        prepared = prepare(net, "ptq", torch.zeros(feats))
        calibrate(prepared, [torch.randn(8, *feats[1:]) * 3 - 5])
        net = convert(prepared)
    return artifact.network_record(net, hyper, precision, "ptq" if precision == "int8" else None)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return artifact.save(tmp_path_factory.mktemp("model") / "model.pt", network_record())


def write_files(folder, specs, seed=0):
    """specs: (rate, seconds, channels, suffix); each file has its own noise, so order is visible in the logits."""
    rng, paths = np.random.default_rng(seed), []
    for i, (rate, seconds, channels, suffix) in enumerate(specs):
        path = folder / f"clip{i}{suffix}"
        sf.write(path, 0.3 * rng.standard_normal((int(rate * seconds), channels)), rate,
                 subtype="PCM_16" if suffix == ".flac" else "PCM_24")
        paths.append(path)
    return paths


def per_file(predictor, paths):
    """The reference: one file at a time, its windows through ``logits``, their mean."""
    n = int(round(predictor.duration * predictor.sample_rate))
    return np.stack([predictor.logits(torch.from_numpy(windows(load_audio(p, predictor.sample_rate), n))).mean(0)
                     .numpy() for p in paths])


MIXED = [(44100, 2.5, 2, ".wav"), (32000, 1.0, 1, ".wav"), (48000, 0.3, 1, ".wav"), (22050, 1.7, 3, ".wav"),
         (16000, 3.2, 1, ".flac"), (44100, 1.0, 1, ".wav")]


def test_many_files_give_the_per_file_logits_in_order(model_file, tmp_path):
    paths = write_files(tmp_path, MIXED)
    predictor = load_predictor(model_file)
    expected = per_file(predictor, paths)
    for batch_size, workers in ((1, 1), (4, 3), (256, 2)):  # windows of one file split over batches, or all in one
        got = predict_logits(predictor, paths, batch_size=batch_size, workers=workers, progress=False)
        assert got.shape == (len(paths), len(CLASSES)) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert len(np.unique(expected.round(4), axis=0)) == len(paths)  # distinct rows: a swap would show

    results = predict_files(predictor, [str(p) for p in paths], batch_size=4, workers=2, progress=False)
    assert [r["file"] for r in results] == [str(p) for p in paths]
    assert [r["windows"] for r in results] == [3, 1, 1, 2, 4, 1]
    for r, row in zip(results, expected):
        probs = torch.softmax(torch.from_numpy(row), 0).numpy()
        assert r["scene_label"] == CLASSES[int(probs.argmax())]
        assert list(r["probabilities"].values()) == pytest.approx(probs, abs=1e-5)


def test_order_is_kept_when_later_files_decode_first(model_file, tmp_path):
    # Long files first, short ones after: with 4 threads the short ones finish decoding before them.
    specs = [(44100, 6.0, 2, ".wav")] * 2 + [(44100, 0.5, 1, ".wav")] * 10
    paths = write_files(tmp_path, specs, seed=1)
    predictor = load_predictor(model_file)
    got = predict_logits(predictor, paths, batch_size=5, workers=4, progress=False)
    np.testing.assert_allclose(got, per_file(predictor, paths), rtol=1e-5, atol=1e-5)
    waves = list(load_audio_ahead(paths, 32000, workers=4, ahead=3))
    assert [len(w) for w in waves] == [192000] * 2 + [16000] * 10


@pytest.mark.parametrize("bad", ["missing", "corrupt"])
def test_an_unreadable_file_is_one_line_naming_it(model_file, tmp_path, bad):
    paths = write_files(tmp_path, MIXED[:3])
    broken = tmp_path / f"{bad}.wav"
    if bad == "corrupt":
        broken.write_bytes(b"RIFF\x00\x00 not audio" * 20)
    with pytest.raises(TinyAscError) as err:
        predict_logits(load_predictor(model_file), paths[:2] + [broken] + paths[2:], workers=2, progress=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(broken))
    assert ("does not exist" if bad == "missing" else "cannot decode audio") in message


def test_progress_bar_counts_clips_on_stderr_only_when_asked(model_file, tmp_path, capsys):
    paths = write_files(tmp_path, MIXED[:3])
    predictor = load_predictor(model_file)
    predict_logits(predictor, paths, batch_size=2, progress=False)
    assert capsys.readouterr().err == ""
    predict_logits(predictor, paths, batch_size=2, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "3/3" in err and "clips/s" in err
    assert predict_logits(predictor, [], progress=False).shape == (0, len(CLASSES))


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_each_precision_runs_its_fastest_correct_path(precision, tmp_path):
    record = network_record(precision)
    predictor = load_predictor(artifact.save(tmp_path / "m.pt", record))
    feats = predictor.features(torch.randn(4, 32000) * 0.3)
    nchw = artifact.build_network(record)  # as rebuilt from the file: NCHW, the stored precision
    with torch.inference_mode():
        if precision == "fp16":  # a CPU runs it in float32 from the fp16 weights; the file keeps fp16
            assert all(p.dtype == torch.float16 for p in predictor.network.parameters())
            expected = nchw.net.float()(feats)
        else:
            expected = nchw(feats)
    got = predictor.logits_from_features(feats)
    if precision == "fp32":  # a batch longer than one chunk (16 clips per thread) gives each clip's logits
        waves = torch.randn(2 + 16 * torch.get_num_threads(), 32000) * 0.3
        torch.testing.assert_close(predictor.logits(waves), torch.cat([predictor.logits(w[None]) for w in waves]),
                                   rtol=1e-5, atol=1e-5)
    if precision == "int8":
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
