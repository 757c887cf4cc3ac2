"""System specs: which members a seed submission trains, how it compresses them, how it combines them.

A spec is a YAML file (the seed systems' ship in ``tinyasc/configs/systems``)::

    reproduces: Report 001 (NTU, DCASE 2024), MofleNet57 + CP-ResNet59 v2 ...   # one line of text
    reported: {bytes: 117000, macs: 29400000, fits: true}   # the report's numbers for the submission
    splits: [5, 10, 25, 50, 100]                            # default training splits
    members:                                                # trained in this order
      teacher: {recipe: 002_bc_resnet_c80}
      student: {recipe: 002_bc_resnet_c40_kd, set: {model: {args: {res_norm: false}}}, distill_from: [teacher]}
    compress: {student: [ptq]}                              # per member, in order: prune, then qat | ptq | fp16
    ensemble: {members: [a, b], weights: report001_v2}      # or weights: [0.5, 0.5], or fit: linear
    final: student                                          # a member, or ensemble: the submitted model

``set`` is a recipe fragment merged over the member's recipe; every compression step takes its
settings from the member's ``compress`` config section (the recipes hold their reports' values).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.compress.ensemble import REPORT_001_WEIGHTS

SPECS = Path(cfgmod.__file__).parent / "configs" / "systems"
TOP_KEYS = ("reproduces", "reported", "splits", "members", "compress", "ensemble", "final")
MEMBER_KEYS = ("recipe", "set", "distill_from")
PRUNE, QUANTIZE = ("prune",), ("qat", "ptq", "fp16")
WEIGHT_SETS = {f"report001_{name}": list(w) for name, w in REPORT_001_WEIGHTS.items()}
DCASE24_SPLITS = (5, 10, 25, 50, 100)
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class Member:
    name: str
    recipe: str
    overrides: dict = field(default_factory=dict)
    distill_from: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # compression steps, in order


@dataclass
class Spec:
    name: str
    path: Path
    reproduces: str
    reported: dict
    splits: list[int]
    members: dict[str, Member]
    ensemble: dict | None  # {members: [...], weights: [...] | None, fit: "linear" | None}
    final: str


def list_specs() -> dict[str, str]:
    """{name: what it reproduces} of the specs shipped with tinyasc."""
    texts = {path.stem: (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("reproduces", "")
             for path in sorted(SPECS.glob("*.yaml"))}
    return {name: " ".join(str(text).split()) for name, text in texts.items()}


def find_spec(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = SPECS / f"{path.name.removesuffix('.yaml')}.yaml"
    if path.parent == Path(".") and packaged.is_file():
        return packaged
    raise TinyAscError(f"{path}: no such system spec file or shipped spec; specs: {', '.join(list_specs())}")


def load_spec(name_or_path: str | Path) -> Spec:
    """Read and check a spec; every problem is one line naming the file."""
    path = find_spec(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise TinyAscError(f"{path}: not a readable YAML file ({type(exc).__name__})") from None

    def bad(problem: str):
        return TinyAscError(f"{path}: {problem}")

    if not isinstance(data, dict):
        raise bad(f"a system spec is a mapping with keys {', '.join(TOP_KEYS)}")
    unknown = sorted(set(map(str, data)) - set(TOP_KEYS))
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(TOP_KEYS)}")
    if not isinstance(data.get("reproduces"), str) or not data["reproduces"].strip():
        raise bad("reproduces: say which report and submission this system reproduces (a text)")
    reported = data.get("reported") or {}
    if not isinstance(reported, dict):
        raise bad(f"reported: expected a mapping of the report's numbers, got {reported!r:.60}")
    splits = data.get("splits", list(DCASE24_SPLITS))
    if not isinstance(splits, list) or not splits or not all(s in cfgmod.KNOWN_SPLITS for s in splits):
        raise bad(f"splits: expected a list of {', '.join(map(str, cfgmod.KNOWN_SPLITS))}, got {splits!r:.60}")
    members = _members(data.get("members"), bad)
    _compress_steps(data.get("compress") or {}, members, bad)
    ensemble = _ensemble(data.get("ensemble"), members, bad)
    final = data.get("final")
    choices = [*members, *(["ensemble"] if ensemble else [])]
    if final not in choices:
        raise bad(f"final: name the submitted model, one of {', '.join(choices)}; got {final!r}")
    return Spec(path.stem, path, " ".join(data["reproduces"].split()), reported, [int(s) for s in splits],
                members, ensemble, final)


def _members(entries, bad) -> dict[str, Member]:
    if not isinstance(entries, dict) or not entries:
        raise bad("members: expected a mapping {name: {recipe: RECIPE, ...}} of at least one member")
    members: dict[str, Member] = {}
    for name, entry in entries.items():
        if not isinstance(name, str) or not NAME.match(name) or name == "ensemble":
            raise bad(f"members: {name!r} is not a member name (lower-case letters, digits, _; not 'ensemble')")
        if not isinstance(entry, dict) or "recipe" not in entry:
            raise bad(f"members.{name}: expected a mapping with a recipe (a name from `tinyasc configs` or a file)")
        unknown = sorted(set(map(str, entry)) - set(MEMBER_KEYS))
        if unknown:
            raise bad(f"members.{name}: unknown key(s) {', '.join(unknown)}; known: {', '.join(MEMBER_KEYS)}")
        try:
            cfgmod.find_recipe(str(entry["recipe"]))
        except TinyAscError as exc:
            raise bad(f"members.{name}.recipe: {exc}") from None
        overrides = entry.get("set") or {}
        if not isinstance(overrides, dict) or not set(overrides) <= set(cfgmod.DEFAULTS):
            raise bad(f"members.{name}.set: expected a mapping of config sections ({', '.join(cfgmod.DEFAULTS)})")
        teachers = entry.get("distill_from") or []
        if not isinstance(teachers, list) or not all(t in members for t in teachers):
            raise bad(f"members.{name}.distill_from: name members listed before it (teachers train first); "
                      f"got {teachers!r}")
        members[name] = Member(name, str(entry["recipe"]), overrides, list(teachers))
    return members


def _compress_steps(entries, members: dict[str, Member], bad) -> None:
    if not isinstance(entries, dict):
        raise bad("compress: expected a mapping {member: [steps]}")
    for name, steps in entries.items():
        if name not in members:
            raise bad(f"compress: {name!r} is not a member ({', '.join(members)})")
        allowed = (*PRUNE, *QUANTIZE)
        if not isinstance(steps, list) or not all(s in allowed for s in steps):
            raise bad(f"compress.{name}: expected a list of steps from {', '.join(allowed)}, got {steps!r:.60}")
        quantize = [s for s in steps if s in QUANTIZE]
        if len(quantize) > 1 or steps.count("prune") > 1 or (quantize and steps[-1] not in QUANTIZE):
            raise bad(f"compress.{name}: at most one prune, then at most one of qat, ptq, fp16; got {steps}")
        members[name].steps = list(steps)


def _ensemble(entry, members: dict[str, Member], bad) -> dict | None:
    if entry is None:
        return None
    if not isinstance(entry, dict) or not set(entry) <= {"members", "weights", "fit"}:
        raise bad("ensemble: expected {members: [...], weights: [...] | fit: linear}")
    names = entry.get("members")
    if not isinstance(names, list) or len(names) < 2 or not all(n in members for n in names):
        raise bad(f"ensemble.members: name at least two members ({', '.join(members)}); got {names!r:.60}")
    weights, fit = entry.get("weights"), entry.get("fit")
    if fit not in (None, "linear") or (fit and weights is not None):
        raise bad("ensemble: give weights, or fit: linear (report 003's fitted weights and bias), not both")
    if isinstance(weights, str):
        if weights not in WEIGHT_SETS:
            raise bad(f"ensemble.weights: {weights!r} is not a known weight set ({', '.join(WEIGHT_SETS)})")
        weights = WEIGHT_SETS[weights]
    if weights is not None and (not isinstance(weights, list) or len(weights) != len(names)
                                or not all(isinstance(w, (int, float)) and w >= 0 for w in weights)):
        raise bad(f"ensemble.weights: expected {len(names)} non-negative numbers, got {weights!r:.60}")
    return {"members": names, "weights": weights, "fit": fit}
