"""int8 (post-training and QAT) and fp16 compression of a trained run: real int8 weights, true bytes,
GRN kept float, files without pickled code, float vs compressed evaluation on the same clips."""
import json
import pickle

import pytest
import torch

from conftest import write_tau_folder
from tinyasc import config as cfgmod
from tinyasc.modelfile import format as artifact
from tinyasc.compress.quantize import quantize_model
from tinyasc.complexity.stored import parameter_tensors, stored_sizes
from tinyasc.modelfile import load_predictor
from tinyasc.base.errors import TinyAscError
from tinyasc.models.blocks import GRN
from tinyasc.experiment import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 1-epoch baseline with a GRN after every block (report 004's variant): GRN has no int8 kernel."""
    root = tmp_path_factory.mktemp("quantize")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYASC_CACHE", str(root / "cache"))
        config = cfgmod.resolve(None, [{"data": {"dir": str(write_tau_folder(root / "tau")), "val_fraction": 0.0},
                                        "model": {"name": "dcase24_baseline", "args": {"use_grn": True}},
                                        "trainer": {"epochs": 1, "batch_size": 8, "eval_batch_size": 64},
                                        "schedule": {"warmup_steps": 2}}])
        train(config, root / "run", progress=False)
    return root / "run"


def test_ptq_holds_int8_weights_and_reports_their_true_bytes(run, tmp_path):
    info = quantize_model(run, "ptq", out=tmp_path / "ptq.pt", calib_batches=2, progress=False)
    q = load_predictor(tmp_path / "ptq.pt")
    weights = {n: t for n, t in parameter_tensors(q.network) if n.endswith(".weight")}
    convs = [n for n, m in artifact.float_network(q.record).named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert sorted(weights) == sorted(f"{n}.weight" for n in convs)  # every conv became an int8 kernel
    for t in weights.values():  # int8, one scale per output channel, symmetric (zero point 0)
        assert t.dtype == torch.qint8 and t.qscheme() == torch.per_channel_affine
        assert len(t.q_per_channel_scales()) == t.shape[0] and not t.q_per_channel_zero_points().any()
    # Bytes counted by hand: 1 per int8 weight, 4 per float32 value (biases, GRN gamma/beta).
    by_hand = sum(t.numel() * (1 if t.dtype == torch.qint8 else 4) for _, t in parameter_tensors(q.network))
    reported = info["compressed"]["complexity"]
    assert reported["bytes"] == by_hand == stored_sizes(q.network)["bytes"] == q.complexity()["bytes"]
    assert reported["bytes_by_dtype"]["int8"]["bytes"] == sum(t.numel() for t in weights.values())
    assert reported["bytes"] < info["float"]["complexity"]["bytes"] / 3
    assert reported["macs"] == info["float"]["complexity"]["macs"]
    # GRN has no int8 kernel: it stays a float module and is reported.
    grns = [n for n, m in q.network.named_modules() if isinstance(m, GRN)]
    assert len(grns) == 6 and all(f"{n} (GRN)" in info["float_in_int8"] for n in grns)
    assert info["float"]["n"] == info["compressed"]["n"] == 36
    # Same clips, close logits: the int8 model is a faithful copy of the float one.
    waves = torch.randn(4, 32000) * 0.1
    f = load_predictor(run)
    assert (f.logits(waves) - q.logits(waves)).abs().max() < 0.1 * f.logits(waves).abs().max() + 0.05


def test_qat_finetunes_with_the_report_schedule(run, tmp_path):
    from tinyasc.training.optim import linear_decay

    info = quantize_model(run, "qat", out=tmp_path / "qat.pt", epochs=1, progress=False)
    assert info["recipe"]["lr"] == 5e-5 and info["recipe"]["schedule"]["decay_epochs"] == pytest.approx(16 / 24)
    factor = linear_decay(total_steps=240, steps_per_epoch=10, final_ratio=0.1, decay_epochs=16)
    assert [factor(0), factor(80), factor(160), factor(239)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    q = load_predictor(tmp_path / "qat.pt")
    assert q.precision == "int8" and q.record["mode"] == "qat"
    assert any(t.dtype == torch.qint8 for _, t in parameter_tensors(q.network))
    ptq = quantize_model(run, "ptq", out=tmp_path / "ptq.pt", calib_batches=2, progress=False)
    assert ptq["compressed"]["complexity"]["bytes"] == info["compressed"]["complexity"]["bytes"]
    assert not torch.equal(q.network.state_dict()["stem.0.0.weight"].int_repr(),  # fine-tuning moved weights
                           load_predictor(tmp_path / "ptq.pt").network.state_dict()["stem.0.0.weight"].int_repr())


def test_fp16_halves_the_bytes_and_keeps_the_outputs(run, tmp_path):
    info = quantize_model(run, "fp16", out=tmp_path / "half.pt", progress=False)
    h, f = load_predictor(tmp_path / "half.pt"), load_predictor(run)
    assert all(t.dtype == torch.float16 for _, t in parameter_tensors(h.network))
    c = info["compressed"]["complexity"]
    assert c["bytes"] == 2 * c["params"] == info["float"]["complexity"]["bytes"] // 2
    waves = torch.randn(3, 32000) * 0.1
    assert torch.allclose(h.logits(waves), f.logits(waves), atol=2e-2, rtol=1e-2)
    assert info["compressed"]["log_loss"] == pytest.approx(info["float"]["log_loss"], abs=1e-2)


def test_model_files_hold_no_code_and_bad_inputs_fail_cleanly(run, tmp_path):
    quantize_model(run, "ptq", out=tmp_path / "q.pt", calib_batches=1, progress=False)
    data = torch.load(tmp_path / "q.pt", weights_only=True)  # plain data + tensors only
    assert data["format"] == "tinyasc-model" and data["model"]["precision"] == "int8"
    with pytest.raises(TinyAscError, match="already int8"):
        quantize_model(tmp_path / "q.pt", "ptq", progress=False)
    with pytest.raises(TinyAscError, match="--mode"):
        quantize_model(run, "int4", progress=False)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "tinyasc-model", "x": pickle.loads}))
    with pytest.raises(TinyAscError, match="does not unpickle code"):
        load_predictor(evil)


def test_cli_quantize_prints_float_and_int8_side_by_side(run, tmp_path, capsys):
    from tinyasc.cli import main

    out = tmp_path / "cli.pt"
    assert main(["quantize", str(run), "--mode", "ptq", "--calib-batches", "1", "--out", str(out),
                 "--no-progress", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output"] == str(out) and out.is_file()
    assert {"macro_accuracy", "log_loss", "complexity"} <= set(info["float"]) & set(info["compressed"])
    assert main(["quantize", str(tmp_path / "missing"), "--mode", "ptq"]) == 2


def test_int8_model_and_ensemble_files_serve_as_distillation_teachers(run, tmp_path):
    """Teachers load through the one model-file loader: a compressed model or an ensemble teaches as a
    trained run does (the int8 one on the CPU, outside the student's graph)."""
    from tinyasc.compress.ensemble import build_ensemble
    from tinyasc.data.build import make_datamodule
    from tinyasc.modelfile import Ensemble, Predictor
    from tinyasc.training.module import SceneClassifier

    quantize_model(run, "ptq", out=tmp_path / "ptq.pt", calib_batches=2, progress=False)
    build_ensemble([run, tmp_path / "ptq.pt"], [0.5, 0.5], out=tmp_path / "ens.pt", progress=False)
    teacher_config = load_predictor(run).config
    for path, kind in ((tmp_path / "ptq.pt", Predictor), (tmp_path / "ens.pt", Ensemble)):
        config = cfgmod.merge(teacher_config, {"loss": {"name": "cross_entropy", "distill": {
            "weight": 0.5, "temperature": 2.0, "teachers": [str(path)]}}})
        dm = make_datamodule(config, progress=False)
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        torch.manual_seed(0)
        student = SceneClassifier(config, dm.classes, dm.devices).train()
        loss = student.training_step(batch, 0)
        loss.backward()  # the teacher's outputs are plain tensors the loss may keep
        (teacher,) = student.teachers._loaded
        assert isinstance(teacher, kind)
        expected = torch.softmax(teacher.logits(batch[0].float()) / 2.0, 1)
        wave = batch[0]
        probs = student.teachers.probs(student, batch, wave, student.frontend(wave))
        torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-4)
        assert torch.isfinite(loss) and all(p.grad is not None for p in student.model.parameters())


def test_mode_and_qat_recipe_come_from_the_runs_compress_section(run, tmp_path):
    """`tinyasc quantize RUN` without --mode takes the run's compress.mode; without one it says so."""
    from tinyasc.cli import main

    config = cfgmod.load_yaml(run / "config.yaml")
    assert config["compress"]["mode"] is None
    with pytest.raises(TinyAscError, match="names no compress.mode; give --mode"):
        quantize_model(run, out=tmp_path / "x.pt", progress=False)
    assert not (tmp_path / "x.pt").exists()
    fp16_run = tmp_path / "run"
    import shutil
    shutil.copytree(run, fp16_run)
    ckpt = fp16_run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["config"]["compress"] = {**config["compress"], "mode": "fp16"}
    torch.save(state, ckpt)
    assert main(["quantize", str(fp16_run), "--out", str(tmp_path / "half.pt"), "--no-progress", "--json"]) == 0
    assert load_predictor(tmp_path / "half.pt").precision == "fp16"


@pytest.mark.parametrize("recipe,mode", [("001_moflenet57", "qat"), ("002_mobilenetv2_ca", "ptq"),
                                         ("003_mini_segnet", "ptq"), ("004_dcase24_baseline_unisa", "fp16")])
def test_seed_recipes_name_their_reports_compression(recipe, mode):
    settings = cfgmod.compress_settings(cfgmod.resolve(recipe))
    assert settings["mode"] == mode
    if recipe.startswith("001"):  # report 001, section 6
        assert (settings["qat_epochs"], settings["qat_lr"], settings["qat_final_lr_ratio"],
                settings["qat_decay_epochs"]) == (24, 5e-5, 0.1, 16)
    if recipe == "003_mini_segnet":  # report 003: 276.49 k -> 46.232 k parameters
        assert settings["prune_target_params"] == 46_232
    with pytest.raises(TinyAscError, match="compress.mode"):
        cfgmod.resolve(recipe, [{"compress": {"mode": "int4"}}])
