"""A network and the front end that feeds it, behind the predictor protocol (see ``tinyasc.modelfile``)."""
from __future__ import annotations

from functools import cached_property

import torch

from tinyasc.audio.features import MelFrontEnd
from tinyasc.complexity import summarise, torchinfo_counts
from tinyasc.complexity.stored import stored_sizes
from tinyasc.modelfile import format as artifact


class Predictor:
    """A network and the front end that feeds it: waveforms in, logits out."""

    def __init__(self, record: dict, source: str = "model"):
        hyper = record["hyper_parameters"]
        self.record, self.source = record, source
        self.config, self.classes, self.devices = hyper["config"], list(hyper["classes"]), list(hyper["devices"])
        self.precision = record["precision"]
        self.frontend = MelFrontEnd(**self.config["frontend"]).eval()
        self.network = artifact.build_network(record, source)
        self.device = torch.device("cpu")

    def to(self, device) -> "Predictor":
        """Run on ``device`` (int8 kernels are CPU-only: an int8 network stays on the CPU)."""
        self.device = torch.device(device) if self.precision != "int8" else torch.device("cpu")
        self.frontend.to(self.device)
        self.network.to(self.device)
        return self

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
            return self.frontend(waves.to(self.device))

    def logits_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.network(feats.to(self.device)).float()

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
