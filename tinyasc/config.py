"""Run configuration: defaults, recipes, YAML files, overrides, and the rules that combine them.

A config is a nested dict. ``resolve`` starts from DEFAULTS, merges a recipe or YAML file (safe
loader), the model's own front end, and then overrides such as ``trainer.epochs=2``; the result is
saved as ``config.yaml`` in the run folder, which is what ``--resume``, ``evaluate`` and checkpoints
use. The command line and the Python API both call ``resolve``, so they give the same config.

Recipes (the seed systems' configs) ship inside the package, in ``tinyasc/configs``: ``--config
NAME`` finds one by name from any folder, ``list_recipes`` lists them.

Every config is checked against a schema (``validate``; ``resolve`` does it too) before a run
writes anything: types and ranges of the keys tinyasc reads, and no unknown key inside a section
whose keys tinyasc knows (data, trainer, frontend, model, augment). What a named component takes
(``model.args``, augmentation entries, loss/optim/schedule arguments, ``loss.distill``) stays free
for its builder to check; only the arguments whose meaning is the same for every such component
(``optim.lr``, ``schedule.warmup_steps``, ...) get a range here.
"""
from __future__ import annotations

import copy
import inspect
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from tinyasc.audio.features import DCASE24_FRONTEND, MelFrontEnd
from tinyasc.augment.registry import DOMAINS
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import write_text
from tinyasc.data.tau import SHIPPED_SPLITS
from tinyasc.models.registry import frontend_config

RECIPES = Path(__file__).parent / "configs"

# The DCASE 2024 Task 1 baseline recipe (see shared reference findings, section 2).
DEFAULTS: dict = {
    "seed": 0,
    "data": {"dir": None, "split": 100, "duration": 1.0, "val_fraction": 0.1, "cache_dir": None,
             "cache_dtype": "float16", "num_workers": 0, "skip_bad_files": False,
             "synthetic_clips": None, "synthetic_seed": 0,
             "on_device": False},  # true: the training cache on the training device (tinyasc/data/on_device.py)
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
                "strategy": "auto", "precision": "32-true", "deterministic": "warn", "log_every_n_steps": 10,
                "checkpoint_every_n_steps": None,
                "loggers": ["csv", "tensorboard"],  # also wandb, mlflow (tinyasc/training/loggers.py)
                "energy": False},  # true or a country code: codecarbon measures the training's energy
    # How `tinyasc quantize` / `tinyasc prune` compress a trained run when their options leave it open;
    # the seed recipes fill this from their reports. The QAT defaults are report 001's (section 6: 24
    # epochs, peak LR 5e-5 falling linearly to 10 % by epoch 16; conv + BN + ReLU fused, x86 backend).
    "compress": {"mode": None,  # qat | ptq | fp16: what the submission deployed
                 "qat_epochs": 24, "qat_lr": 5e-5, "qat_final_lr_ratio": 0.1, "qat_decay_epochs": 16,
                 "calib_batches": 32,  # post-training int8: training batches that calibrate the ranges
                 "prune_ratio": None, "prune_target_params": None,  # one of them, for `tinyasc prune`
                 "prune_steps": 3, "prune_finetune_epochs": 2, "prune_lr": None,  # lr null: a tenth of training's
                 "prune_filters_only": False},  # true: cut conv filters only (report 003), not linear units
}
# Sections a config may lack (configs saved before they existed): their defaults apply.
OPTIONAL_SECTIONS = ("compress",)

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
    unknown = set(data) - set(DEFAULTS) - {"description", "per_split"}
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

    def build(first: list[dict], split_layer: dict | None = None) -> dict:
        config = copy.deepcopy(base or DEFAULTS)
        if config_file:
            config = merge(config, load_yaml(config_file))
        if model:  # a model brings its report's front end; overrides can still change any of it
            config["model"] = {"name": model, "args": {}}
            config["frontend"] = merge(DEFAULTS["frontend"], frontend_config(model))
        config = merge(config, split_layer or {})
        for update in [*first, *(overrides or [])]:
            config = merge(config, update)
        return config

    config = build([])
    data = config.get("data")
    quick = base is None and not config_file and not (isinstance(data, dict) and data.get("dir"))
    if quick:
        config = build([QUICKSTART])
    layer = per_split_layer(config, str(config_file or "config"))
    if layer:  # the recipe's settings for this split, under the overrides (which name the split)
        config = build([QUICKSTART] if quick else [], layer)
    config.pop("per_split", None)  # a resolved config holds the values that apply, nothing conditional
    check_names(config, str(config_file or "config"))
    try:
        _check_schema(config, split_files=True)
    except _Invalid as bad:  # named after where the bad value came from: the file, or an override
        layers = [("config", base or DEFAULTS), (str(config_file), load_yaml(config_file) if config_file else {}),
                  ("config", {"model": None, "frontend": None} if model else {}),  # None: replaced as a whole
                  ("config", QUICKSTART if quick else {}), *(("", update) for update in overrides or [])]
        origin = next((label for label, layer in reversed(layers) if _sets(layer, bad.key.split("."))), "config")
        raise TinyAscError(f"{origin}: {bad}" if origin else str(bad)) from None
    return config


def per_split_layer(config: dict, source: str = "config") -> dict:
    """The ``per_split`` sections of the config's training split (report 004 trains 5/10/25 % with
    batch 78 and lr 0.005, 50/100 % with 130 and 0.01), or {}."""
    table = config.get("per_split")
    try:
        PER_SPLIT.check("per_split", table)
    except _Invalid as bad:
        raise TinyAscError(f"{source}: {bad}") from None
    if not table or not isinstance(config.get("data"), dict):
        return {}  # a bad data section is the schema check's to report
    split = str(config["data"].get("split")).strip()
    return next((layer for key, layer in (table or {}).items() if str(key).strip() == split), {})


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


def compress_settings(config: dict) -> dict:
    """A run's ``compress`` section over the defaults (a run saved before the section existed has none)."""
    return {**DEFAULTS["compress"], **(config.get("compress") or {})}


def validate(config: dict, source: str = "config", split_files: bool = True) -> None:
    """Check a config (a resolved one, a run's saved one, a checkpoint's) against the schema: the names
    (``check_names``), every known key's type and range, no unknown key in a known section, no missing
    key that tinyasc reads. Raises TinyAscError ``"{source}: {key}: {problem}"``, one line.
    ``split_files``: look a ``data.split`` other than 5/10/25/50/100 up as ``split{NAME}.csv`` in
    ``data.dir``; False for the stored config of a finished run, whose dataset may be elsewhere now."""
    check_names(config, source)
    try:
        _check_schema(config, split_files)
    except _Invalid as bad:
        raise TinyAscError(f"{source}: {bad}") from None


# --- the schema ---------------------------------------------------------------------------------------
class _Invalid(Exception):
    """One schema problem at a dotted key; the caller says where the config came from."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class Rule:
    expected: str  # "an integer >= 1": the message says "expected <this>, got <value>"
    accepts: Callable[[object], bool]

    def check(self, key: str, value) -> None:
        if not self.accepts(value):
            raise _Invalid(key, f"expected {self.expected}, got {_show(value)}")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def integer(low: int, high: int | None = None, null: bool = False) -> Rule:
    what = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    return Rule(what + (" or null" if null else ""),
                lambda v: (null and v is None) or (_is_int(v) and low <= v and (high is None or v <= high)))


def number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = False,
           null: bool = False) -> Rule:
    if high is None:
        what = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        what = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def accepts(v) -> bool:
        if null and v is None:
            return True
        return (_is_number(v) and (v > low if low_open else v >= low)
                and (high is None or (v < high if high_open else v <= high)))

    return Rule(what + (" or null" if null else ""), accepts)


def _float_dtype(v) -> bool:
    try:
        return isinstance(v, str) and np.dtype(v).kind == "f"
    except TypeError:
        return False


BOOLEAN = Rule("true or false", lambda v: isinstance(v, bool))
TEXT = Rule("a text", lambda v: isinstance(v, str) and bool(v.strip()))
TEXT_OR_NULL = Rule("a text or null", lambda v: v is None or isinstance(v, str))
PATH_OR_NULL = Rule("a path or null", lambda v: v is None or (isinstance(v, (str, os.PathLike)) and bool(str(v))))
MAPPING_OR_NULL = Rule("a mapping or null", lambda v: v is None or isinstance(v, dict))
KNOWN_SPLITS = (*SHIPPED_SPLITS, 100)

# Sections whose keys tinyasc knows: their keys are DEFAULTS' (plus EXTRA_KEYS), and any other key is
# refused with the list of known ones. A key without a rule here takes any value.
EXTRA_KEYS = {"trainer": ("num_nodes",)}
RULES: dict[str, dict[str, Rule]] = {
    "data": {"dir": PATH_OR_NULL, "duration": number(0, low_open=True), "val_fraction": number(0, 1, high_open=True),
             "cache_dir": PATH_OR_NULL,
             "cache_dtype": Rule("a float dtype such as 'float16' or 'float32'", _float_dtype),
             "num_workers": integer(0), "skip_bad_files": BOOLEAN, "synthetic_clips": integer(1, null=True),
             "synthetic_seed": integer(0), "on_device": BOOLEAN},  # data.split: _check_split
    "trainer": {"epochs": integer(1), "batch_size": integer(1), "eval_batch_size": integer(1),
                "devices": Rule("an integer >= 1 or 'auto'",
                                lambda v: (_is_int(v) and v >= 1) or (isinstance(v, str) and v == "auto")),
                "accelerator": TEXT, "strategy": TEXT,
                "precision": Rule("a precision such as '32-true', '16-mixed', 'bf16-mixed' or 32",
                                  lambda v: (isinstance(v, str) and bool(v.strip()))
                                  or (_is_int(v) and v in (16, 32, 64))),
                "deterministic": Rule("true, false or 'warn'",
                                      lambda v: isinstance(v, (bool, str)) and v in (True, False, "warn")),
                "log_every_n_steps": integer(1), "num_nodes": integer(1),
                "checkpoint_every_n_steps": integer(1, null=True),
                "loggers": Rule("a list of csv, tensorboard, wandb, mlflow",
                                lambda v: isinstance(v, list) and set(v) <= {"csv", "tensorboard", "wandb", "mlflow"}),
                "energy": Rule("true, false or a 3-letter country code such as 'AUT'",
                               lambda v: isinstance(v, bool) or (isinstance(v, str) and len(v) == 3 and v.isalpha()))},
    # The front end's keys are MelFrontEnd's arguments; its own checks (window names, deltas, win_length
    # <= n_fft) run on the whole section afterwards.
    "frontend": {"sample_rate": integer(1), "n_fft": integer(1), "win_length": integer(1, null=True),
                 "hop_length": integer(1), "n_mels": integer(1), "fmin": number(0),
                 "fmax": number(0, low_open=True, null=True), "window": TEXT, "mel_scale": TEXT,
                 "mel_norm": TEXT_OR_NULL, "log_offset": number(0, low_open=True), "deltas": integer(0, 2),
                 "delta_width": integer(1), "trim_frames": integer(0)},
    "model": {"name": TEXT_OR_NULL, "args": MAPPING_OR_NULL},
    "augment": {domain: Rule("a list of entries like {name: freq_mask, ...} or null",
                             lambda v: v is None or isinstance(v, list)) for domain in DOMAINS},
    # Named components: their arguments depend on the component, so any key is accepted; these few
    # mean the same for every loss, optimiser or schedule that takes them (null: the builder's default).
    "loss": {"label_smoothing": number(0, 1, high_open=True, null=True),
             "distill": Rule("a mapping {weight, temperature, teachers | logits} or null",
                             lambda v: v is None or v is False or isinstance(v, dict))},
    "optim": {"lr": number(0, low_open=True), "weight_decay": number(0, null=True), "momentum": number(0, null=True)},
    "compress": {"mode": Rule("qat, ptq, fp16 or null", lambda v: v is None or v in ("qat", "ptq", "fp16")),
                 "qat_epochs": integer(0), "qat_lr": number(0, low_open=True),
                 "qat_final_lr_ratio": number(0, 1), "qat_decay_epochs": number(0),
                 "calib_batches": integer(1), "prune_ratio": number(0, 0.95, low_open=True, null=True),
                 "prune_target_params": integer(1, null=True), "prune_steps": integer(1),
                 "prune_finetune_epochs": integer(0), "prune_lr": number(0, low_open=True, null=True),
                 "prune_filters_only": BOOLEAN},
    "schedule": {"warmup_steps": integer(0, null=True), "warmup_epochs": number(0, null=True),
                 "min_lr_ratio": number(0, 1, null=True)},
}
# per_split: {SPLIT: {section: {key: value}}}; any section but the split itself may change.
PER_SPLIT = Rule("a mapping {5: {trainer: {batch_size: 78}}, ...} of config sections per split (not data.split)",
                 lambda v: v is None or (isinstance(v, dict) and all(
                     isinstance(layer, dict) and set(layer) <= set(DEFAULTS) - {"seed"}
                     and all(isinstance(section, dict) for section in layer.values())
                     and "split" not in layer.get("data", {}) for layer in v.values())))
FREE_FORM = ("loss", "optim", "schedule")  # sections that take any further key
# Keys the code reads without a default: a config without them (a crafted checkpoint's) is refused.
REQUIRED = {"data": ("split", "duration", "val_fraction", "num_workers", "cache_dtype", "skip_bad_files"),
            "trainer": ("epochs", "batch_size", "eval_batch_size", "devices", "accelerator", "strategy", "precision",
                        "deterministic", "log_every_n_steps"),
            "frontend": ("sample_rate",), "model": ("name",)}


def known_keys(section: str) -> list[str]:
    """The keys a section whose keys tinyasc knows may hold (data, trainer, frontend, model, augment)."""
    if section == "frontend":
        return [k for k in inspect.signature(MelFrontEnd.__init__).parameters if k != "self"]
    if section == "augment":
        return list(DOMAINS)
    if section == "model":
        return ["name", "args"]
    return [*DEFAULTS[section], *(k for k in EXTRA_KEYS.get(section, ()) if k not in DEFAULTS[section])]


def _check_schema(config: dict, split_files: bool) -> None:
    top = [*DEFAULTS, "description", "per_split"]  # per_split: a recipe as written, before resolve applies it
    for key in config:
        if key not in top:
            raise _Invalid(str(key), f"unknown section; known: {', '.join(top)}")
    for key in DEFAULTS:
        if key not in config and key not in OPTIONAL_SECTIONS:
            raise _Invalid(key, f"missing section; a config has {', '.join(DEFAULTS)}")
    integer(0, 2 ** 32 - 1).check("seed", config["seed"])  # the range numpy's and Lightning's seeding accept
    TEXT_OR_NULL.check("description", config.get("description"))
    PER_SPLIT.check("per_split", config.get("per_split"))
    for section, rules in RULES.items():
        if section in OPTIONAL_SECTIONS and section not in config:
            continue
        values = config[section]
        if not isinstance(values, dict):
            raise _Invalid(section, f"expected a mapping of keys, got {_show(values)}")
        if section not in FREE_FORM:
            known = known_keys(section)
            for key in values:
                if key not in known:
                    raise _Invalid(f"{section}.{key}", f"unknown key; known: {', '.join(known)}")
        for key in REQUIRED.get(section, ()):
            if key not in values:
                raise _Invalid(f"{section}.{key}", "missing key")
        for key, rule in rules.items():
            if key in values:
                rule.check(f"{section}.{key}", values[key])
    _check_split(config["data"], split_files)
    try:  # what the front end itself refuses (window and scale names, deltas, win_length > n_fft)
        MelFrontEnd(**config["frontend"])
    except (TypeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _Invalid("frontend", reason) from None


def _check_split(data: dict, split_files: bool) -> None:
    """5, 10, 25, 50, 100 (also as text), or NAME of a split file ``split{NAME}.csv`` in data.dir."""
    split = data["split"]
    if _is_int(split) and split in KNOWN_SPLITS or isinstance(split, str) and split.strip() in map(str, KNOWN_SPLITS):
        return
    if (_is_int(split) and split >= 1) or (isinstance(split, str) and split.strip()):
        folder = Path(data["dir"]).expanduser() if data.get("dir") else None
        if not split_files or (folder is not None and not folder.is_dir()):  # the folder itself is checked later
            return
        if folder is not None and (folder / f"split{split}.csv").is_file():
            return
    raise _Invalid("data.split", f"expected one of {', '.join(map(str, KNOWN_SPLITS))} or the NAME of a split file "
                                 f"split{{NAME}}.csv in data.dir, got {_show(split)}")


def _sets(layer, keys: list[str]) -> bool:
    """Whether a config layer (a file, an override) sets the dotted key, or replaces what holds it."""
    node = layer
    for key in keys:
        if not isinstance(node, dict):
            return True
        if key not in node:
            return False
        node = node[key]
    return True


def save(config: dict, path: str | Path) -> None:
    """Write atomically, so an interrupted save never leaves half a config."""
    write_text(path, yaml.safe_dump(config, sort_keys=False))
