"""DCASE 2024 submission files parse back with the expected columns, rows and YAML fields, their development
results are the evaluator's, bad inputs are refused in one line; the DCASE
2025 inference API routes devices to their own models with a general fallback."""
import csv

import pytest
import torch
import yaml

from conftest import write_tau_folder
from tinyasc import config as cfgmod
from tinyasc.deploy import dcase2025_api as api
from tinyasc.data.build import datamodule_for
from tinyasc.evaluation.evaluate import evaluate_predictor
from tinyasc.modelfile import format as modelformat, load_predictor, read_model_file
from tinyasc.deploy.submission import read_output, write_submission
from tinyasc.deploy.submission_meta import development_results
from tinyasc.base.errors import TinyAscError
from tinyasc.experiment import train

LABEL = "Doe_TINY_task1_1"
CLASSES = ["airport", "bus", "park"]
AUTHOR = "Jane;Doe;jane@example.org;Example University"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One model per split: trained runs of split 100 and 50 of the tiny dataset; for splits 5, 10 and
    25, model files holding the split-50 network with their own split in the config."""
    root = tmp_path_factory.mktemp("submit")
    tau = write_tau_folder(root / "tau")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYASC_CACHE", str(root / "cache"))
        for split in (100, 50):
            config = cfgmod.resolve(None, [{"data": {"dir": str(tau), "split": split, "val_fraction": 0.0},
                                            "model": {"args": {"base_channels": 16}},  # fp32 within 128 kB
                                            "trainer": {"epochs": 1, "batch_size": 8, "eval_batch_size": 64},
                                            "schedule": {"warmup_steps": 2}}])
            train(config, root / f"s{split}", progress=False)
    models = {100: root / "s100", 50: root / "s50"}
    record, _, _ = read_model_file(models[50])
    for split in (5, 10, 25):
        hyper = record["hyper_parameters"]
        config = {**hyper["config"], "data": {**hyper["config"]["data"], "split": split}}
        models[split] = modelformat.save(root / f"s{split}.pt", {**record, "hyper_parameters": {**hyper, "config": config}})
    return models, tau


def test_submission_files_parse_back(runs, tmp_path):
    models, tau = runs
    info = write_submission(list(models.values()), LABEL, tmp_path / "sub", authors=[AUTHOR], progress=False)
    test_names = [line.split("\t")[0] for line in (tau / "test.csv").read_text().splitlines()[1:]]
    package = tmp_path / "sub" / "task1" / LABEL
    for split in (5, 10, 25, 50, 100):
        path = package / f"{LABEL}.output.split_{split}.csv"
        with open(path) as f:
            header = next(csv.reader(f, delimiter="\t"))
        assert header == ["filename", "scene_label", *CLASSES]
        rows = read_output(path, CLASSES)
        assert [r["filename"] for r in rows] == test_names  # every test clip, in list order
        assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)
    meta = yaml.safe_load((package / f"{LABEL}.meta.yaml").read_text())
    assert meta["submission"]["label"] == LABEL and info["zip"] == str(tmp_path / "sub" / "Doe_TINY_task1.zip")
    complexity = meta["system"]["complexity"]
    p100 = load_predictor(models[100])
    assert complexity == {"total_model_size": p100.complexity()["bytes"], "total_parameters": p100.complexity()["params"],
                          "macs": p100.complexity()["macs"]}
    dev = meta["results"]["development_dataset"]
    assert list(dev) == ["split_5", "split_10", "split_25", "split_50", "split_100"]
    assert sorted(dev["split_100"]["class_wise"]) == CLASSES and sorted(dev["split_100"]["device_wise"]) == ["a", "b", "s4"]
    assert dev["split_5"] == dev["split_50"]  # the same network
    assert dev["split_100"] != dev["split_50"]


def test_dev_results_are_the_evaluators(runs, tmp_path):
    """With an evaluation set the trained runs' results come from their metrics.json, a model file's
    from the evaluator: both equal what evaluate_predictor says of the same model."""
    models, tau = runs
    (tau / "evaluation_setup").mkdir(exist_ok=True)
    names = ["audio/park-city2-102-0-s4.wav", "audio/airport-city0-100-1-a.wav"]
    (tau / "evaluation_setup" / "fold1_test.csv").write_text("filename\n" + "\n".join(names) + "\n")
    try:
        info = write_submission([str(m) for m in models.values()], LABEL, tmp_path / "e", eval_dir=tau,
                                authors=[AUTHOR], progress=False)
    finally:
        (tau / "evaluation_setup" / "fold1_test.csv").unlink()
    assert info["scored_by"][100] == str(models[100] / "metrics.json") and info["scored_by"][5] == "evaluated now"
    assert [r["filename"] for r in read_output(info["outputs"][100], CLASSES)] == names
    for split in (5, 100):
        p = load_predictor(models[split])
        m = evaluate_predictor(p, datamodule_for(p.config, stage="test"), "test")
        assert info["results"][f"split_{split}"] == development_results(m)
        res = info["results"][f"split_{split}"]["overall"]
        assert res == {"accuracy": round(100 * m["macro_accuracy"], 2), "logloss": round(m["macro_log_loss"], 3)}


def test_bad_inputs_are_one_line_errors(runs, tmp_path, capsys):
    from tinyasc.cli import main

    models, tau = runs
    all_five = [str(m) for m in models.values()]
    for author, problem in (("Jane Doe <jane@example.org>", "expected 'Firstname;Lastname;email;Affiliation'"),
                            ("Jane;Doe;jane.example.org;Uni", "not an email address")):
        assert main(["submit", *all_five, "--label", LABEL, "--out", str(tmp_path / "x"), "--author", author]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and problem in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(TinyAscError, match="--label"):
        write_submission(all_five, "not a label", tmp_path / "x", authors=[AUTHOR], progress=False)
    with pytest.raises(TinyAscError, match="second model for split 100"):
        write_submission([*all_five, str(models[100])], LABEL, tmp_path / "x", authors=[AUTHOR], progress=False)
    with pytest.raises(TinyAscError, match="no model for split 5, 10"):
        write_submission([str(models[s]) for s in (25, 50, 100)], LABEL, tmp_path / "x", authors=[AUTHOR])
    with pytest.raises(TinyAscError, match="not on split 10"):
        write_submission([f"10={models[5]}"], LABEL, tmp_path / "x", authors=[AUTHOR])
    with pytest.raises(TinyAscError, match="two authors|2 authors are marked"):
        write_submission(all_five, LABEL, tmp_path / "x", authors=[AUTHOR + ";corresponding"] * 2)
    assert not (tmp_path / "x").exists()


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
    assert api.get_model_for_device(model, "s6") is api.get_model_for_device(model, "b")  # the general network
    assert not torch.allclose(logits[0], general.logits_from_features(inputs[0])[0])
    monkeypatch.delenv("TINYASC_MODEL", raising=False)
    with pytest.raises(TinyAscError, match="TINYASC_MODEL"):
        api.load_model(None)
    monkeypatch.setenv("TINYASC_MODEL", str(models[50]))
    assert api.load_model(None).general.config["data"]["split"] == 50
