"""The sweep of bad input and faults (docs/reliability.md): one row per case.

Each case prepares a situation in a fresh copy of a tiny dataset and of a finished run, runs one
``tinyasc`` command in-process, and checks the promise: the exit status, words the one-line message
must hold, no traceback, and that the files listed in ``unchanged`` hold exactly the bytes they held
before. A new kind of bad input is one more row.

A row: ``Case(id, prepare, status, words, unchanged)``
- ``prepare(env) -> list[str]``: sets the situation up (``env.data``, ``env.run``, ``env.tmp`` are
  fresh copies for the case) and returns the command line (without the leading ``tinyasc``).
- ``status``: the expected exit status; ``words``: strings the error line (or, for status 0, the
  output) must contain; ``unchanged``: paths relative to ``env.run`` (or absolute) whose bytes must
  not change (``"*"`` means every file of the run folder).
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from conftest import write_tau_folder
from tinyasc import config as cfgmod
from tinyasc.cli import main
from tinyasc.experiment import train


@dataclass
class Env:
    data: Path  # a fresh copy of the tiny TAU-layout dataset
    run: Path  # a fresh copy of a finished 2-epoch run on it (with a validation set)
    tmp: Path  # an empty folder of the case's own


@dataclass
class Case:
    id: str
    prepare: Callable[[Env], list[str]]
    status: int = 2
    words: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ("*",)
    extra: Callable[[Env], None] | None = field(default=None)  # further checks after the command


def train_args(env: Env, *extra: str) -> list[str]:
    return ["train", "--data", str(env.data), "--epochs", "1", "--batch-size", "16", "--out", str(env.tmp / "new"),
            "--set", "schedule.warmup_steps=2", "--no-progress", *extra]


def resume_args(env: Env, *extra: str) -> list[str]:
    return ["train", "--out", str(env.run), "--resume", "--no-progress", *extra]


# --- cases: each group of the issue adds its rows to its own list ------------------------------------
def other_classes(env: Env) -> Path:
    """A copy of the dataset whose 'park' clips are labelled 'metro': other classes."""
    other = env.tmp / "other"
    shutil.copytree(env.data, other)
    for name in ("meta.csv", "split100.csv", "split50.csv", "test.csv"):
        path = other / name
        path.write_text(path.read_text().replace("\tpark", "\tmetro"))
    return other


RESUME_CASES: list[Case] = [
    Case("resume-nothing-to-resume", lambda env: ["train", "--out", str(env.tmp), "--resume", "--no-progress"],
         words=("nothing to resume",), unchanged=()),
    Case("resume-other-model", lambda env: resume_args(env, "--model", "cp_mobile"),
         words=("--resume cannot change the model", "dcase24_baseline", "cp_mobile")),
    Case("resume-other-front-end", lambda env: resume_args(env, "--set", "frontend.hop_length=250"),
         words=("--resume cannot change the front end",)),
    Case("resume-data-with-other-classes", lambda env: resume_args(env, "--data", str(other_classes(env))),
         words=("--resume cannot change the classes", "metro")),
    Case("train-out-is-a-file",
         lambda env: ((env.tmp / "new").write_text("keep me"), train_args(env))[1],
         words=("new", "is a file, not a folder"), unchanged=(),
         extra=lambda env: (env.tmp / "new").read_text() == "keep me" or pytest.fail("--out file changed")),
    Case("train-out-under-a-file",
         lambda env: ((env.tmp / "f").write_text("keep me"), train_args(env, "--out", str(env.tmp / "f" / "run")))[1],
         words=("cannot create this folder", "is a file"), unchanged=()),
    Case("resume-damaged-last-checkpoint",
         lambda env: ((env.run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 half"), resume_args(env))[1],
         words=("last.ckpt", "not a loadable tinyasc checkpoint")),
]
CONFIG_CASES: list[Case] = [
    # A bad config value is refused in one line naming its key (and the file it came from), before
    # anything is written: the --out folder of a refused train must not exist afterwards.
    Case("config-set-epochs-not-a-number", lambda env: train_args(env, "--set", "trainer.epochs=abc"),
         words=("trainer.epochs: expected an integer >= 1, got 'abc'",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-set-epochs-zero", lambda env: train_args(env, "--set", "trainer.epochs=0"),
         words=("trainer.epochs: expected an integer >= 1, got 0",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-epochs-flag-zero", lambda env: train_args(env, "--epochs", "0"),
         words=("trainer.epochs: expected an integer >= 1, got 0",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-batch-size-flag-negative", lambda env: train_args(env, "--batch-size", "-8"),
         words=("trainer.batch_size: expected an integer >= 1, got -8",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-devices-flag-zero", lambda env: train_args(env, "--devices", "0"),
         words=("trainer.devices: expected an integer >= 1 or 'auto', got 0",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-set-lr-negative", lambda env: train_args(env, "--set", "optim.lr=-1"),
         words=("optim.lr: expected a number > 0, got -1",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-set-split-unknown", lambda env: train_args(env, "--set", "data.split=7"),
         words=("data.split: expected one of 5, 10, 25, 50, 100 or the NAME of a split file", "got 7"),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-split-flag-no-such-file", lambda env: train_args(env, "--split", "custom"),
         words=("data.split:", "got 'custom'"),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-set-val-fraction-one", lambda env: train_args(env, "--set", "data.val_fraction=1"),
         words=("data.val_fraction: expected a number in [0, 1), got 1",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-set-boolean-expected", lambda env: train_args(env, "--set", "data.skip_bad_files=sometimes"),
         words=("data.skip_bad_files: expected true or false, got 'sometimes'",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-set-frontend-not-positive", lambda env: train_args(env, "--set", "frontend.n_mels=0"),
         words=("frontend.n_mels: expected an integer >= 1, got 0",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-set-unknown-key", lambda env: train_args(env, "--set", "trainer.bogus=1"),
         words=("trainer.bogus: unknown key; known: epochs, batch_size, eval_batch_size, devices",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-file-unknown-key",
         lambda env: ((env.tmp / "bad.yaml").write_text("trainer: {epochs: 1, batchsize: 16}\n"),
                      train_args(env, "--config", str(env.tmp / "bad.yaml")))[-1],
         words=("bad.yaml: trainer.batchsize: unknown key; known: epochs, batch_size",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    Case("config-file-bad-value",
         lambda env: ((env.tmp / "bad.yaml").write_text("data: {duration: -1}\n"),
                      train_args(env, "--config", str(env.tmp / "bad.yaml")))[-1],
         words=("bad.yaml: data.duration: expected a number > 0, got -1",),
         extra=lambda env: not (env.tmp / "new").exists() or pytest.fail("a refused train wrote its --out folder")),
    # Resuming: a bad override, or a hand-edited config.yaml, is refused and the run folder kept as it was.
    Case("config-resume-set-epochs-zero", lambda env: resume_args(env, "--set", "trainer.epochs=0"),
         words=("trainer.epochs: expected an integer >= 1, got 0",)),
    Case("config-resume-saved-config-bad",
         lambda env: ((c := env.run / "config.yaml").write_text(c.read_text().replace("epochs: 2", "epochs: two")),
                      resume_args(env))[-1],
         words=("trainer.epochs: expected an integer >= 1, got 'two'",)),
    # evaluate on a crafted checkpoint (the run's last.ckpt with its hyper_parameters changed): refused in
    # one line naming the file, and nothing written beside it.
    Case("config-evaluate-checkpoint-config-not-a-mapping",
         lambda env: ((torch := __import__("torch")).save(
             {**(ck := torch.load(env.run / "checkpoints" / "last.ckpt", weights_only=True)),
              "hyper_parameters": {**ck["hyper_parameters"], "config": ["data", "model"]}}, env.tmp / "crafted.ckpt"),
             ["evaluate", str(env.tmp / "crafted.ckpt"), "--no-progress"])[-1],
         words=("crafted.ckpt: a config must be a mapping of sections, got list",),
         extra=lambda env: [p.name for p in env.tmp.iterdir()] == ["crafted.ckpt"]
         or pytest.fail("evaluate wrote beside a refused checkpoint")),
    Case("config-evaluate-checkpoint-config-missing-section",
         lambda env: ((torch := __import__("torch")).save(
             {**(ck := torch.load(env.run / "checkpoints" / "last.ckpt", weights_only=True)),
              "hyper_parameters": {**ck["hyper_parameters"], "config": {
                  k: v for k, v in ck["hyper_parameters"]["config"].items() if k != "frontend"}}},
             env.tmp / "crafted.ckpt"), ["evaluate", str(env.tmp / "crafted.ckpt"), "--no-progress"])[-1],
         words=("crafted.ckpt: frontend: missing section",),
         extra=lambda env: [p.name for p in env.tmp.iterdir()] == ["crafted.ckpt"]
         or pytest.fail("evaluate wrote beside a refused checkpoint")),
    Case("config-evaluate-checkpoint-config-wrong-type",
         lambda env: ((torch := __import__("torch")).save(
             {**(ck := torch.load(env.run / "checkpoints" / "last.ckpt", weights_only=True)),
              "hyper_parameters": {**ck["hyper_parameters"], "config": {
                  **ck["hyper_parameters"]["config"], "data": {**ck["hyper_parameters"]["config"]["data"],
                                                              "duration": "1 s"}}}},
             env.tmp / "crafted.ckpt"), ["evaluate", str(env.tmp / "crafted.ckpt"), "--no-progress"])[-1],
         words=("crafted.ckpt: data.duration: expected a number > 0, got '1 s'",),
         extra=lambda env: [p.name for p in env.tmp.iterdir()] == ["crafted.ckpt"]
         or pytest.fail("evaluate wrote beside a refused checkpoint")),
    Case("config-evaluate-checkpoint-without-classes",
         lambda env: ((torch := __import__("torch")).save(
             {**(ck := torch.load(env.run / "checkpoints" / "last.ckpt", weights_only=True)),
              "hyper_parameters": {k: v for k, v in ck["hyper_parameters"].items() if k != "classes"}},
             env.tmp / "crafted.ckpt"), ["evaluate", str(env.tmp / "crafted.ckpt"), "--no-progress"])[-1],
         words=("crafted.ckpt: hyper_parameters has no classes",),
         extra=lambda env: [p.name for p in env.tmp.iterdir()] == ["crafted.ckpt"]
         or pytest.fail("evaluate wrote beside a refused checkpoint")),
    Case("config-evaluate-checkpoint-devices-not-names",
         lambda env: ((torch := __import__("torch")).save(
             {**(ck := torch.load(env.run / "checkpoints" / "last.ckpt", weights_only=True)),
              "hyper_parameters": {**ck["hyper_parameters"], "devices": [1, 2]}},
             env.tmp / "crafted.ckpt"), ["evaluate", str(env.tmp / "crafted.ckpt"), "--no-progress"])[-1],
         words=("crafted.ckpt: hyper_parameters.devices must be a list of names (strings), got [1, 2]",),
         extra=lambda env: [p.name for p in env.tmp.iterdir()] == ["crafted.ckpt"]
         or pytest.fail("evaluate wrote beside a refused checkpoint")),
]
FILE_CASES: list[Case] = [
    # Bad output paths fail before any work; faults are simulated as told in tests/test_file_faults.py,
    # whose helpers these rows call (imported by name: the tests folder is on sys.path, as for conftest).
    Case("timeline-out-dir-is-a-file",
         lambda env: ["timeline", str(env.run), str(__import__("test_file_faults").audio_file(env)),
                      "--out-dir", str(__import__("test_file_faults").blocker(env))],
         words=("blocker", "is a file, not a folder"),
         extra=lambda env: __import__("test_file_faults").blocker_kept_and_no_partial_files(env)),
    Case("timeline-out-dir-under-a-file",
         lambda env: ["timeline", str(env.run), str(__import__("test_file_faults").audio_file(env)),
                      "--out-dir", str(__import__("test_file_faults").blocker(env) / "plots")],
         words=("blocker/plots", "blocker is a file"),
         extra=lambda env: __import__("test_file_faults").blocker_kept_and_no_partial_files(env)),
    Case("quantize-out-is-a-folder",
         lambda env: ["quantize", str(env.run), "--mode", "ptq", "--out", str(env.tmp), "--no-progress"],
         words=("is a folder", "--out names the file to write")),
    Case("quantize-out-under-a-file",
         lambda env: ["quantize", str(env.run), "--mode", "ptq", "--no-progress",
                      "--out", str(__import__("test_file_faults").blocker(env) / "q.pt")],
         words=("blocker", "is a file, not a folder"),
         extra=lambda env: __import__("test_file_faults").blocker_kept_and_no_partial_files(env)),
    Case("train-cache-under-a-file",
         lambda env: train_args(env, "--set", f"data.cache_dir={__import__('test_file_faults').blocker(env)}/cache"),
         words=("blocker/cache", "cannot build the waveform cache", "TINYASC_CACHE", "data.cache_dir"),
         extra=lambda env: __import__("test_file_faults").blocker_kept_and_no_partial_files(env)),
    # The one extra tiny run: the disk fills up (simulated ENOSPC in torch.save) at the 2nd last.ckpt.
    Case("train-checkpoint-disk-full",
         lambda env: __import__("test_file_faults").checkpoint_disk_full(env, train_args(env, "--epochs", "2")),
         words=("last.ckpt", "cannot write (No space left on device)", "the previous file is kept"),
         extra=lambda env: __import__("test_file_faults").checkpoint_disk_full_after(env)),
]
DATA_CASES: list[Case] = [
    # A truncated WAV (its header declares more frames than the file holds) is a bad file like the others.
    Case("data-truncated-training-file",
         lambda env: ((p := env.data / "audio/airport-city0-100-0-a.wav").write_bytes(p.read_bytes()[:60000]),
                      train_args(env))[-1],
         words=("1 of 84 files have problems", "--skip-bad-files", "audio/airport-city0-100-0-a.wav: audio file is "
                "truncated (header says 44100 frames, file holds 19985)")),
    # evaluate has no --skip-bad-files: its message names the test list instead. (Without --data evaluate
    # scores the data folder its checkpoint names, not env.data, so the spoilt copy is passed with --data.)
    Case("data-evaluate-truncated-test-file",
         lambda env: ((p := env.data / "audio/bus-city2-102-0-s4.wav").write_bytes(p.read_bytes()[:60000]),
                      ["evaluate", str(env.run), "--data", str(env.data), "--no-progress"])[-1],
         words=("audio file is truncated", "fix them, or remove them from the test list", "test.csv")),
    # Another dataset's results go beside the run's own; a class without test clips is null (strict JSON:
    # parse_constant=int raises on NaN and Infinity).
    Case("data-evaluate-other-data-writes-beside",
         lambda env: (shutil.copytree(env.data, env.tmp / "tau-other"),
                      (t := env.tmp / "tau-other" / "test.csv").write_text(
                          "".join(line for line in t.read_text().splitlines(True) if "\tpark" not in line)),
                      ["evaluate", str(env.run), "--data", str(env.tmp / "tau-other"), "--no-progress"])[-1],
         status=0, words=("metrics-tau-other.json", "confusion_matrix-tau-other.png", "checkpoints/best.ckpt"),
         unchanged=("metrics.json", "confusion_matrix.png"),
         extra=lambda env: (__import__("json").loads((env.run / "metrics-tau-other.json").read_text(),
                                                     parse_constant=int)["per_class"]["park"]["accuracy"] is None
                            and (env.run / "confusion_matrix-tau-other.png").is_file())
         or pytest.fail("metrics-tau-other.json lacks null for the class without test clips, or no figure")),
    Case("data-evaluate-own-data-rewrites-metrics", lambda env: ["evaluate", str(env.run), "--no-progress"],
         status=0, words=("metrics.json and", "confusion_matrix.png", "checkpoints/best.ckpt"),
         unchanged=("checkpoints/best.ckpt",),
         extra=lambda env: not list(env.run.glob("*-*.json")) or pytest.fail("evaluate wrote a metrics-<name>.json")),
    Case("data-synth-zero-clips", lambda env: ["synth", str(env.tmp / "synth"), "--clips", "0"],
         words=("--clips 0", "at least 20"), unchanged=(),
         extra=lambda env: not (env.tmp / "synth").exists() or pytest.fail("synth wrote a folder")),
    Case("data-synth-negative-clips", lambda env: ["synth", str(env.tmp / "synth"), "--clips", "-5"],
         words=("--clips -5", "at least 20"), unchanged=(),
         extra=lambda env: not (env.tmp / "synth").exists() or pytest.fail("synth wrote a folder")),
    Case("data-ensemble-nan-weight",
         lambda env: ["ensemble", str(env.run), str(env.run), "--weights", "nan", "1", "--out", str(env.tmp / "e.pt"),
                      "--no-progress"],
         words=("--weights nan 1.0", "finite number"),
         extra=lambda env: not (env.tmp / "e.pt").exists() or pytest.fail("an ensemble file was written")),
    Case("data-ensemble-inf-weight",
         lambda env: ["ensemble", str(env.run), str(env.run), "--weights", "1", "inf", "--out", str(env.tmp / "e.pt"),
                      "--no-progress"],
         words=("--weights 1.0 inf", "finite number"),
         extra=lambda env: not (env.tmp / "e.pt").exists() or pytest.fail("an ensemble file was written")),
    Case("data-ensemble-zero-weights",
         lambda env: ["ensemble", str(env.run), str(env.run), "--weights", "0", "0", "--out", str(env.tmp / "e.pt"),
                      "--no-progress"],
         words=("--weights 0.0 0.0", "positive sum"),
         extra=lambda env: not (env.tmp / "e.pt").exists() or pytest.fail("an ensemble file was written")),
    # TAU22's own layout: the message names evaluation_setup/fold1_train.csv where it lies.
    Case("data-tau22-layout-missing-file",
         lambda env: ((env.data / "evaluation_setup").mkdir(),
                      (env.data / "split100.csv").rename(env.data / "evaluation_setup" / "fold1_train.csv"),
                      (env.data / "test.csv").rename(env.data / "evaluation_setup" / "fold1_evaluate.csv"),
                      (env.data / "audio/airport-city0-100-0-a.wav").unlink(), train_args(env))[-1],
         words=("evaluation_setup/fold1_train.csv: lists audio/airport-city0-100-0-a.wav but the file does "
                "not exist",)),
]
CASES = RESUME_CASES + CONFIG_CASES + FILE_CASES + DATA_CASES


# --- the machinery ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """One tiny dataset and one finished run, trained once for the whole module."""
    root = tmp_path_factory.mktemp("reliability")
    data = write_tau_folder(root / "tau")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYASC_CACHE", str(root / "cache"))
        config = cfgmod.resolve(None, [{"data": {"dir": str(data), "val_fraction": 0.7},
                                        "trainer": {"epochs": 2, "batch_size": 16},
                                        "schedule": {"warmup_steps": 2}}])
        train(config, root / "run", progress=False)
    return data, root / "run"


@pytest.fixture
def env(originals, tmp_path) -> Env:
    data, run = originals
    fresh = Env(data=tmp_path / "tau", run=tmp_path / "run", tmp=tmp_path / "case")
    shutil.copytree(data, fresh.data)
    shutil.copytree(run, fresh.run)
    fresh.tmp.mkdir()
    # The copied run names the original dataset folder: point it at the copy.
    config = cfgmod.load_yaml(fresh.run / "config.yaml")
    config["data"]["dir"] = str(fresh.data)
    cfgmod.save(config, fresh.run / "config.yaml")
    return fresh


def digests(env: Env, unchanged: tuple[str, ...]) -> dict[str, str]:
    paths: list[Path] = []
    for name in unchanged:
        if name == "*":
            paths += sorted(p for p in env.run.rglob("*") if p.is_file())
        else:
            p = Path(name) if Path(name).is_absolute() else env.run / name
            paths.append(p)
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else "absent" for p in paths}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, env: Env, capsys):
    argv = case.prepare(env)
    before = digests(env, case.unchanged)
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == case.status, f"exit status {status}, expected {case.status}\n{err[-2000:]}"
    assert "Traceback" not in err
    if case.status == 2:
        lines = [line for line in err.splitlines() if line.startswith("tinyasc: error:")]
        assert len(lines) == 1, err
        for word in case.words:
            assert word in lines[0], f"{word!r} not in: {lines[0]}"
    else:
        for word in case.words:
            assert word in out + err, f"{word!r} not in the output"
    assert digests(env, case.unchanged) == before, "files that must not change changed"
    if case.extra:
        case.extra(env)
