"""The config schema: every rule refuses its bad values in one line naming the key, free-form sections
keep taking what their components take, every recipe validates, and crafted checkpoints are refused."""
from __future__ import annotations

import copy
import re

import pytest
import torch

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.modelfile.checkpoint import load_checkpoint
from tinyasc.models import list_models

# override -> words the one-line refusal must hold (after resolve, which starts from DEFAULTS)
BAD = {
    # trainer
    "trainer.epochs=abc": "trainer.epochs: expected an integer >= 1, got 'abc'",
    "trainer.epochs=0": "trainer.epochs: expected an integer >= 1, got 0",
    "trainer.epochs=1.5": "trainer.epochs: expected an integer >= 1, got 1.5",
    "trainer.epochs=true": "trainer.epochs: expected an integer >= 1, got True",
    "trainer.batch_size=0": "trainer.batch_size: expected an integer >= 1, got 0",
    "trainer.eval_batch_size=-4": "trainer.eval_batch_size: expected an integer >= 1, got -4",
    "trainer.devices=0": "trainer.devices: expected an integer >= 1 or 'auto', got 0",
    "trainer.devices=many": "trainer.devices: expected an integer >= 1 or 'auto', got 'many'",
    "trainer.deterministic=maybe": "trainer.deterministic: expected true, false or 'warn', got 'maybe'",
    "trainer.log_every_n_steps=0": "trainer.log_every_n_steps: expected an integer >= 1, got 0",
    "trainer.num_nodes=0": "trainer.num_nodes: expected an integer >= 1, got 0",
    "trainer.checkpoint_every_n_steps=0": "trainer.checkpoint_every_n_steps: expected an integer >= 1 or null, got 0",
    "trainer.precision=[16]": "trainer.precision: expected a precision",
    "trainer.accelerator=3": "trainer.accelerator: expected a text, got 3",
    "trainer.bogus=1": "trainer.bogus: unknown key; known: epochs, batch_size, eval_batch_size, devices",
    "trainer=3": "trainer: expected a mapping of keys, got 3",
    # optimiser, schedule, loss: the arguments that mean the same for every component
    "optim.lr=-1": "optim.lr: expected a number > 0, got -1",
    "optim.lr=0": "optim.lr: expected a number > 0, got 0",
    "optim.lr=fast": "optim.lr: expected a number > 0, got 'fast'",
    "optim.lr=null": "optim.lr: expected a number > 0, got None",
    "optim.lr=.nan": "optim.lr: expected a number > 0, got nan",
    "optim.weight_decay=-0.1": "optim.weight_decay: expected a number >= 0 or null, got -0.1",
    "schedule.warmup_steps=-1": "schedule.warmup_steps: expected an integer >= 0 or null, got -1",
    "schedule.min_lr_ratio=2": "schedule.min_lr_ratio: expected a number in [0, 1] or null, got 2",
    "loss.label_smoothing=1": "loss.label_smoothing: expected a number in [0, 1) or null, got 1",
    "loss.distill=3": "loss.distill: expected a mapping",
    # data
    "data.val_fraction=1": "data.val_fraction: expected a number in [0, 1), got 1",
    "data.val_fraction=-0.1": "data.val_fraction: expected a number in [0, 1), got -0.1",
    "data.duration=0": "data.duration: expected a number > 0, got 0",
    "data.split=7": "data.split: expected one of 5, 10, 25, 50, 100 or the NAME of a split file",
    "data.split=0": "data.split: expected one of 5, 10, 25, 50, 100",
    "data.split=true": "data.split: expected one of 5, 10, 25, 50, 100",
    "data.split=custom": "data.split: expected one of 5, 10, 25, 50, 100 or the NAME of a split file",
    "data.skip_bad_files=1": "data.skip_bad_files: expected true or false, got 1",
    "data.num_workers=-1": "data.num_workers: expected an integer >= 0, got -1",
    "data.cache_dtype=int8": "data.cache_dtype: expected a float dtype",
    "data.synthetic_clips=0": "data.synthetic_clips: expected an integer >= 1 or null, got 0",
    "data.dir=[a]": "data.dir: expected a path or null",
    "data.folder=x": "data.folder: unknown key; known: dir, split, duration, val_fraction",
    "data=null": "data: expected a mapping of keys, got None",
    # seed
    "seed=-1": "seed: expected an integer in [0, 4294967295], got -1",
    "seed=x": "seed: expected an integer in [0, 4294967295], got 'x'",
    "seed=1.5": "seed: expected an integer in [0, 4294967295], got 1.5",
    # front end: MelFrontEnd's arguments, positive numbers, and the front end's own rules
    "frontend.sample_rate=-16000": "frontend.sample_rate: expected an integer >= 1, got -16000",
    "frontend.n_mels=0": "frontend.n_mels: expected an integer >= 1, got 0",
    "frontend.hop_length=1.5": "frontend.hop_length: expected an integer >= 1, got 1.5",
    "frontend.n_fft=big": "frontend.n_fft: expected an integer >= 1, got 'big'",
    "frontend.fmin=-1": "frontend.fmin: expected a number >= 0, got -1",
    "frontend.fmax=0": "frontend.fmax: expected a number > 0 or null, got 0",
    "frontend.log_offset=0": "frontend.log_offset: expected a number > 0, got 0",
    "frontend.deltas=3": "frontend.deltas: expected an integer in [0, 2], got 3",
    "frontend.trim_frames=-1": "frontend.trim_frames: expected an integer >= 0, got -1",
    "frontend.window=box": "frontend: window must be one of hann, hamming, not 'box'",
    "frontend.win_length=9000": "frontend: win_length 9000 is longer than n_fft 4096",
    "frontend.mel_scale=bark": "frontend: mel_scale must be 'htk' or 'slaney', not 'bark'",
    "frontend.hop=500": "frontend.hop: unknown key; known: sample_rate, n_fft, win_length, hop_length, n_mels",
    # model and augment: known keys, free arguments
    "model.width=3": "model.width: unknown key; known: name, args",
    "model.args=[1]": "model.args: expected a mapping or null, got [1]",
    "augment.noise=[]": "augment.noise: unknown key; known: waveform, spectrogram, frontend",
    "augment=null": "augment: expected a mapping of keys, got None",
}


def refusal(*overrides: str, config_file=None) -> str:
    with pytest.raises(TinyAscError) as info:
        cfgmod.resolve(config_file, [cfgmod.parse_override(o) for o in overrides])
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("override,words", BAD.items(), ids=list(BAD))
def test_bad_value_is_refused_naming_its_key(override, words):
    message = refusal(override)
    assert words in message, message
    assert message.startswith(override.split("=")[0].split(".")[0]), message  # an override: the key comes first


GOOD = [  # what is valid today stays valid: free-form arguments, the other spellings of a value
    "trainer.devices=auto", "trainer.devices=2", "trainer.num_nodes=2", "trainer.precision=16-mixed",
    "trainer.precision=16", "trainer.deterministic=true", "trainer.checkpoint_every_n_steps=50",
    "data.split=25", "data.split='50'", "data.val_fraction=0", "data.skip_bad_files=true", "data.cache_dtype=float32",
    "data.synthetic_clips=200", "seed=4294967295", "frontend.fmax=null", "frontend.win_length=null",
    "frontend.deltas=2",
    "frontend.mel_norm=slaney", "model.args={width: 3, anything: [1, 2]}", "optim.betas=[0.9, 0.99]",
    "optim={name: sgd, lr: 0.1, momentum: 0.9, nesterov: true}", "schedule={name: four_phase, warmup_epochs: 3}",
    "schedule.warmup_steps=null", "loss={name: focal, gamma: 2.0, alpha: [1, 2, 3]}", "loss.distill=null",
    "loss.distill={weight: 0.5, temperature: 2, teachers: [runs/a]}", "loss.distill={anything: 1}",
    "augment.spectrogram=[{name: freq_mask, width: 8, any_argument: 1}]", "augment.frontend=[{name: x}]",
    "augment.waveform=null", "model.name=not_registered_yet",  # a name is the registries' business
]


@pytest.mark.parametrize("override", GOOD)
def test_valid_values_stay_valid(override):
    config = cfgmod.resolve(None, [cfgmod.parse_override(override)])
    cfgmod.validate(config)


@pytest.mark.parametrize("recipe", sorted(cfgmod.list_recipes()))
def test_every_recipe_validates(recipe):
    config = cfgmod.resolve(recipe)
    cfgmod.validate(config, recipe)
    cfgmod.validate(cfgmod.merge(cfgmod.DEFAULTS, cfgmod.load_yaml(cfgmod.find_recipe(recipe))), recipe)


def test_defaults_and_quickstart_validate():
    cfgmod.validate(cfgmod.DEFAULTS)
    cfgmod.validate(cfgmod.merge(cfgmod.DEFAULTS, cfgmod.QUICKSTART))
    cfgmod.validate(cfgmod.resolve(None))


def test_every_model_with_its_own_front_end_validates():
    for name in list_models():
        cfgmod.validate(cfgmod.resolve(None, model=name), name)


def test_a_bad_value_from_a_file_names_the_file_and_an_override_can_fix_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("trainer: {epochs: 0, batch_size: 8}\n")
    with pytest.raises(TinyAscError, match=rf"^{re.escape(str(path))}: trainer\.epochs: expected an integer >= 1"):
        cfgmod.resolve(path)
    assert cfgmod.resolve(path, [{"trainer": {"epochs": 3}}])["trainer"]["epochs"] == 3
    path.write_text("trainer: {epochs: 2}\n")  # the file is fine, the override is not: the key comes first
    assert refusal("trainer.epochs=abc", config_file=path).startswith("trainer.epochs: ")


def test_an_unknown_key_in_a_file_lists_the_known_ones(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: {val_fraction: 0.2}\ntrainer: {epochs: 2, batchsize: 8}\n")
    with pytest.raises(TinyAscError) as info:
        cfgmod.resolve(path)
    message = str(info.value)
    assert message.startswith(f"{path}: trainer.batchsize: unknown key; known: ")
    assert set(cfgmod.DEFAULTS["trainer"]) <= set(message.split("known: ")[1].split(", "))


def test_python_api_overrides_are_checked_too():
    assert refusal_dict({"trainer": {"batch_size": "16"}}).startswith("trainer.batch_size: expected an integer >= 1")
    assert refusal_dict({"bogus": {}}).startswith("bogus: unknown section; known: seed, data")
    assert refusal_dict({"optim": {"name": "sgd", "lr": -0.1}}).startswith("optim.lr: expected a number > 0")


def refusal_dict(update: dict) -> str:
    with pytest.raises(TinyAscError) as info:
        cfgmod.resolve(None, [update])
    return str(info.value)


def test_a_split_file_of_the_dataset_is_a_valid_split(tau_dir, tmp_path):
    (tau_dir / "split7.csv").write_text((tau_dir / "split50.csv").read_text())
    (tau_dir / "splitcustom.csv").write_text((tau_dir / "split50.csv").read_text())
    data = {"dir": str(tau_dir)}
    assert cfgmod.resolve(None, [{"data": {**data, "split": 7}}])["data"]["split"] == 7
    assert cfgmod.resolve(None, [{"data": {**data, "split": "custom"}}])["data"]["split"] == "custom"
    assert "got 8" in refusal_dict({"data": {**data, "split": 8}})
    assert "got 'other'" in refusal_dict({"data": {**data, "split": "other"}})
    # a folder that does not exist is reported by the data module, which names the folder
    assert cfgmod.resolve(None, [{"data": {"dir": str(tmp_path / "nowhere"), "split": 7}}])["data"]["split"] == 7


def test_validate_a_loaded_config():
    config = cfgmod.resolve(None)
    cfgmod.validate(config)
    broken = copy.deepcopy(config)
    broken["trainer"]["epochs"] = "many"
    with pytest.raises(TinyAscError,
                       match=r"^run/config\.yaml: trainer\.epochs: expected an integer >= 1, got 'many'$"):
        cfgmod.validate(broken, "run/config.yaml")
    missing = copy.deepcopy(config)
    del missing["frontend"]
    with pytest.raises(TinyAscError, match=r"^cfg: frontend: missing section"):
        cfgmod.validate(missing, "cfg")
    missing = copy.deepcopy(config)
    del missing["data"]["duration"]
    with pytest.raises(TinyAscError, match=r"^cfg: data\.duration: missing key$"):
        cfgmod.validate(missing, "cfg")
    with pytest.raises(TinyAscError, match="a config must be a mapping of sections, got list"):
        cfgmod.validate([config], "cfg")
    stored = copy.deepcopy(config)
    stored["data"]["split"] = 7  # a run on its own split7.csv, validated where that dataset is not
    cfgmod.validate(stored, "ckpt", split_files=False)
    with pytest.raises(TinyAscError, match=r"data\.split: expected one of"):
        cfgmod.validate(stored, "ckpt")


def test_check_names_still_comes_first():
    with pytest.raises(TinyAscError, match=r"^config: loss must be a mapping whose name is a registered name"):
        cfgmod.resolve(None, [{"loss": {"name": ["os", "system"]}}])
    with pytest.raises(TinyAscError, match=r"^config: augment\.waveform must be a list of entries"):
        cfgmod.resolve(None, [{"augment": {"waveform": [1]}}])


# --- crafted checkpoints ---------------------------------------------------------------------------------
def hyper() -> dict:
    return {"config": cfgmod.resolve(None), "classes": ["airport", "bus"], "devices": ["a", "b"]}


def without(mapping: dict, key: str) -> dict:
    return {k: v for k, v in mapping.items() if k != key}


def with_config(change) -> dict:
    h = hyper()
    change(h["config"])
    return h


CRAFTED = {  # id -> (checkpoint contents, words after "<file>: ")
    "config-not-a-mapping": ({"state_dict": {}, "hyper_parameters": {**hyper(), "config": ["data", "model"]}},
                             "a config must be a mapping of sections, got list"),
    "config-missing-section": ({"state_dict": {}, "hyper_parameters": with_config(lambda c: c.pop("trainer"))},
                               "trainer: missing section"),
    "config-missing-key": ({"state_dict": {}, "hyper_parameters": with_config(lambda c: c["data"].pop("duration"))},
                           "data.duration: missing key"),
    "config-wrong-type": ({"state_dict": {}, "hyper_parameters": with_config(
        lambda c: c["frontend"].update(sample_rate="32k"))},
        "frontend.sample_rate: expected an integer >= 1, got '32k'"),
    "config-section-wrong-type": ({"state_dict": {}, "hyper_parameters": with_config(lambda c: c.update(data=[1]))},
                                  "data: expected a mapping of keys, got [1]"),
    "config-unknown-key": ({"state_dict": {}, "hyper_parameters": with_config(lambda c: c["trainer"].update(x=1))},
                           "trainer.x: unknown key; known:"),
    "no-classes": ({"state_dict": {}, "hyper_parameters": without(hyper(), "classes")},
                   "hyper_parameters has no classes"),
    "no-devices": ({"state_dict": {}, "hyper_parameters": without(hyper(), "devices")},
                   "hyper_parameters has no devices"),
    "classes-a-string": ({"state_dict": {}, "hyper_parameters": {**hyper(), "classes": "airport"}},
                         "hyper_parameters.classes must be a list of names (strings), got 'airport'"),
    "classes-not-strings": ({"state_dict": {}, "hyper_parameters": {**hyper(), "classes": [1, 2]}},
                            "hyper_parameters.classes must be a list of names (strings), got [1, 2]"),
    "classes-empty": ({"state_dict": {}, "hyper_parameters": {**hyper(), "classes": []}},
                      "hyper_parameters.classes must list distinct class names, got []"),
    "classes-repeated": ({"state_dict": {}, "hyper_parameters": {**hyper(), "classes": ["a", "a"]}},
                         "hyper_parameters.classes must list distinct class names"),
    "devices-not-a-list": ({"state_dict": {}, "hyper_parameters": {**hyper(), "devices": None}},
                           "hyper_parameters.devices must be a list of names (strings), got None"),
    "hyper-parameters-a-string": ({"state_dict": {}, "hyper_parameters": "config"},
                                  "not a tinyasc checkpoint (no state_dict / config inside)"),
    "state-dict-a-list": ({"state_dict": [1], "hyper_parameters": hyper()},
                          "state_dict must be a mapping of parameter names to tensors"),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_checkpoint_is_refused_in_one_line_naming_the_file(name, tmp_path):
    contents, words = CRAFTED[name]
    path = tmp_path / f"{name}.ckpt"
    torch.save(contents, path)
    with pytest.raises(TinyAscError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message, message


def test_a_well_formed_checkpoint_loads(tmp_path):
    h = hyper()
    h["config"]["data"]["split"] = 7  # its dataset's own split file need not be here
    path = tmp_path / "ok.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "hyper_parameters": h}, path)
    assert load_checkpoint(path)["hyper_parameters"]["classes"] == ["airport", "bus"]
