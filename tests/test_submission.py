"""DCASE 2024 submission files parse back with the expected columns, rows and YAML fields; the DCASE
2025 inference API routes devices to their own models with a general fallback."""
import csv
import json

import pytest
import torch
import yaml

from conftest import write_tau_folder
from tinyasc import config as cfgmod
from tinyasc.deploy import dcase2025_api as api
from tinyasc.data.build import datamodule_for
from tinyasc.evaluation.evaluate import evaluate_predictor
from tinyasc.modelfile import load_predictor
from tinyasc.deploy.submission import read_output, write_submission
from tinyasc.base.errors import TinyAscError
from tinyasc.experiment import train

LABEL = "Doe_TINY_task1_1"
CLASSES = ["airport", "bus", "park"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One model per split: split 100 and split 50 of the tiny dataset."""
    root = tmp_path_factory.mktemp("submit")
    tau = write_tau_folder(root / "tau")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYASC_CACHE", str(root / "cache"))
        for split in (100, 50):
            config = cfgmod.resolve(None, [{"data": {"dir": str(tau), "split": split, "val_fraction": 0.0},
                                            "trainer": {"epochs": 1, "batch_size": 8, "eval_batch_size": 64},
                                            "schedule": {"warmup_steps": 2}}])
            train(config, root / f"s{split}", progress=False)
    return {100: root / "s100", 50: root / "s50"}, tau


def test_submission_files_parse_back(runs, tmp_path):
    models, tau = runs
    info = write_submission([models[100], models[50]], LABEL, tmp_path / "sub", progress=False)
    test_names = [line.split("\t")[0] for line in (tau / "test.csv").read_text().splitlines()[1:]]
    for split in (50, 100):
        path = tmp_path / "sub" / f"{LABEL}.output.split_{split}.csv"
        with open(path) as f:
            header = next(csv.reader(f, delimiter="\t"))
        assert header == ["filename", "scene_label", *CLASSES]
        rows = read_output(path, CLASSES)
        assert [r["filename"] for r in rows] == test_names  # every test clip, in list order
        assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)
    meta = yaml.safe_load((tmp_path / "sub" / f"{LABEL}.meta.yaml").read_text())
    assert meta["submission"]["label"] == LABEL
    complexity = meta["system"]["complexity"]
    p100 = load_predictor(models[100])
    assert complexity == {"total_model_size": p100.complexity()["bytes"], "total_parameters": p100.complexity()["params"],
                          "macs": p100.complexity()["macs"]}
    dev = meta["results"]["development_dataset"]
    assert sorted(dev) == ["split_100", "split_50"]
    for split, model in models.items():
        res = dev[f"split_{split}"]
        assert set(res["overall"]) == {"accuracy", "logloss"}
        assert sorted(res["class_wise"]) == CLASSES and sorted(res["device_wise"]) == ["a", "b", "s4"]
        p = load_predictor(model)
        m = evaluate_predictor(p, datamodule_for(p.config, stage="test"), "test")
        assert res["overall"]["accuracy"] == pytest.approx(100 * m["macro_accuracy"], abs=0.01)
        assert res["overall"]["logloss"] == pytest.approx(m["macro_log_loss"], abs=1e-3)
        assert res["class_wise"]["bus"]["accuracy"] == pytest.approx(100 * m["per_class"]["bus"]["accuracy"], abs=0.01)


def test_evaluation_folder_and_bad_inputs(runs, tmp_path, capsys):
    from tinyasc.cli import main

    models, tau = runs
    (tau / "evaluation_setup").mkdir(exist_ok=True)
    names = ["audio/park-city2-102-0-s4.wav", "audio/airport-city0-100-1-a.wav"]
    (tau / "evaluation_setup" / "fold1_test.csv").write_text("filename\n" + "\n".join(names) + "\n")
    try:
        assert main(["submit", str(models[100]), "--label", LABEL, "--out", str(tmp_path / "e"),
                     "--eval-data", str(tau), "--author", "Jane Doe <jane@example.org>", "--no-progress",
                     "--json"]) == 0
    finally:
        (tau / "evaluation_setup" / "fold1_test.csv").unlink()
    info = json.loads(capsys.readouterr().out)
    rows = read_output(info["outputs"]["100"], CLASSES)
    assert [r["filename"] for r in rows] == names
    meta = yaml.safe_load(open(info["meta"]))
    assert meta["submission"]["authors"][0] == {"lastname": "Doe", "firstname": "Jane", "email": "jane@example.org",
                                                "corresponding": True}
    with pytest.raises(TinyAscError, match="--label"):
        write_submission([models[100]], "not a label", tmp_path / "x", progress=False)
    with pytest.raises(TinyAscError, match="second model for split 100"):
        write_submission([models[100], models[100]], LABEL, tmp_path / "x", progress=False)


def test_dcase2025_api_uses_device_models_and_falls_back(runs, tmp_path, monkeypatch):
    models, tau = runs
    (tmp_path / "models.yaml").write_text(yaml.safe_dump({"general": str(models[100]), "devices": {"a": str(models[50])}}))
    files = [str(tau / n) for n in ("audio/bus-city2-102-0-a.wav", "audio/bus-city2-102-0-s4.wav",
                                    "audio/park-city2-102-1-b.wav")]
    devices = ["a", "s4", "b"]
    logits, classes = api.predict(files, devices, str(tmp_path / "models.yaml"))
    assert classes == CLASSES and len(logits) == 3 and all(z.shape == (3,) for z in logits)
    model = api.load_model(str(tmp_path / "models.yaml"))
    inputs = api.load_inputs(files, devices, model)
    assert inputs[0].shape == (1, 1, 256, 65)
    general, device_a = load_predictor(models[100]), load_predictor(models[50])
    assert torch.allclose(logits[0], device_a.logits_from_features(inputs[0])[0], atol=1e-5)
    assert torch.allclose(logits[1], general.logits_from_features(inputs[1])[0], atol=1e-5)  # s4: no own model
    assert api.get_model_for_device(model, "s6") is model.general.network_module()
    assert not torch.allclose(logits[0], general.logits_from_features(inputs[0])[0])
    monkeypatch.delenv("TINYASC_MODEL", raising=False)
    with pytest.raises(TinyAscError, match="TINYASC_MODEL"):
        api.load_model(None)
    monkeypatch.setenv("TINYASC_MODEL", str(models[50]))
    assert api.load_model(None).general.config["data"]["split"] == 50
