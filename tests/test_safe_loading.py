"""Nothing a user loads runs code or reads outside its folder: configs, checkpoints, logits files, dataset lists."""
import os
import re

import numpy as np
import pytest
import torch

from tinyasc import config as cfgmod
from tinyasc.cli import main
from tinyasc.data.tau import TauFolder
from tinyasc.base.errors import TinyAscError
from tinyasc.modelfile import load_predictor as load_module
from tinyasc.training.distill import lookup_table
from tinyasc.training.module import SceneClassifier
from tinyasc.training.optim import build_optimizer, build_schedule

NAMED = {  # override -> the registry's refusal
    "model.name=os.system": "unknown model 'os.system'",
    "loss.name=os.system": "unknown loss 'os.system'",
    "optim.name=os.system": "unknown optimizer 'os.system'",
    "schedule.name=os.system": "unknown schedule 'os.system'",
    "augment.waveform=[{name: os.system}]": "unknown augmentation 'os.system'",
    "augment.spectrogram=[{name: builtins.eval}]": "unknown augmentation 'builtins.eval'",
    # safe_load refuses the tag, so the value stays a plain string, and no registry knows it
    "model.name=!!python/name:os.system": "unknown model '!!python/name:os.system'",
}


def build_everything(config):
    module = SceneClassifier(config, ["a", "b"], ["d"])
    optimizer = build_optimizer(module.parameters(), config["optim"])
    build_schedule(optimizer, config["schedule"], total_steps=10, steps_per_epoch=5)


@pytest.mark.parametrize("override,message", NAMED.items())
def test_names_come_only_from_registries(override, message):
    config = cfgmod.resolve(None, [cfgmod.parse_override(override)])
    with pytest.raises(TinyAscError, match=re.escape(message)):
        build_everything(config)


@pytest.mark.parametrize("override", ["model.name=[os, system]", "loss.name={os: system}", "optim=os.system",
                                      "augment.waveform=os.system", "augment.frontend=[os.system]", "augment=[1]"])
def test_names_that_are_not_strings_are_refused_cleanly(override):
    with pytest.raises(TinyAscError, match="must be"):
        cfgmod.resolve(None, [cfgmod.parse_override(override)])


def test_cli_refuses_an_unknown_model_and_a_yaml_with_code(tau_dir, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    assert main(["train", "--config", str(evil), "--data", str(tau_dir), "--out", str(tmp_path / "r")]) == 2
    assert "invalid YAML at line 1" in capsys.readouterr().err and not marker.exists()
    assert main(["train", "--data", str(tau_dir), "--out", str(tmp_path / "r"), "--no-progress",
                 "--set", "model.name=os.system"]) == 2
    assert "unknown model 'os.system'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_checkpoint_config_naming_a_function_is_refused(tmp_path):
    """Plain data passes weights_only; the names inside it still only reach the registries."""
    config = cfgmod.resolve(None)
    config["model"]["name"] = "os.system"
    ckpt = tmp_path / "named.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"config": config, "classes": ["a"], "devices": ["d"]}}, ckpt)
    with pytest.raises(TinyAscError, match="unknown model 'os.system'"):
        load_module(ckpt)
    config["loss"] = {"name": ["os", "system"]}
    torch.save({"state_dict": {}, "hyper_parameters": {"config": config, "classes": ["a"], "devices": ["d"]}}, ckpt)
    with pytest.raises(TinyAscError, match=f"{ckpt}: loss must be"):
        load_module(ckpt)


def test_teacher_logits_file_with_objects_is_refused(tmp_path):
    path = tmp_path / "logits.npz"
    np.savez(path, filenames=np.array([{"x": 1}], dtype=object), logits=np.zeros((1, 2)), classes=np.array(["a", "b"]))
    with pytest.raises(TinyAscError, match="not a teacher logits file"):
        lookup_table(path, ["x"], ["a", "b"])


@pytest.mark.parametrize("list_name,row", [("split100.csv", "../outside.wav\tbus"),
                                           ("test.csv", "/etc/passwd\tbus"),
                                           ("test.csv", "audio/../../outside.wav\tbus")])
def test_split_and_test_lists_cannot_escape_the_dataset(tau_dir, list_name, row):
    listed = tau_dir / list_name
    listed.write_text(listed.read_text() + row + "\n")
    folder = TauFolder(tau_dir)
    with pytest.raises(TinyAscError, match=f"{list_name}: path '.*' escapes the dataset folder"):
        folder.split(100) if list_name.startswith("split") else folder.test()


def test_symlinks_pointing_outside_are_refused(tau_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = tau_dir / "audio" / sorted(os.listdir(tau_dir / "audio"))[0]
    (outside / "clip.wav").write_bytes(victim.read_bytes())
    victim.unlink()
    victim.symlink_to(outside / "clip.wav")
    with pytest.raises(TinyAscError, match=f"meta.csv: path 'audio/{victim.name}' escapes the dataset folder"):
        TauFolder(tau_dir)

    victim.unlink()  # a whole folder linked from outside is refused too
    (tau_dir / "audio").rename(outside / "audio")
    (tau_dir / "audio").symlink_to(outside / "audio")
    with pytest.raises(TinyAscError, match="escapes the dataset folder"):
        TauFolder(tau_dir)


def test_links_that_stay_inside_and_a_linked_dataset_root_are_fine(tau_dir, tmp_path):
    first, second = sorted((tau_dir / "audio").iterdir())[:2]
    second.unlink()
    second.symlink_to(first)  # a link within the dataset
    linked_root = tmp_path / "linked"
    linked_root.symlink_to(tau_dir)  # the dataset itself reached through a link
    folder = TauFolder(linked_root)
    assert len(folder.split(100)) == 48 and folder.path(second.relative_to(tau_dir).as_posix()).is_file()
