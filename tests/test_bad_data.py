"""Bad data, unit by unit: truncated audio, lopsided splits, metrics without clips (strict JSON),
ensemble weights that are no weights, byte order marks, and messages that name the real file and
the way out the command really has. The command-line rows of the same cases are DATA_CASES in
tests/test_reliability.py."""
import json
import struct
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import tone_clip
from tinyasc import config as cfgmod
from tinyasc.audio.io import declared_wav_frames, read_audio
from tinyasc.base.errors import TinyAscError
from tinyasc.cli import main
from tinyasc.compress.ensemble import average_weights
from tinyasc.data.datamodule import SceneDataModule
from tinyasc.data.tau import TauFolder
from tinyasc.evaluation.evaluate import result_paths
from tinyasc.metrics import compute_metrics
from tinyasc.modelfile import Ensemble, Predictor, load_predictor
from tinyasc.modelfile import format as artifact
from tinyasc.models import create_model

TRAIN_FILE = "audio/airport-city0-100-0-a.wav"  # in split100.csv of conftest's tiny dataset
TEST_FILE = "audio/bus-city2-102-0-s4.wav"  # in its test.csv


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def datamodule(tau_dir, **kwargs) -> SceneDataModule:
    return SceneDataModule(tau_dir, split=100, sample_rate=16000, batch_size=8, progress=False, **kwargs)


# --- truncated audio -------------------------------------------------------------------------------
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_truncated_wav_is_refused_with_both_lengths(tmp_path, subtype):
    path = tmp_path / "clip.wav"
    sf.write(path, tone_clip(0, np.random.default_rng(0)), 44100, subtype=subtype)
    assert len(read_audio(path)[0]) == 44100 and declared_wav_frames(path) == 44100
    truncate(path)
    held = len(sf.read(path)[0])  # what libsndfile quietly decodes
    assert 0 < held < 44100
    with pytest.raises(TinyAscError, match=rf"clip.wav: audio file is truncated \(header says 44100 frames, "
                                           rf"file holds {held}\)"):
        read_audio(path)


def test_one_missing_byte_is_a_truncation(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, tone_clip(0, np.random.default_rng(0)), 44100, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(TinyAscError, match="truncated"):
        read_audio(path)


def test_complete_wavs_with_unusual_headers_still_decode(tmp_path):
    wave = tone_clip(0, np.random.default_rng(0))
    trailing = tmp_path / "trailing.wav"  # a LIST chunk after the data: the file holds more than the data
    sf.write(trailing, wave, 44100, subtype="PCM_16")
    data = trailing.read_bytes() + b"LIST" + struct.pack("<I", 5) + b"INFOx\x00"
    trailing.write_bytes(data[:4] + struct.pack("<I", len(data) - 8) + data[8:])
    streamed = tmp_path / "streamed.wav"  # a streaming writer's unknown data size
    sf.write(streamed, wave, 44100, subtype="PCM_16")
    data = bytearray(streamed.read_bytes())
    at = data.find(b"data")
    data[at + 4:at + 8] = b"\xff\xff\xff\xff"
    streamed.write_bytes(bytes(data))
    for path in (trailing, streamed):
        assert len(read_audio(path)[0]) == 44100
    assert declared_wav_frames(streamed) is None


def test_truncated_file_is_one_problem_of_the_dataset_check(tau_dir):
    truncate(tau_dir / TRAIN_FILE)
    with pytest.raises(TinyAscError) as err:
        datamodule(tau_dir).setup("fit")
    assert "1 of 84 files have problems" in str(err.value) and "--skip-bad-files" in str(err.value)
    (line,) = err.value.details
    assert line.startswith(f"{TRAIN_FILE}: audio file is truncated (header says 44100 frames, file holds ")

    dm = datamodule(tau_dir, skip_bad_files=True)
    with pytest.warns(UserWarning, match="left out 1 of 84 files"):
        dm.setup("fit")
    assert list(dm.left_out) == [TRAIN_FILE] and "truncated" in dm.left_out[TRAIN_FILE]


def test_evaluation_names_its_own_way_out(tau_dir):
    """Scoring has no --skip-bad-files: the message points at the test list instead."""
    truncate(tau_dir / TEST_FILE)
    with pytest.raises(TinyAscError) as err:
        datamodule(tau_dir).setup("test")
    message = str(err.value)
    assert f"remove them from the test list {tau_dir / 'test.csv'}" in message
    assert "--skip-bad-files" not in message and "truncated" in message


# --- lopsided training splits ------------------------------------------------------------------------
def keep_rows(path, keep) -> None:
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header, *(r for r in rows if keep(r.split("\t")[1]))]) + "\n")


def class_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "class" in str(w.message)]


def test_a_test_class_missing_from_the_training_split_is_warned(tau_dir):
    keep_rows(tau_dir / "split100.csv", lambda label: label != "park")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        datamodule(tau_dir).setup("fit")
    (line,) = class_warnings(record)
    assert line.startswith(f"{tau_dir / 'split100.csv'}: no training clips of 1 class(es)")
    assert "park" in line and str(tau_dir / "test.csv") in line and "\n" not in line


def test_a_single_class_training_split_is_warned(tau_dir):
    keep_rows(tau_dir / "split100.csv", lambda label: label == "airport")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        datamodule(tau_dir).setup("fit")
    lines = class_warnings(record)
    assert any(line.startswith(f"{tau_dir / 'split100.csv'}: the training split holds a single class (airport)")
               for line in lines)
    assert any("bus, park" in line for line in lines)  # and the test classes it lacks


def test_a_balanced_split_gets_no_class_warning(tau_dir):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        datamodule(tau_dir).setup("fit")
    assert class_warnings(record) == []


# --- metrics without clips -------------------------------------------------------------------------
def test_metrics_of_a_class_without_clips_are_null_in_strict_json():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    m = compute_metrics(probs, np.array([0, 1, 1]), np.array([0, 0, 1]), ["airport", "bus", "park"], ["a", "b", "c"])
    assert m["per_class"]["park"] == {"accuracy": None, "log_loss": None, "n": 0}
    assert "c" not in m["per_device"]
    assert m["macro_accuracy"] == pytest.approx(0.75)  # over the two classes with clips
    bus_loss = (-np.log(0.7) - np.log(0.3)) / 2
    assert m["macro_log_loss"] == pytest.approx((-np.log(0.8) + bus_loss) / 2)
    assert strict_json(json.dumps(m))["per_class"]["park"]["accuracy"] is None


# --- ensemble weights ------------------------------------------------------------------------------
def member(seed: int) -> Predictor:
    torch.manual_seed(seed)
    config = cfgmod.resolve(None, [])
    hyper = {"config": config, "classes": ["airport", "bus", "park"], "devices": ["a", "b"]}
    net = create_model(config["model"]["name"], n_classes=3, **config["model"]["args"])
    return Predictor(artifact.network_record(net.eval(), hyper), f"member {seed}")


@pytest.mark.parametrize("weights", [[float("nan"), 1.0], [float("inf"), 1.0], [1.0, float("-inf")]])
def test_weights_that_are_not_finite_are_refused(weights):
    with pytest.raises(TinyAscError, match="--weights .*finite"):
        average_weights(weights, 2)
    with pytest.raises(TinyAscError, match="ensemble's weights hold .*finite"):
        Ensemble([member(0), member(1)], weights)


def test_all_zero_weights_and_bad_bias_are_refused():
    a, b = member(0), member(1)
    with pytest.raises(TinyAscError, match="weights are all zero"):
        Ensemble([a, b], [0.0, 0.0], method="linear")
    with pytest.raises(TinyAscError, match="bias hold nan"):
        Ensemble([a, b], [0.5, 0.5], bias=[0.0, float("nan"), 0.0], method="linear")
    with pytest.raises(TinyAscError, match="2 bias values for 3 classes"):
        Ensemble([a, b], [0.5, 0.5], bias=[0.0, 0.0], method="linear")
    with pytest.raises(TinyAscError, match="weights must be a list of numbers"):
        Ensemble([a, b], "0.5 0.5")


@pytest.mark.parametrize("weights", [[float("nan"), 0.5], [float("inf"), 0.5], [0.0, 0.0], None])
def test_a_crafted_ensemble_file_with_bad_weights_is_refused(tmp_path, capsys, weights):
    good = Ensemble([member(0), member(1)], [0.5, 0.5])
    record = {**good.record, "weights": weights}
    path = artifact.save(tmp_path / "crafted.pt", record)
    with pytest.raises(TinyAscError, match=f"{path}: the ensemble's weights"):
        load_predictor(path)
    assert main(["evaluate", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("tinyasc: error:") == 1 and str(path) in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.pt"]  # nothing written beside it


# --- lists: byte order marks, the real place of TAU22's split files -------------------------------
def test_a_byte_order_mark_is_accepted(tau_dir):
    for name in ("meta.csv", "split100.csv", "test.csv"):
        path = tau_dir / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    folder = TauFolder(tau_dir)
    assert folder.classes == ["airport", "bus", "park"]
    assert len(folder.split(100)) == 48 and len(folder.test()) == 36


def tau22_layout(tau_dir):
    (tau_dir / "evaluation_setup").mkdir()
    (tau_dir / "split100.csv").rename(tau_dir / "evaluation_setup" / "fold1_train.csv")
    (tau_dir / "test.csv").rename(tau_dir / "evaluation_setup" / "fold1_evaluate.csv")
    return tau_dir / "evaluation_setup" / "fold1_train.csv"


def test_tau22_split_errors_name_the_file_where_it_lies(tau_dir):
    fold = tau22_layout(tau_dir)
    (tau_dir / TRAIN_FILE).unlink()
    with pytest.raises(TinyAscError, match=f"^{fold}: lists {TRAIN_FILE} but the file does not exist"):
        datamodule(tau_dir).setup("fit")


def test_tau22_mislabelled_rows_name_the_file_where_it_lies(tau_dir):
    fold = tau22_layout(tau_dir)
    fold.write_text(fold.read_text().replace(f"{TRAIN_FILE}\tairport", f"{TRAIN_FILE}\tpark"))
    with pytest.raises(TinyAscError) as err:
        datamodule(tau_dir).setup("fit")
    assert err.value.details == [f"{TRAIN_FILE}: is labelled 'park' but meta.csv says 'airport' "
                                 f"(evaluation_setup/fold1_train.csv)"]


def test_a_missing_split100_names_both_places(tau_dir):
    (tau_dir / "split100.csv").unlink()
    with pytest.raises(TinyAscError, match="split100.csv: split file does not exist "
                                           r"\(nor evaluation_setup/fold1_train.csv\)"):
        TauFolder(tau_dir).split(100)


# --- where evaluate writes -------------------------------------------------------------------------
def test_results_on_other_data_go_beside_the_run_own(tmp_path):
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "best.ckpt"
    assert result_paths(ckpt) == (run / "metrics.json", run / "confusion_matrix.png")
    assert result_paths(ckpt, tmp_path / "tau-other/") == (run / "metrics-tau-other.json",
                                                           run / "confusion_matrix-tau-other.png")


def test_results_of_a_compressed_model_go_beside_it_not_over_the_run_own(tmp_path):
    model = tmp_path / "run" / "compressed" / "best-ptq.pt"
    assert result_paths(model) == (model.parent / "best-ptq.metrics.json", model.parent / "best-ptq.confusion_matrix.png")
    assert result_paths(model, tmp_path / "other")[0] == model.parent / "best-ptq.metrics-other.json"
