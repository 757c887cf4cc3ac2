"""A system run as a resumable pipeline of stages, one folder each: ``<out>/split<S>/<stage>/``.

Stages of a split, in order: ``train-<member>`` (a run folder, as ``tinyasc train`` makes), then each
member's compression steps ``prune-<member>``, ``<qat|ptq|fp16>-<member>`` (a model file each), then
``ensemble-float`` (the members before compression, when they are compressed) and ``ensemble``.

A stage writes ``started.json`` (its key) first and ``stage.json`` (key, output, scores) last, both
atomically. Its key is a hash of what the stage does (kind, the member's resolved config, ensemble
weights) and of the contents of its input files, so a rerun keeps every stage whose ``stage.json``
holds the same key and redoes the rest; a half-written stage is cleared and redone, except a
training run with ``checkpoints/last.ckpt`` under the same key, which resumes from it. Every stage
seeds the random generators from its member's seed, so a stage redone in a new process gives what
it would have given in an unbroken run.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import lightning as L

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import check_output_dir, write_json
from tinyasc.compress.ensemble import build_ensemble
from tinyasc.compress.prune import prune_model
from tinyasc.compress.quantize import quantize_model
from tinyasc.experiment import train
from tinyasc.modelfile.checkpoint import resolve_checkpoint
from tinyasc.systems.spec import QUANTIZE, Spec

COMPLEXITY_KEYS = ("params", "macs", "bytes", "precision", "fits_bytes", "fits_macs", "fits")


@dataclass
class Stage:
    name: str  # also its folder
    kind: str  # train, prune, qat, ptq, fp16, ensemble
    member: str | None = None
    inputs: list[str] = field(default_factory=list)  # stages whose outputs it reads
    label: str = ""  # the row of the results table


def plan(spec: Spec) -> list[Stage]:
    """The stages of one split, each after the stages it reads."""
    stages, last = [], {}
    for m in spec.members.values():
        train_stage = Stage(f"train-{m.name}", "train", m.name, [f"train-{t}" for t in m.distill_from],
                            f"{m.name} (float)")
        stages.append(train_stage)
        last[m.name] = train_stage.name
        for step in m.steps:
            what = "pruned" if step == "prune" else step
            stage = Stage(f"{step}-{m.name}", step, m.name, [last[m.name]],
                          f"{m.name} ({'pruned + ' if 'prune' in m.steps and step != 'prune' else ''}{what})")
            stages.append(stage)
            last[m.name] = stage.name
    if spec.ensemble:
        names = spec.ensemble["members"]
        if any(spec.members[n].steps for n in names):  # the reports give the ensemble before compression too
            stages.append(Stage("ensemble-float", "ensemble", None, [f"train-{n}" for n in names], "ensemble (float)"))
        stages.append(Stage("ensemble", "ensemble", None, [last[n] for n in names], "ensemble"))
    return stages


def final_stage(spec: Spec, stages: list[Stage]) -> Stage:
    if spec.final == "ensemble":
        return stages[-1]
    return [s for s in stages if s.member == spec.final][-1]


def member_configs(spec: Spec, split: int, data_dir=None, overrides: list[dict] = (),
                   member_overrides: dict[str, list[dict]] | None = None, epochs: int | None = None) -> dict:
    """Every member's resolved config for a split: its recipe (with the recipe's per_split settings),
    the spec's ``set``, the data folder, --epochs (training, QAT and each pruning fine-tune), --set."""
    configs = {}
    for m in spec.members.values():
        layers = [m.overrides, {"data": {"split": split}}]
        if data_dir is not None:
            layers.append({"data": {"dir": str(Path(data_dir).expanduser().resolve())}})
        if epochs is not None:
            layers.append({"trainer": {"epochs": epochs},
                           "compress": {"qat_epochs": epochs, "prune_finetune_epochs": epochs}})
        layers += [*overrides, *(member_overrides or {}).get(m.name, [])]
        try:
            configs[m.name] = cfgmod.resolve(m.recipe, layers)
        except TinyAscError as exc:
            raise TinyAscError(f"{spec.path}: member {m.name}, split {split}: {exc}") from None
        for domain, entries in configs[m.name]["augment"].items():  # e.g. DIR's responses, read at training time
            for entry in entries or []:
                if entry.get("folder") and not Path(entry["folder"]).expanduser().is_dir():
                    raise TinyAscError(f"{spec.path}: member {m.name}: augment.{domain} {entry['name']}: folder "
                                       f"{entry['folder']} does not exist (relative to {Path.cwd()})")
    return configs


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stage_key(stage: Stage, config: dict | None, inputs: list[Path], extra: dict) -> str:
    """What a stage's result depends on: its kind, config and settings, and its input files' contents
    (not their paths, so a system folder can move)."""
    text = json.dumps({"kind": stage.kind, "config": config, "extra": extra,
                       "inputs": [file_hash(p) for p in inputs]}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def scores(result: dict) -> dict:
    """The numbers of a stage that the results table shows."""
    return {"macro_accuracy": result["macro_accuracy"], "accuracy": result["accuracy"], "log_loss": result["log_loss"],
            "complexity": {k: result["complexity"][k] for k in COMPLEXITY_KEYS}}


class SystemRun:
    """One spec run into one system folder."""

    def __init__(self, spec: Spec, out: Path, configs: dict[int, dict], progress: bool = True,
                 log: Callable[[str], None] = print):
        self.spec, self.out, self.configs, self.progress, self.log = spec, Path(out), configs, progress, log
        self.stages = plan(spec)

    def run(self) -> dict:
        """Every stage of every split; returns {split: {stage: stage.json}}."""
        check_output_dir(self.out)
        done: dict = {}
        for split, configs in self.configs.items():
            done[split] = {}
            for i, stage in enumerate(self.stages):
                self.log(f"[split {split}] {i + 1}/{len(self.stages)} {stage.name}: ")
                done[split][stage.name] = self.run_stage(split, stage, configs, done[split])
        return done

    def run_stage(self, split: int, stage: Stage, configs: dict, done: dict) -> dict:
        folder = self.out / f"split{split}" / stage.name
        inputs = [self.out / done[name]["output"] for name in stage.inputs]
        config = configs.get(stage.member)
        extra = {} if stage.kind != "ensemble" else {k: v for k, v in self.spec.ensemble.items() if k != "members"}
        key = stage_key(stage, config, inputs, extra)
        marker = read_json(folder / "stage.json")
        if marker and marker.get("key") == key and (self.out / marker.get("output", "")).is_file():
            self.log(f"    kept (inputs unchanged): macro accuracy {marker['macro_accuracy']:.2%}")
            return marker
        started = read_json(folder / "started.json") or {}
        resume = (stage.kind == "train" and started.get("key") == key
                  and (folder / "checkpoints" / "last.ckpt").is_file() and not (folder / "stage.json").exists())
        if not resume and folder.exists():
            shutil.rmtree(folder)  # a half-written or outdated stage starts again from nothing
        write_json(folder / "started.json", {"key": key})
        start = time.time()
        output, result = self.compute(stage, folder, config, inputs, resume)
        marker = {"key": key, "stage": stage.name, "label": stage.label, "output": str(output.relative_to(self.out)),
                  **scores(result), "seconds": round(time.time() - start, 1)}
        write_json(folder / "stage.json", marker)  # last: the stage is complete
        self.log(f"    {'resumed and ' if resume else ''}done in {marker['seconds']:.0f} s: macro accuracy "
                 f"{marker['macro_accuracy']:.2%}, log loss {marker['log_loss']:.3f}")
        return marker

    def compute(self, stage: Stage, folder: Path, config: dict | None, inputs: list[Path], resume: bool):
        if stage.kind == "train":
            if stage.inputs:  # distillation from earlier members' trained models
                config = cfgmod.merge(config, {"loss": {"distill": {"teachers": [str(p) for p in inputs]}}})
            result = train(config, folder, resume=resume, progress=self.progress)
            return resolve_checkpoint(folder)[0], result
        L.seed_everything(config["seed"] if config else 0, workers=True, verbose=False)
        out = folder / "model.pt"
        if stage.kind == "prune":
            return out, prune_model(inputs[0], out=out, progress=self.progress)["compressed"]
        if stage.kind in QUANTIZE:
            return out, quantize_model(inputs[0], stage.kind, out=out, progress=self.progress)["compressed"]
        e = self.spec.ensemble
        info = build_ensemble([str(p) for p in inputs], e["weights"], e["fit"] == "linear", out=out,
                              progress=self.progress)
        return out, info["results"]["ensemble"]
