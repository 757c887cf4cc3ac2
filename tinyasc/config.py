"""Run configuration: defaults, recipes, YAML files, overrides, and the rules that combine them.

A config is a nested dict. ``resolve`` starts from DEFAULTS, merges a recipe or YAML file (safe
loader), the model's own front end, and then overrides such as ``trainer.epochs=2``; the result is
saved as ``config.yaml`` in the run folder, which is what ``--resume``, ``evaluate`` and checkpoints
use. The command line and the Python API both call ``resolve``, so they give the same config.

Recipes (the seed systems' configs) ship inside the package, in ``tinyasc/configs``: ``--config
NAME`` finds one by name from any folder, ``list_recipes`` lists them.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from tinyasc.audio.features import DCASE24_FRONTEND
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import write_text
from tinyasc.models.registry import frontend_config

RECIPES = Path(__file__).parent / "configs"

# The DCASE 2024 Task 1 baseline recipe (see shared reference findings, section 2).
DEFAULTS: dict = {
    "seed": 0,
    "data": {"dir": None, "split": 100, "duration": 1.0, "val_fraction": 0.1, "cache_dir": None,
             "cache_dtype": "float16", "num_workers": 0, "skip_bad_files": False,
             "synthetic_clips": None, "synthetic_seed": 0},
    "frontend": dict(DCASE24_FRONTEND),
    "model": {"name": "dcase24_baseline", "args": {}},
    "augment": {
        "waveform": [{"name": "time_roll", "max_shift_s": 0.1}],
        "spectrogram": [{"name": "freq_mixstyle", "p": 0.4, "alpha": 0.3}, {"name": "freq_mask", "width": 48}],
    },
    "loss": {"name": "cross_entropy", "label_smoothing": 0.0},
    "optim": {"name": "adamw", "lr": 0.005, "weight_decay": 1e-4},
    "schedule": {"name": "cosine_warmup", "warmup_steps": 2000, "min_lr_ratio": 0.0},
    "trainer": {"epochs": 150, "batch_size": 256, "eval_batch_size": 256, "devices": 1, "accelerator": "auto",
                "strategy": "auto", "precision": "32-true", "deterministic": "warn", "log_every_n_steps": 10},
}

# The main job on the built-in synthetic set: a few epochs, a batch that suits a laptop CPU. Applies
# when neither a config file nor a dataset folder is given.
QUICKSTART: dict = {"trainer": {"epochs": 6, "batch_size": 64}, "schedule": {"warmup_steps": 100}}


def merge(base: dict, update: dict) -> dict:
    """Deep-merge ``update`` into ``base``. A section that names a different component (its ``name``
    changes, e.g. another schedule) replaces the old section instead of inheriting its arguments."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        old = out.get(key)
        same_component = not (isinstance(value, dict) and isinstance(old, dict)
                               and "name" in value and value["name"] != old.get("name"))
        if isinstance(value, dict) and isinstance(old, dict) and same_component:
            out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def list_recipes() -> dict[str, str]:
    """{name: description} of the recipes shipped with tinyasc."""
    out = {}
    for path in sorted(RECIPES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out[path.stem] = " ".join(str(data.get("description", "")).split())
    return out


def find_recipe(name_or_path: str | Path) -> Path:
    """A config file path as given, else the packaged recipe of that name (``dcase24_baseline``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = RECIPES / f"{path.name.removesuffix('.yaml').removesuffix('.yml')}.yaml"
    if path.parent == Path(".") or path.parts[:1] == ("configs",):  # a bare name, or the old configs/NAME.yaml
        if packaged.is_file():
            return packaged
    raise TinyAscError(f"{path}: no such config file or packaged recipe; recipes: {', '.join(list_recipes())}")


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise TinyAscError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise TinyAscError(f"{path}: invalid YAML{line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TinyAscError(f"{path}: a config must be a mapping of sections (data, model, trainer, ...)")
    unknown = set(data) - set(DEFAULTS) - {"description"}
    if unknown:
        raise TinyAscError(f"{path}: unknown config section(s) {', '.join(sorted(unknown))}; "
                           f"known: {', '.join(DEFAULTS)}")
    return data


def parse_override(text: str) -> dict:
    """``trainer.epochs=2`` -> {"trainer": {"epochs": 2}}; the value is parsed as YAML."""
    if "=" not in text:
        raise TinyAscError(f"override {text!r}: expected KEY=VALUE, e.g. trainer.epochs=2")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if parts[0] not in DEFAULTS:
        raise TinyAscError(f"override {text!r}: unknown section {parts[0]!r}; known: {', '.join(DEFAULTS)}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    out: dict = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = parsed
    return out


def resolve(config_file: str | Path | None = None, overrides: list[dict] | None = None,
            base: dict | None = None, model: str | None = None) -> dict:
    """The config of a run: ``base`` (default DEFAULTS; a run's saved config when resuming), then the
    recipe or YAML file, then ``model`` (that model with its report's front end), then ``overrides``
    in order. Without a file, a base or a dataset folder, the run is the quick start on the built-in
    synthetic set, and QUICKSTART comes before the overrides."""
    config_file = find_recipe(config_file) if config_file else None

    def build(first: list[dict]) -> dict:
        config = copy.deepcopy(base or DEFAULTS)
        if config_file:
            config = merge(config, load_yaml(config_file))
        if model:  # a model brings its report's front end; overrides can still change any of it
            config["model"] = {"name": model, "args": {}}
            config["frontend"] = merge(DEFAULTS["frontend"], frontend_config(model))
        for update in [*first, *(overrides or [])]:
            config = merge(config, update)
        return config

    config = build([])
    if base is None and not config_file and not config["data"].get("dir"):
        config = build([QUICKSTART])
    check_names(config, str(config_file or "config"))
    return config


def check_names(config: dict, source: str = "config") -> None:
    """Names (model, loss, optimiser, schedule, augmentations) are looked up in tinyasc's registries,
    never imported; anything but a string there is a mistake, reported here rather than as a crash."""
    if not isinstance(config, dict):
        raise TinyAscError(f"{source}: a config must be a mapping of sections, got {type(config).__name__}")
    for section in ("model", "loss", "optim", "schedule"):
        value = config.get(section)
        if not isinstance(value, dict) or not isinstance(value.get("name", ""), (str, type(None))):
            raise TinyAscError(f"{source}: {section} must be a mapping whose name is a registered name, got {value!r}")
    augment = config.get("augment") or {}
    if not isinstance(augment, dict):
        raise TinyAscError(f"{source}: augment must be a mapping of waveform/spectrogram/frontend lists")
    for domain, entries in augment.items():
        if entries is not None and not (isinstance(entries, list) and
                                        all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries)):
            raise TinyAscError(f"{source}: augment.{domain} must be a list of entries like {{name: freq_mask, ...}}, "
                               f"got {entries!r}")


def save(config: dict, path: str | Path) -> None:
    """Write atomically, so an interrupted save never leaves half a config."""
    write_text(path, yaml.safe_dump(config, sort_keys=False))
