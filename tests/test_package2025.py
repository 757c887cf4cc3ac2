"""A DCASE 2025 inference package runs in the official harness the way the harness runs it.

The harness is github.com/CPJKU/dcase2025_task1_inference, read in its public forks
turquenite/dcase2025_task1_inference@da99d53 and wa976/dcase2025_task1_inference@dfdb008
(README.md, test_complexity.py, complexity.py, evaluate_submission.py and the baseline module
Schmid_CPJKU_task1/Schmid_CPJKU_task1_1.py). What it does, and so what a package must offer:

| harness file | what it does | the package must |
|---|---|---|
| test_complexity.py | ``importlib.import_module(f"{name}.{name}_{index}")`` | be package ``name`` with module ``name_index`` |
| test_complexity.py | ``pkg_resources.path(f"{name}.resources", "dummy.wav")`` | ship ``resources/dummy.wav`` |
| test_complexity.py | ``model = load_model()``; ``load_inputs([dummy] * 13, ["a", "b", "c", "s1".."s10"], model)`` | load its packaged model without a path; one tensor per file |
| test_complexity.py | ``get_torch_macs_memory(get_model_for_device(model, d), input_size=inputs[i].shape)`` per device | return an nn.Module taking that tensor |
| complexity.py | MACs: ``torchinfo.summary(copy.deepcopy(m).float(), input_size).total_mult_adds`` | run as a float32 copy; keep its weights in leaf modules' parameters |
| complexity.py | bytes: ``sum(p.numel() * size[p.dtype] for p in m.parameters())``, size float32 4, float16 / bfloat16 2, int8 / uint8 / qint8 / quint8 1, int32 4, other dtypes ValueError | hold its weights as parameters |
| complexity.py | ``MAX_MACS = 30_000_000``, ``MAX_PARAMS_MEMORY = 128_000`` | |
| evaluate_submission.py | ``pkg_resources.path(f"{name}.resources", "test.csv")``, else a download | ship ``resources/test.csv`` |
| evaluate_submission.py | ``predict(file_paths=, device_ids=, model_file_path=None, use_cuda=torch.cuda.is_available())`` -> (``[n_classes]`` tensors in file order, class order) | take ``use_cuda``; ``None``: the packaged model |
| evaluate_submission.py | ``torch.save(load_model().model.state_dict(), ...)`` | give ``load_model()`` a ``.model`` module |
| README.md | ``load_model(model_file_path: Optional[str] = None) -> torch.nn.Module`` | |
"""
import copy
import importlib
import importlib.resources

import numpy as np
import pytest
import torch
import torchinfo
import yaml

from conftest import CLASSES, write_tau_folder
from tinyasc import config as cfgmod
from tinyasc.audio.io import load_audio
from tinyasc.cli import main
from tinyasc.complexity.conventions import report_counts
from tinyasc.deploy.package2025 import write_package
from tinyasc.deploy.predict import predict_logits
from tinyasc.modelfile import Predictor, load_predictor
from tinyasc.modelfile import format as artifact
from tinyasc.modelfile.int8 import calibrate, convert, prepare
from tinyasc.models import create_model

HARNESS_DEVICES = ["a", "b", "s7"]  # the harness loops over a, b, c, s1 ... s10; three show the routing
HARNESS_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2, torch.int8: 1, torch.uint8: 1,
                 torch.int32: 4, torch.qint8: 1, torch.quint8: 1}


def harness_macs_bytes(model, input_size) -> tuple[int, int]:
    """complexity.get_torch_macs_memory (a dtype outside its table raises there: KeyError here)."""
    macs = torchinfo.summary(copy.deepcopy(model).float(), input_size=tuple(input_size), verbose=0).total_mult_adds
    return macs, sum(p.numel() * HARNESS_BYTES[p.dtype] for p in model.parameters())


def resource(name: str, file: str):
    """``importlib.resources.path(f"{name}.resources", file)``, the harness's call (deprecated in 3.11, not 3.13)."""
    return importlib.resources.as_file(importlib.resources.files(f"{name}.resources") / file)


def harness_complexity(name: str, index: int) -> tuple[dict, object]:
    """test_complexity.check_complexity: {device: (MACs, bytes)}, and the loaded model."""
    api = importlib.import_module(f"{name}.{name}_{index}")
    with resource(name, "dummy.wav") as dummy:
        model = api.load_model()
        inputs = api.load_inputs([str(dummy)] * len(HARNESS_DEVICES), HARNESS_DEVICES, model)
    return {d: harness_macs_bytes(api.get_model_for_device(model, d), x.shape)
            for x, d in zip(inputs, HARNESS_DEVICES)}, model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """fp32, fp16 and int8 files of one small baseline (int8 calibrated on the clips) and a second
    fp32 model for device a."""
    root = tmp_path_factory.mktemp("pkg")
    tau = write_tau_folder(root / "tau")
    config = cfgmod.resolve(None, [{"model": {"args": {"base_channels": 8}}, "frontend": {"n_mels": 64}}])
    hyper = {"config": config, "classes": list(CLASSES), "devices": ["a", "b"]}
    files = sorted(str(p) for p in (tau / "audio").glob("*.wav"))[::3]
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = create_model(config["model"]["name"], n_classes=len(CLASSES), **config["model"]["args"])
        with torch.no_grad():  # BN away from identity statistics, so the two models differ clearly
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_var.uniform_(0.5, 2.0)
        nets.append(net.eval())
    float_pred = Predictor(artifact.network_record(nets[0], hyper))
    waves = torch.from_numpy(np.stack([load_audio(f, float_pred.sample_rate, 1.0) for f in files]))
    prepared = prepare(nets[0], "ptq", torch.zeros(float_pred.input_shape))
    calibrate(prepared, [float_pred.features(waves)])
    records = {"fp32": artifact.network_record(nets[0], hyper),
               "fp16": artifact.network_record(copy.deepcopy(nets[0]).half(), hyper, "fp16"),
               "int8": artifact.network_record(convert(prepared), hyper, "int8", "ptq"),
               "device_a": artifact.network_record(nets[1], hyper)}
    paths = {name: artifact.save(root / f"{name}.pt", record) for name, record in records.items()}
    return paths, files


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_package_runs_in_the_harness_with_tinyascs_numbers(models, tmp_path, monkeypatch, precision):
    paths, files = models
    name = f"Doe_{precision.upper()}_task1"
    assert main(["package-2025", str(paths[precision]), "--label", f"{name}_2", "--out", str(tmp_path)]) == 0
    monkeypatch.syspath_prepend(str(tmp_path))
    reference = load_predictor(paths[precision])
    complexity = reference.complexity()

    measured, model = harness_complexity(name, 2)
    if precision == "int8":  # the network that runs: BN folded into int8 convs, whose biases torchinfo charges
        macs = report_counts(artifact.float_network(reference.record), reference.input_shape, "bn_fused")[1]
        assert macs > complexity["macs"]
    else:
        macs = complexity["macs"]
    assert complexity["bytes"] > 0 and macs > 0
    assert measured == {d: (macs, complexity["bytes"]) for d in HARNESS_DEVICES}

    api = importlib.import_module(f"{name}.{name}_2")
    logits, class_order = api.predict(file_paths=files, device_ids=["a"] * len(files), model_file_path=None,
                                      use_cuda=False)
    assert class_order == list(CLASSES) and all(z.shape == (len(CLASSES),) and z.dtype == torch.float32 for z in logits)
    expected = torch.from_numpy(predict_logits(reference, files, progress=False))
    tolerance = 1e-3 if precision == "fp16" else 1e-5  # fp16 kernels round differently batch by batch
    assert torch.allclose(torch.stack(logits), expected, atol=tolerance)
    assert len({tuple(z.tolist()) for z in logits}) > 1  # not one answer for all clips
    inputs = api.load_inputs(files, ["a"] * len(files), model)  # the measured network computes the same logits
    network = api.get_model_for_device(model, "a")
    assert torch.allclose(torch.cat([network(x) for x in inputs]), expected, atol=tolerance)
    with resource(name, "test.csv") as test_csv:
        assert test_csv.read_text().startswith("filename\tscene_label\naudio/airport-barcelona-203-6129-0-a.wav")
    state = model.model.state_dict()  # what evaluate_submission saves of load_model()
    assert state and torch.save(state, tmp_path / "model_state_dict.pt") is None


def test_unmeasurable_forms_the_package_replaces(models):
    """The harness check on tinyasc's plain networks fails as users found: fp16 crashes, int8 counts 0."""
    paths, _ = models
    fp16, int8 = load_predictor(paths["fp16"]), load_predictor(paths["int8"])
    with pytest.raises(RuntimeError, match="Failed to run torchinfo"):
        harness_macs_bytes(fp16.network_module(), fp16.input_shape)
    assert harness_macs_bytes(int8.network_module(), int8.input_shape) == (0, 0)


def test_device_models_are_packaged_and_routed(models, tmp_path, monkeypatch):
    paths, files = models
    spec = tmp_path / "models.yaml"
    spec.write_text(yaml.safe_dump({"general": str(paths["fp16"]), "devices": {"a": str(paths["device_a"])}}))
    out = tmp_path / "out"
    info = write_package(spec, "Doe_DEV_task1_1", out)
    assert sorted(p.name for p in (out / "Doe_DEV_task1" / "resources" / "Doe_DEV_task1_1").iterdir()) == \
        ["a.pt", "general.pt"]
    assert info["harness"]["a"]["bytes"] == load_predictor(paths["device_a"]).complexity()["bytes"]
    write_package(paths["fp32"], "Doe_DEV_task1_4", out)  # a second submission joins the package
    monkeypatch.syspath_prepend(str(out))
    measured, _ = harness_complexity("Doe_DEV_task1", 1)
    assert measured["a"] == (info["harness"]["a"]["macs"], info["harness"]["a"]["bytes"])
    assert measured["b"] == measured["s7"] == (info["harness"]["general"]["macs"], info["harness"]["general"]["bytes"])
    assert measured["a"] != measured["b"]

    clips = files[:6]
    devices = ["a", "s4", "a", "b", "s4", "a"]
    logits, _ = importlib.import_module("Doe_DEV_task1.Doe_DEV_task1_1").predict(clips, devices)  # use_cuda default
    own = torch.from_numpy(predict_logits(load_predictor(paths["device_a"]), clips, progress=False))
    general = torch.from_numpy(predict_logits(load_predictor(paths["fp16"]), clips, progress=False))
    for z, device, a, g in zip(logits, devices, own, general):
        assert torch.allclose(z, a, atol=1e-5) if device == "a" else torch.allclose(z, g, atol=1e-3)
    second = importlib.import_module("Doe_DEV_task1.Doe_DEV_task1_4")
    assert second.load_model().general.source.endswith("Doe_DEV_task1_4/general.pt")


def test_bad_input_exits_2_and_writes_nothing(models, tmp_path, capsys):
    paths, _ = models
    out = tmp_path / "out"
    for args, message in [([str(tmp_path / "missing"), "--label", "Doe_X_task1_1"], "no such run folder"),
                          ([str(paths["fp32"]), "--label", "Doe_X_task1_7"], "--label 'Doe_X_task1_7'"),
                          ([str(paths["fp32"]), "--label", "Doe_X_task1"], "Lastname_Institution_task1_N")]:
        assert main(["package-2025", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not out.exists()
    assert main(["package-2025", str(paths["fp32"]), "--label", "Doe_X_task1_1", "--out", str(out)]) == 0
    module = out / "Doe_X_task1" / "Doe_X_task1_1.py"
    before = module.read_text()
    capsys.readouterr()
    assert main(["package-2025", str(paths["fp16"]), "--label", "Doe_X_task1_1", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and module.read_text() == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "something_else"\n')
    assert main(["package-2025", str(paths["fp32"]), "--label", "Doe_X_task1_1", "--out", str(other)]) == 2
    assert "belongs to another project" in capsys.readouterr().err and sorted(other.iterdir()) == [other / "pyproject.toml"]
