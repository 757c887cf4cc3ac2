"""Training runs end to end: determinism, kill-and-resume, safe checkpoints, run-folder protection."""
import csv
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
from tinyasc.evaluation.plots import learning_curves
from tinyasc.experiment import train


def small_config(data_dir, epochs=2, **extra):
    overrides = [{"data": {"dir": str(data_dir), "val_fraction": 0.0},
                  "trainer": {"epochs": epochs, "batch_size": 8, "eval_batch_size": 64},
                  "schedule": {"warmup_steps": 3}}, *extra.values()]
    return cfgmod.resolve(None, overrides)


def test_same_seed_same_metrics(tau_dir, tmp_path):
    """The same seed twice, once as shipped (deterministic "warn", new tensors not NaN-filled) and once
    strict (``deterministic: true``, which NaN-fills every new tensor): equal results, so no kernel of a
    run reads memory it has not written, and dropping the fill under "warn" changes nothing."""
    a = train(small_config(tau_dir, epochs=1), tmp_path / "a", progress=False)
    assert torch.utils.deterministic.fill_uninitialized_memory is False
    strict = small_config(tau_dir, epochs=1)
    strict["trainer"]["deterministic"] = True
    b = train(strict, tmp_path / "b", progress=False)
    assert torch.utils.deterministic.fill_uninitialized_memory is True
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


KILL_AT_EPOCH_START = """
import os, signal, sys
import lightning as L
import tinyasc.experiment as experiment
from tinyasc.cli import main

class Kill(L.Callback):  # SIGKILL the moment the next epoch starts: the previous one is complete on disk
    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == int(os.environ["KILL_EPOCH"]):
            os.kill(os.getpid(), signal.SIGKILL)

make_trainer = experiment.make_trainer
def with_kill(*args, **kwargs):
    trainer = make_trainer(*args, **kwargs)
    trainer.callbacks.append(Kill())
    return trainer
experiment.make_trainer = with_kill
sys.exit(main(sys.argv[1:]))
"""


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_killed_after_an_epoch_that_did_not_improve_resumes_exactly(tau_dir, tmp_path):
    """last.ckpt is the last epoch even when best.ckpt is older; the resumed run's metrics, CSV log and
    learning curves equal an unbroken run's."""
    config = small_config(tau_dir, epochs=5)
    config["data"]["val_fraction"] = 0.7
    config["optim"]["lr"] = 0.05  # a jumpy validation metric: some epochs do not improve it
    cfgmod.save(config, tmp_path / "cfg.yaml")
    unbroken = train(config, tmp_path / "unbroken", progress=False)
    val = learning_curves(tmp_path / "unbroken" / "logs" / "metrics.csv")["val/macro_acc"]
    stale = [e for e in range(1, 4) if val[e] <= max(val[k] for k in range(e))]
    assert stale, f"every epoch improved ({val}); pick a config whose validation metric stalls"
    kill_after = stale[0]

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "KILL_EPOCH": str(kill_after + 1)}
    cmd = [sys.executable, "-c", KILL_AT_EPOCH_START, "train", "--config", str(tmp_path / "cfg.yaml"),
           "--out", str(tmp_path / "killed"), "--no-progress"]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    ckpts = tmp_path / "killed" / "checkpoints"
    last, best = (torch.load(ckpts / f"{n}.ckpt", weights_only=True) for n in ("last", "best"))
    assert last["epoch"] == kill_after and best["epoch"] < kill_after  # the stale epoch is in last.ckpt only
    assert not (tmp_path / "killed" / "metrics.json").exists()

    from tinyasc.cli import main
    assert main(["train", "--out", str(tmp_path / "killed"), "--resume", "--no-progress"]) == 0
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    unbroken = json.loads((tmp_path / "unbroken" / "metrics.json").read_text())
    for result in (resumed, unbroken):
        del result["train_seconds"], result["checkpoint"]
    assert resumed == unbroken
    assert csv_rows(tmp_path / "killed" / "logs" / "metrics.csv") == csv_rows(tmp_path / "unbroken" / "logs" / "metrics.csv")
    assert learning_curves(tmp_path / "killed" / "logs" / "metrics.csv") == learning_curves(
        tmp_path / "unbroken" / "logs" / "metrics.csv")


def test_ctrl_c_stops_cleanly_with_a_checkpoint_of_the_step_reached(tau_dir, tmp_path):
    """SIGINT (Ctrl-C) in the middle of training: one line naming the resume command, exit 130, and a
    last.ckpt of the step reached, from which the run continues."""
    config = small_config(tau_dir, epochs=1000)  # never reached: the run is interrupted after its first epoch
    config["trainer"]["batch_size"] = 4
    cfgmod.save(config, tmp_path / "cfg.yaml")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinyasc.cli", "train", "--config", str(tmp_path / "cfg.yaml"), "--out", str(run),
           "--no-progress"]
    # A terminal's Ctrl-C reaches a process whose SIGINT is not ignored; a disposition inherited from
    # whatever started pytest (a background job ignores SIGINT) must not decide this test.
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    last = run / "checkpoints" / "last.ckpt"
    try:
        deadline = time.time() + 300
        while not last.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        first = torch.load(last, weights_only=True)["global_step"]
        time.sleep(1.0)  # some steps into the next epoch
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=120)[1].decode()
    finally:  # a run that did not stop must not train on after the test
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("tinyasc:")]
    assert f"tinyasc train --out {run} --resume" in line
    stopped = torch.load(last, weights_only=True)
    assert stopped["global_step"] > first and not (run / "metrics.json").exists()
    from tinyasc.cli import main
    assert main(["train", "--out", str(run), "--resume", "--epochs", str(stopped["epoch"] + 2), "--no-progress"]) == 0
    assert (run / "metrics.json").exists()


def test_checkpoint_every_n_steps_writes_last_inside_the_epoch(tau_dir, tmp_path, monkeypatch):
    from tinyasc.training import trainer as trainer_mod
    written = []
    save = trainer_mod.AtomicCheckpointIO.save_checkpoint

    def record(self, checkpoint, path, storage_options=None):
        written.append((os.path.basename(path), checkpoint["global_step"]))
        return save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(trainer_mod.AtomicCheckpointIO, "save_checkpoint", record)
    config = small_config(tau_dir, epochs=1, every={"trainer": {"checkpoint_every_n_steps": 2, "batch_size": 4}})
    train(config, tmp_path / "run", progress=False)
    steps_per_epoch = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert steps_per_epoch == 12  # 48 clips, batch 4
    assert [s for name, s in written if name == "last.ckpt"] == [2, 4, 6, 8, 10, 12, 12]


def test_resume_refuses_another_model_and_leaves_the_run_untouched(tau_dir, tmp_path, capsys):
    from tinyasc.cli import main
    run = tmp_path / "run"
    train(small_config(tau_dir, epochs=1), run, progress=False)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--out", str(run), "--resume", "--model", "cp_mobile", "--no-progress"]) == 2
    assert "--resume cannot change the model" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume", "--set", "frontend.n_mels=128", "--no-progress"]) == 2
    assert "--resume cannot change the front end" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # ... and a plain resume still works afterwards (here: one more epoch)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0


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
