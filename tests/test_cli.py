"""The command line end to end, and its answers to bad input: one line, exit status 2, nothing damaged."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tinyasc.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_synth_train_evaluate_predict(tmp_path, capsys):
    data, out = tmp_path / "synth", tmp_path / "run"
    assert run(capsys, "synth", str(data), "--clips", "360", "--seed", "1")[0] == 0
    code, text, _ = run(capsys, "train", "--data", str(data), "--epochs", "1", "--batch-size", "32", "--out", str(out),
                        "--no-progress", "--set", "schedule.warmup_steps=2")
    assert code == 0 and "macro class-wise accuracy" in text and "unseen devices" in text
    for name in ("config.yaml", "metrics.json", "confusion_matrix.png", "learning_curves.png", "logs/metrics.csv"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "last.ckpt").is_file()

    code, text, _ = run(capsys, "evaluate", str(out), "--json", "--no-progress")
    metrics = json.loads(text)
    assert code == 0 and set(metrics) >= {"accuracy", "macro_accuracy", "log_loss", "per_class", "per_device"}
    test_rows = (data / "test.csv").read_text().strip().splitlines()[1:]
    assert metrics["n"] == len(test_rows) and sum(m["n"] for m in metrics["per_device"].values()) == len(test_rows)
    assert {"seen", "unseen"} <= set(metrics["device_groups"])
    assert metrics["complexity"]["params"] == 61148

    clip = data / test_rows[0].split("\t")[0]
    code, text, _ = run(capsys, "predict", str(out / "checkpoints" / "last.ckpt"), str(clip), "--json")
    (pred,) = json.loads(text)
    assert code == 0 and pred["scene_label"] in metrics["classes"]
    assert abs(sum(pred["probabilities"].values()) - 1) < 1e-4


def test_complexity_json(capsys):
    code, text, _ = run(capsys, "complexity", "--model", "dcase24_baseline", "--precision", "fp16", "--json")
    c = json.loads(text)
    assert code == 0 and (c["params"], c["macs"], c["bytes"], c["fits"]) == (61148, 29419156, 122296, True)
    c = json.loads(run(capsys, "complexity", "--model", "dcase24_baseline", "--json")[1])
    assert c["bytes"] == 4 * 61148 and c["fits"] is False


def _corrupt(tau):
    victim = sorted((tau / "audio").iterdir())[0]
    victim.write_bytes(b"not a wav")
    return victim.name


@pytest.mark.parametrize("case,needle", [
    ("missing_folder", "data folder does not exist"),
    ("missing_file", "but the file does not exist"),
    ("corrupt_file", "cannot decode audio"),
    ("empty_file", "audio file is empty"),
    ("unknown_in_split", "not listed in meta.csv"),
    ("wrong_columns", "missing column(s)"),
    ("unknown_model", "unknown model 'resnet9000'"),
])
def test_bad_input_gives_one_line_and_status_2(tau_dir, tmp_path, capsys, case, needle):
    args = ["train", "--data", str(tau_dir), "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"]
    first_audio = sorted((tau_dir / "audio").iterdir())[0]
    if case == "missing_folder":
        args[2] = str(tmp_path / "nope")
    elif case == "missing_file":
        first_audio.unlink()
    elif case == "corrupt_file":
        first_audio.write_bytes(b"RIFF....WAVEfmt garbage")
    elif case == "empty_file":
        sf.write(first_audio, np.zeros(0), 44100)
    elif case == "unknown_in_split":
        with open(tau_dir / "split100.csv", "a") as f:
            f.write("audio/ghost.wav\tbus\n")
    elif case == "wrong_columns":
        (tau_dir / "meta.csv").write_text("file\tlabel\nx.wav\tbus\n")
    elif case == "unknown_model":
        args += ["--model", "resnet9000"]
    code, out, err = run(capsys, *args)
    assert code == 2
    first_line = err.splitlines()[0]
    assert first_line.startswith("tinyasc: error: ") and needle in first_line
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bad_input_leaves_an_existing_run_intact(tau_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(capsys, "train", "--data", str(tau_dir), "--epochs", "1", "--batch-size", "16", "--out", str(out),
               "--no-progress", "--set", "data.val_fraction=0")[0] == 0
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = run(capsys, "train", "--data", str(tau_dir), "--out", str(out), "--no-progress")
    assert code == 2 and "already holds a run" in err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"junk")
    code, _, err = run(capsys, "predict", str(out), str(bad))
    assert code == 2 and "bad.wav: cannot decode audio" in err
    code, _, err = run(capsys, "evaluate", str(out), "--data", str(tmp_path / "nope"))
    assert code == 2 and "data folder does not exist" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot


def test_installed_command_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tinyasc.cli", "evaluate", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such run folder" in proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "tinyasc.cli", "--help"], capture_output=True, text=True).stdout
    for command in ("train", "evaluate", "predict", "synth", "complexity", "models"):
        assert command in help_text
