"""Model files: the one format, the one safe loader, and one way from any file to a predictor.

A model file is a training run's checkpoint (``checkpoints/best.ckpt``, ``last.ckpt``) or a tinyasc
model file (a compressed network or an ensemble, see ``format``). ``load_predictor`` turns any of
them, or a run folder, into an object with the ``ScenePredictor`` face, so evaluation, distillation
teachers, compression, export, prediction and submission all take every kind of model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from tinyasc.base.errors import TinyAscError
from tinyasc.modelfile.ensemble import Ensemble
from tinyasc.modelfile.format import read_model_file, run_dir_of
from tinyasc.modelfile.predictor import Predictor


class ScenePredictor(Protocol):
    """What every loaded model offers (a network, an ensemble, an ONNX session)."""

    classes: list[str]
    devices: list[str]  # device names of the training data
    config: dict  # the training run's resolved config
    record: dict  # what ``format.save`` writes
    source: str  # where it was loaded from, for messages
    precision: str

    @property
    def sample_rate(self) -> int: ...

    @property
    def duration(self) -> float: ...  # seconds of audio per clip

    @property
    def frontends(self) -> list[dict]: ...  # the distinct front-end configs its networks read

    def logits(self, waves: torch.Tensor) -> torch.Tensor: ...  # [B, samples] float32 -> [B, classes] float32

    def complexity(self) -> dict: ...  # params, MACs, bytes (by dtype), verdict

    def describe(self) -> str: ...


def predictor_from_record(record: dict, source: str = "model") -> ScenePredictor:
    if record.get("kind") == "ensemble":
        return Ensemble.from_record(record, predictor_from_record, source)
    if record.get("kind") != "network":
        raise TinyAscError(f"{source}: unknown model kind {record.get('kind')!r}")
    return Predictor(record, source)


def load_predictor(path: str | Path) -> ScenePredictor:
    """The predictor of a run folder, a checkpoint or a tinyasc model file."""
    record, _, file = read_model_file(path)
    return predictor_from_record(record, str(file))


__all__ = ["Ensemble", "Predictor", "ScenePredictor", "load_predictor", "predictor_from_record", "read_model_file",
           "run_dir_of"]
