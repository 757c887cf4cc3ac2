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
RESUME_CASES: list[Case] = [
    Case("resume-nothing-to-resume", lambda env: ["train", "--out", str(env.tmp), "--resume", "--no-progress"],
         words=("nothing to resume",), unchanged=()),
]
CONFIG_CASES: list[Case] = []
FILE_CASES: list[Case] = []
DATA_CASES: list[Case] = []
CASES = RESUME_CASES + CONFIG_CASES + FILE_CASES + DATA_CASES


# --- the machinery ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """One tiny dataset and one finished run, trained once for the whole module."""
    root = tmp_path_factory.mktemp("reliability")
    data = write_tau_folder(root / "tau")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYASC_CACHE", str(root / "cache"))
        config = cfgmod.resolve(None, [{"data": {"dir": str(data), "val_fraction": 0.3},
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
