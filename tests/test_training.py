"""Training runs end to end: determinism, kill-and-resume, safe checkpoints, run-folder protection."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.modelfile import load_predictor as load_module
from tinyasc.experiment import train


def small_config(data_dir, epochs=2, **extra):
    overrides = [{"data": {"dir": str(data_dir), "val_fraction": 0.0},
                  "trainer": {"epochs": epochs, "batch_size": 8, "eval_batch_size": 64},
                  "schedule": {"warmup_steps": 3}}, *extra.values()]
    return cfgmod.resolve(None, overrides)


def test_same_seed_same_metrics(tau_dir, tmp_path):
    a = train(small_config(tau_dir, epochs=1), tmp_path / "a", progress=False)
    b = train(small_config(tau_dir, epochs=1), tmp_path / "b", progress=False)
    assert a["log_loss"] == b["log_loss"] and a["per_class"] == b["per_class"]
    saved = cfgmod.load_yaml(tmp_path / "a" / "config.yaml")
    assert saved["seed"] == 0 and saved["model"]["name"] == "dcase24_baseline"
    assert (tmp_path / "a" / "confusion_matrix.png").stat().st_size > 0
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["macro_accuracy"] == a["macro_accuracy"]


def test_killed_run_resumes_to_the_same_result(tau_dir, tmp_path):
    """SIGKILL a real training process after its first checkpoint, resume, compare with an unbroken run."""
    config = small_config(tau_dir, epochs=3)
    config["trainer"]["batch_size"] = 4  # more steps per epoch: the kill lands mid-run
    cfgmod.save(config, tmp_path / "cfg.yaml")
    unbroken = train(config, tmp_path / "unbroken", progress=False)

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tinyasc.cli", "train", "--config", str(tmp_path / "cfg.yaml"),
           "--out", str(tmp_path / "killed"), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (tmp_path / "killed" / "metrics.json").exists()
    epoch_at_kill = torch.load(last, weights_only=True)["epoch"]
    assert epoch_at_kill < 2

    from tinyasc.cli import main
    assert main(["train", "--out", str(tmp_path / "killed"), "--resume", "--no-progress"]) == 0
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert resumed["per_class"] == unbroken["per_class"]
    assert resumed["log_loss"] == pytest.approx(unbroken["log_loss"], abs=1e-6)


def test_existing_run_is_never_overwritten(tau_dir, tmp_path):
    run = tmp_path / "run"
    train(small_config(tau_dir, epochs=1), run, progress=False)
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    with pytest.raises(TinyAscError, match="already holds a run"):
        train(small_config(tau_dir, epochs=1), run, progress=False)
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/tinyasc_pwned",))


def test_checkpoint_with_code_is_refused(tmp_path):
    bad = tmp_path / "evil.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": {}, "hyper_parameters": {"config": {}}, "x": Payload()}, f)
    with pytest.raises(TinyAscError, match="does not unpickle code"):
        load_module(bad)
    assert not os.path.exists("/tmp/tinyasc_pwned")
