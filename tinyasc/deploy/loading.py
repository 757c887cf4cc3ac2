"""One loader for every kind of model file: run folder, Lightning checkpoint, compressed model, ensemble.

``load_predictor(path)`` returns an object with the same face whatever the file holds:
``classes``, ``devices``, ``config``, ``sample_rate``, ``duration``, ``logits(waves)`` (float32
[B, classes] for float32 waveforms [B, samples]), ``complexity()`` and ``record`` (what
``tinyasc.compress.artifact.save`` writes).
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import torch

from tinyasc.audio.features import MelFrontEnd
from tinyasc.complexity import MAX_BYTES, MAX_MACS, torchinfo_counts
from tinyasc.compress import artifact
from tinyasc.compress.size import stored_sizes
from tinyasc.errors import TinyAscError


class Predictor:
    """A network and the front end that feeds it: waveforms in, logits out (CPU)."""

    def __init__(self, record: dict, source: str = "model"):
        hyper = record["hyper_parameters"]
        self.record, self.source = record, source
        self.config, self.classes, self.devices = hyper["config"], list(hyper["classes"]), list(hyper["devices"])
        self.precision = record["precision"]
        self.frontend = MelFrontEnd(**self.config["frontend"]).eval()
        self.network = artifact.build_network(record, source)
        if self.precision == "fp32":  # NHWC convolutions run faster on CPU (oneDNN)
            self.network = self.network.to(memory_format=torch.channels_last)

    @property
    def sample_rate(self) -> int:
        return int(self.config["frontend"]["sample_rate"])

    @property
    def duration(self) -> float:
        return float(self.config["data"]["duration"])

    @property
    def frontends(self) -> list[dict]:
        return [self.config["frontend"]]

    def features(self, waves: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.frontend(waves)

    def logits_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.precision == "fp32":
                feats = feats.contiguous(memory_format=torch.channels_last)
            return self.network(feats).float()

    def logits(self, waves: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(waves))

    def network_module(self) -> torch.nn.Module:
        """The part DCASE counts: log-mel features in, logits out."""
        return self.network

    @cached_property
    def input_shape(self) -> tuple:
        return artifact.input_shape(self.config)

    def complexity(self) -> dict:
        """Stored parameters and bytes by dtype of this network; MACs of its float architecture
        counted the DCASE way (an int8 network does the same multiply-adds in int8)."""
        sizes = stored_sizes(self.network)
        _, macs = torchinfo_counts(artifact.float_network(self.record), self.input_shape)
        return summarise(sizes["params"], macs, sizes["bytes"], sizes["by_dtype"], sizes["qparams"],
                         self.precision, [self.input_shape])

    def describe(self) -> str:
        shapes = " pruned" if self.record.get("shapes") else ""
        return f"{self.config['model']['name']}{shapes} ({self.precision})"


def summarise(params: int, macs: int, n_bytes: int, by_dtype: dict, qparams: int, precision: str,
              input_shapes: list) -> dict:
    fits_bytes, fits_macs = n_bytes <= MAX_BYTES, macs <= MAX_MACS
    return {"params": int(params), "macs": int(macs), "bytes": int(n_bytes), "bytes_by_dtype": by_dtype,
            "qparams": int(qparams), "precision": precision, "fits_bytes": fits_bytes, "fits_macs": fits_macs,
            "fits": fits_bytes and fits_macs, "input_shapes": [list(s) for s in input_shapes]}


def read_model_file(path: str | Path) -> tuple[dict, dict, Path]:
    """(record, info, file) for a run folder, a Lightning checkpoint or a tinyasc model file."""
    from tinyasc.evaluation.evaluate import resolve_checkpoint
    from tinyasc.training.checkpoints import load_checkpoint

    path = Path(path)
    if path.is_dir():
        path, _ = resolve_checkpoint(path)
    data = artifact.read(path)
    if data is not None:
        return data["model"], data.get("info") or {}, path
    return artifact.record_from_checkpoint(load_checkpoint(path)), {}, path


def predictor_from_record(record: dict, source: str = "model"):
    if record.get("kind") == "ensemble":
        from tinyasc.deploy.ensemble import Ensemble

        return Ensemble.from_record(record, source)
    if record.get("kind") != "network":
        raise TinyAscError(f"{source}: unknown model kind {record.get('kind')!r}")
    return Predictor(record, source)


def load_predictor(path: str | Path):
    record, _, file = read_model_file(path)
    return predictor_from_record(record, str(file))


def run_dir_of(path: str | Path) -> Path:
    """The run folder a model belongs to: outputs of compression steps go into it."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.parent.name in ("checkpoints", "compressed"):
        return path.parent.parent
    return path.parent
