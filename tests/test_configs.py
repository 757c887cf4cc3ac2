"""Every seed-system config resolves, matches its model's front end, and trains on the tiny fixture."""
import json
import math
from pathlib import Path

import lightning as L
import pytest

from tinyasc import config as cfgmod
from tinyasc.cli import main
from tinyasc.models import get_spec, input_shape, list_models
from tinyasc.training.module import SceneClassifier
from tinyasc.data.build import make_datamodule
from tinyasc.training.trainer import quiet_lightning

CONFIG_DIR = cfgmod.RECIPES
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
SYSTEMS = {"ghost_bc_res2net", "mobileformer_kt", "moflenet57", "cp_resnet59", "bc_resnet_c80", "bc_resnet_c40",
           "mobilenetv2_ca", "mini_segnet", "fsmobilenet", "dcase24_baseline_unisa", "dcase24_baseline"}


def resolved(path: Path, *overrides: dict) -> dict:
    config = cfgmod.resolve(path, list(overrides))
    if config["model"]["name"] not in list_models():
        pytest.skip(f"{path.name}: model {config['model']['name']} is not registered yet")
    for entry in config["augment"].get("waveform") or []:  # relative IR folders resolve from the project root
        if entry["name"] == "dir" and entry.get("folder") and not Path(entry["folder"]).is_dir():
            entry["folder"] = str(CONFIG_DIR.parent / entry["folder"])
            if not Path(entry["folder"]).is_dir():
                entry["folder"] = None  # no MicIRP copy here: the synthetic responses
    return config


def test_there_is_one_config_per_seed_system():
    assert {cfgmod.load_yaml(p)["model"]["name"] for p in CONFIGS} == SYSTEMS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_describes_itself_and_uses_its_models_front_end(path):
    raw = cfgmod.load_yaml(path)
    assert len(raw.get("description", "")) > 80 and path.read_text().count("\n#") >= 2
    assert {"frontend", "model", "augment", "loss", "optim", "schedule", "trainer"} <= set(raw)
    config = resolved(path)
    spec = get_spec(config["model"]["name"])
    assert config["frontend"] == {**cfgmod.DEFAULTS["frontend"], **spec.frontend}
    module = SceneClassifier(config, ["airport", "bus", "park"], ["a", "b", "s4"])
    assert module.frontend.out_channels == input_shape(config["model"]["name"])[1]


def fit_steps(config: dict, tau_dir, tmp_path, steps: int = 1) -> tuple[SceneClassifier, L.Trainer]:
    quiet_lightning()
    L.seed_everything(config["seed"], verbose=False)
    dm = make_datamodule(config, tau_dir, progress=False)
    dm.setup("fit")
    module = SceneClassifier(config, dm.classes, dm.devices)
    trainer = L.Trainer(max_epochs=config["trainer"]["epochs"], limit_train_batches=steps, limit_val_batches=1,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    return module, trainer


# With seed 0, val_fraction 0.7 holds out one of the fixture's two training recordings: a validation
# set for the plateau schedule and checkpoints, and a training set.
FAST = {"seed": 0, "trainer": {"epochs": 2, "batch_size": 4, "eval_batch_size": 4},
        "data": {"split": 50, "val_fraction": 0.7}}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_a_few_steps_on_the_fixture(path, tau_dir, tmp_path):
    config = resolved(path, FAST)
    distill = config["loss"].get("distill")
    if distill and distill.get("teachers"):
        # A teacher with this config's front end and classes: the config itself, trained without distillation.
        teacher_config = resolved(path, FAST, {"loss": {"distill": None}})
        _, trainer = fit_steps(teacher_config, tau_dir, tmp_path / "teacher")
        trainer.save_checkpoint(tmp_path / "teacher.ckpt")
        config["loss"]["distill"]["teachers"] = [str(tmp_path / "teacher.ckpt")]
    module, trainer = fit_steps(config, tau_dir, tmp_path)
    assert trainer.global_step == FAST["trainer"]["epochs"]  # one step per epoch
    assert module.teachers is None or len(module.teachers._loaded) == 1
    assert math.isfinite(trainer.optimizers[0].param_groups[0]["lr"])
    assert "val/loss" in trainer.callback_metrics  # what reduce_on_plateau follows


def test_train_seeds_reports_mean_and_std(tau_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["train", "--config", str(CONFIG_DIR / "dcase24_baseline.yaml"), "--data", str(tau_dir),
                 "--epochs", "1", "--batch-size", "16", "--seeds", "2", "--seed", "5", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == [5, 6] and (out / "seed5" / "metrics.json").is_file()
    runs = summary["macro_accuracy"]["runs"]
    assert len(runs) == 2 and abs(summary["macro_accuracy"]["mean"] - sum(runs) / 2) < 1e-12
    assert "+-" in capsys.readouterr().out
