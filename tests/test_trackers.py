"""`tinyasc train` with the optional trackers (offline) and energy metering, and what the main job prints."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re

import pytest

from conftest import write_tau_folder
from tinyasc.base.errors import TinyAscError
from tinyasc.cli import main
from tinyasc.training.loggers import require

INSTALLED = {name: importlib.util.find_spec(module) is not None
             for name, module in (("wandb", "wandb"), ("mlflow", "mlflow"), ("energy", "codecarbon"))}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One two-epoch run through the command line with every installed tracker and the energy meter."""
    root = tmp_path_factory.mktemp("trackers")
    args = ["train", "--data", str(write_tau_folder(root / "tau")), "--out", str(root / "run"), "--epochs", "2",
            "--batch-size", "8", "--set", "data.val_fraction=0.7", "--set", "schedule.warmup_steps=2", "--no-progress"]
    args += [a for name in ("wandb", "mlflow") if INSTALLED[name] for a in ("--logger", name)]
    args += ["--energy"] if INSTALLED["energy"] else []
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("TINYASC_CACHE", str(root / "cache"))
        for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # nothing in $HOME
            mp.setenv(var, str(root / "wandb-home"))
        mp.setenv("WANDB_MODE", "offline")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main(args) == 0
    return root / "run", out.getvalue()


def test_main_job_names_its_folder_and_ends_with_the_deployable_model(run):
    folder, printed = run
    assert printed.splitlines()[0] == f"run folder: {folder}"
    result = json.loads((folder / "metrics.json").read_text())
    d, params = result["deployable"], result["complexity"]["params"]
    assert d["fp32"]["bytes"] == 4 * params and d["fp16"]["bytes"] == 2 * params  # a real .half() copy stores 2 B
    assert d["int8"]["bytes"] < d["fp16"]["bytes"]  # int8 weights, fp32 biases of the converted network
    assert d["deploy_as"] == "fp16" and not d["fp32"]["fits"]  # the baseline: 241,624 B fp32, 120,812 B fp16
    assert re.search(rf"\nbytes as fp16 +{d['fp16']['bytes']:,}  fits\n", printed)
    assert f"to deploy: tinyasc quantize {folder} --mode fp16" in printed


@pytest.mark.skipif(not INSTALLED["wandb"], reason="wandb is not installed (pip install 'tinyasc[wandb]')")
def test_wandb_logs_offline_into_the_run_folder(run):
    folder, _ = run
    runs = list((folder / "logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


@pytest.mark.skipif(not INSTALLED["mlflow"], reason="mlflow is not installed (pip install 'tinyasc[mlflow]')")
def test_mlflow_keeps_a_file_store_in_the_run_folder(run):
    folder, _ = run
    metrics = list((folder / "logs" / "mlruns").glob("*/*/metrics/val/macro_acc"))  # experiment/run/metrics
    assert len(metrics) == 1 and len(metrics[0].read_text().splitlines()) == 2  # one value per epoch


@pytest.mark.skipif(not INSTALLED["energy"], reason="codecarbon is not installed (pip install 'tinyasc[energy]')")
def test_energy_lands_in_metrics_and_the_results_table(run):
    folder, printed = run
    energy = json.loads((folder / "metrics.json").read_text())["energy"]
    assert energy["kwh"] > 0 and energy["co2_kg"] > 0 and energy["seconds"] > 0
    assert energy["method"].startswith("CPU: ") and energy["co2_basis"] == "world-average carbon intensity"
    assert "training energy" in printed and f"energy: {energy['method']}" in printed


def test_a_missing_tracker_names_its_extra_before_anything_is_written(tau_dir, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert main(["train", "--data", str(tau_dir), "--out", str(tmp_path / "run"), "--logger", "wandb",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "tinyasc: error: wandb: the package 'wandb' is not installed; install it with " \
                  "pip install 'tinyasc[wandb]'"
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(TinyAscError, match=r"pip install 'tinyasc\[energy\]'"):
        require("energy")
