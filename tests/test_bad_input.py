"""Bad files in a dataset: every one reported up front in one summary, or left out with --skip-bad-files."""
import json

import numpy as np
import pytest
import soundfile as sf

from conftest import tone_clip
from tinyasc.cli import main

KINDS = {  # kind -> what the summary says about the file
    "unreadable": "cannot decode audio",
    "empty": "audio file is empty",
    "nan": "audio contains NaN or infinite samples",
    "wrong_rate": "recorded at 22050 Hz, the rest of the dataset at 44100 Hz",
    "mislabelled": "is labelled 'park' but meta.csv says 'airport' (split100.csv)",
}


def rows(path):
    return [line.split("\t") for line in path.read_text().splitlines()[1:]]


def spoil(tau_dir, kind: str, index: int = 0, list_name: str = "split100.csv") -> str:
    """Damage the index-th airport clip of a list in the way ``kind`` names; return its filename."""
    listed = tau_dir / list_name
    name = [f for f, label in rows(listed) if label == "airport"][index]
    path = tau_dir / name
    rng = np.random.default_rng(1)
    if kind == "unreadable":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 8)
    elif kind == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), 44100, subtype="PCM_24")
    elif kind == "nan":
        wave = tone_clip(0, rng)
        wave[1000:1100] = np.nan
        sf.write(path, wave, 44100, subtype="FLOAT")
    elif kind == "wrong_rate":
        sf.write(path, tone_clip(0, rng, rate=22050), 22050, subtype="PCM_24")
    elif kind == "mislabelled":
        listed.write_text(listed.read_text().replace(f"{name}\tairport\n", f"{name}\tpark\n"))
    return name


def train_args(tau_dir, out, *extra):
    return ["train", "--data", str(tau_dir), "--epochs", "1", "--batch-size", "16", "--out", str(out),
            "--set", "data.val_fraction=0", "--set", "schedule.warmup_steps=2", "--no-progress", *extra]


def error_lines(err: str) -> tuple[str, list[str]]:
    lines = [line for line in err.splitlines() if line.startswith(("tinyasc: error:", "  "))]
    assert lines and lines[0].startswith("tinyasc: error:"), err
    return lines[0], [line.strip() for line in lines[1:]]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_reported_then_skipped(tau_dir, tmp_path, capsys, kind):
    name = spoil(tau_dir, kind)
    assert main(train_args(tau_dir, tmp_path / "run")) == 2
    headline, details = error_lines(capsys.readouterr().err)
    assert "1 of 84 files have problems" in headline and "--skip-bad-files" in headline
    assert len(details) == 1 and details[0].startswith(f"{name}: ") and KINDS[kind] in details[0]
    assert not (tmp_path / "run").exists()

    with pytest.warns(UserWarning, match="left out 1 of 84 files"):
        assert main(train_args(tau_dir, tmp_path / "run", "--skip-bad-files")) == 0
    assert "files left out (left_out.csv)" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["left_out_files"] == 1 and metrics["n"] == 36  # the bad file is a training file
    (left_name, reason), = rows(tmp_path / "run" / "left_out.csv")
    assert left_name == name and KINDS[kind] in reason


def test_all_problems_in_one_summary(tau_dir, tmp_path, capsys, private_cache):
    spoiled = {spoil(tau_dir, kind, index=i): reason for i, (kind, reason) in enumerate(KINDS.items())}
    test_name = spoil(tau_dir, "mislabelled", list_name="test.csv")
    spoiled[test_name] = "is labelled 'park' but meta.csv says 'airport' (test.csv)"
    assert main(train_args(tau_dir, tmp_path / "run")) == 2
    headline, details = error_lines(capsys.readouterr().err)
    assert f"{tau_dir}: 6 of 84 files have problems" in headline
    assert len(details) == 6
    for line, (name, reason) in zip(details, sorted(spoiled.items())):
        assert line.startswith(f"{name}: ") and reason in line
    caches = sorted(private_cache.glob("waves-*"))
    assert len(caches) == 2  # train and test caches are complete: a rerun decodes nothing again

    with pytest.warns(UserWarning, match="left out 6 of 84 files"):
        assert main(train_args(tau_dir, tmp_path / "run", "--skip-bad-files")) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["left_out_files"] == 6 and metrics["n"] == 35
    assert {f for f, _ in rows(tmp_path / "run" / "left_out.csv")} == set(spoiled)
    assert sorted(private_cache.glob("waves-*")) == caches


def test_bad_files_never_damage_an_existing_run(tau_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tau_dir, run)) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    spoil(tau_dir, "nan")
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 2
    assert "1 of 84 files have problems" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
