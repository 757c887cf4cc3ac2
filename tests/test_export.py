"""ONNX export checked against PyTorch, the batched inference path, and long-recording timelines."""
import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import tone_clip, write_tau_folder
from tinyasc import config as cfgmod
from tinyasc.compress.quantize import quantize_model
from tinyasc.data.build import datamodule_for
from tinyasc.evaluation.evaluate import evaluate_predictor
from tinyasc.modelfile import load_predictor
from tinyasc.deploy.onnx_export import OnnxPredictor, check_onnx, export_onnx, session
from tinyasc.deploy.timeline import moving_average
from tinyasc.base.errors import TinyAscError
from tinyasc.experiment import train

onnx = pytest.importorskip("onnx", reason="the extra tinyasc[onnx] is not installed")
pytest.importorskip("onnxruntime", reason="the extra tinyasc[onnx] is not installed")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYASC_CACHE", str(root / "cache"))
        config = cfgmod.resolve(None, [{"data": {"dir": str(write_tau_folder(root / "tau")), "val_fraction": 0.0},
                                        "trainer": {"epochs": 2, "batch_size": 8, "eval_batch_size": 64},
                                        "schedule": {"warmup_steps": 2}}])
        train(config, root / "run", progress=False)
    return root / "run"


def test_float_onnx_matches_pytorch_on_the_test_set(run, tmp_path):
    p = load_predictor(run)
    path = export_onnx(p, tmp_path / "f.onnx")
    onnx.checker.check_model(onnx.load(path))
    o = OnnxPredictor(p, path)
    check = check_onnx(p, o, datamodule_for(p.config, stage="test").test_dataloader())
    assert check["ok"] and check["clips"] == 36 and check["prediction_mismatches"] == 0
    assert check["max_abs_diff"] <= 1e-4 * max(1.0, check["max_abs_diff"])
    for batch in (1, 5):  # the batch axis is dynamic
        waves = torch.randn(batch, 32000) * 0.1
        assert torch.allclose(o.logits(waves), p.logits(waves), atol=1e-4)


def test_int8_onnx_carries_the_int8_model_and_agrees(run, tmp_path):
    quantize_model(run, "ptq", out=tmp_path / "q.pt", calib_batches=2, progress=False)
    q = load_predictor(tmp_path / "q.pt")
    path = export_onnx(q, tmp_path / "q.onnx")
    graph = onnx.load(path).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    tensors = {t.name: t for t in graph.initializer}
    tensors.update({n.output[0]: n.attribute[0].t for n in graph.node if n.op_type == "Constant"})
    dequantized = [tensors[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in tensors]
    int8_weights = sum(int(np.prod(t.dims)) for t in dequantized if t.data_type == onnx.TensorProto.INT8)
    assert int8_weights == q.complexity()["bytes_by_dtype"]["int8"]["params"]  # PyTorch's int8 weights, as stored
    check = check_onnx(q, OnnxPredictor(q, path), datamodule_for(q.config, stage="test").test_dataloader())
    assert check["ok"] and check["decisive_mismatches"] == 0
    assert "+ 3 output steps of" in check["tolerance_rule"]
    # ONNX Runtime runs it as fused int8 kernels, not as float convolutions.
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    assert "QLinearConv" in {n.op_type for n in onnx.load(tmp_path / "opt.onnx").graph.node}


def test_fp16_export_refused_and_cli_export(run, tmp_path, capsys):
    from tinyasc.cli import main

    quantize_model(run, "fp16", out=tmp_path / "h.pt", progress=False)
    with pytest.raises(TinyAscError, match="fp16"):
        export_onnx(load_predictor(tmp_path / "h.pt"), tmp_path / "h.onnx")
    assert main(["export", str(run), "--out", str(tmp_path / "cli.onnx"), "--no-progress", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["check"]["ok"] and session(tmp_path / "cli.onnx") is not None


def test_batched_inference_matches_the_lightning_evaluation(run):
    p = load_predictor(run)
    metrics = evaluate_predictor(p, datamodule_for(p.config, stage="test"), "test")
    saved = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == saved["n"] and metrics["macro_accuracy"] == pytest.approx(saved["macro_accuracy"])
    assert metrics["log_loss"] == pytest.approx(saved["log_loss"], abs=1e-5)


def test_timeline_csv_png_and_smoothing(run, tmp_path, capsys):
    from tinyasc.cli import main

    rng = np.random.default_rng(1)
    wave = np.concatenate([tone_clip(k, rng, 44100, 3.0) for k in (0, 2, 1)] + [tone_clip(0, rng, 44100, 0.5)])
    sf.write(tmp_path / "long.wav", wave, 44100)
    assert main(["timeline", str(run), str(tmp_path / "long.wav"), "--smooth", "3", "--out-dir", str(tmp_path),
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    with open(info["csv"]) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 10 == info["windows"]  # 9.5 s: ten 1 s windows, the last one padded
    assert rows[-1]["start"] == "9.000" and rows[-1]["end"] == "9.500"
    assert list(rows[0])[4:] == ["airport", "bus", "park"]
    assert all(abs(sum(float(r[c]) for c in ("airport", "bus", "park")) - 1) < 1e-3 for r in rows)
    assert (tmp_path / "long.timeline.png").stat().st_size > 5000
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert np.allclose(moving_average(probs, 3), [[0.5, 0.5], [1 / 3, 2 / 3], [1 / 3, 2 / 3], [0.5, 0.5]])
    assert main(["timeline", str(run), str(tmp_path / "long.wav"), "--smooth", "2"]) == 2
