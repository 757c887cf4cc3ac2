"""A network and the front end that feeds it, behind the predictor protocol (see ``tinyasc.modelfile``)."""
from __future__ import annotations

import copy
from functools import cached_property

import torch
from torch import nn

from tinyasc.audio.features import MelFrontEnd
from tinyasc.complexity import summarise, torchinfo_counts
from tinyasc.complexity.stored import stored_sizes
from tinyasc.modelfile import format as artifact

CACHE_SAMPLES = 16 * 32000  # audio per CPU thread computed at once (see ``Predictor.logits``)


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
        self.runner = self.fastest_network()

    def to(self, device) -> "Predictor":
        """Run on ``device`` (int8 kernels are CPU-only: an int8 network stays on the CPU)."""
        self.device = torch.device(device) if self.precision != "int8" else torch.device("cpu")
        self.frontend.to(self.device)
        self.network.to(self.device)
        self.runner = self.fastest_network()
        return self

    def fastest_network(self) -> nn.Module:
        """What computes the logits. Float networks run channels-last (about 1.2x NCHW on x86 CPUs,
        logits equal to NCHW's within float rounding). A CPU has no fast fp16 kernels (10x slower than
        fp32), so there an fp16 file runs in float32 from its fp16-rounded weights. int8 runs as it is:
        the x86 kernels take NCHW as fast as channels-last (benchmarks/README.md)."""
        if self.precision == "int8":
            return self.network
        network = self.network
        if self.precision == "fp16" and self.device.type == "cpu":
            network = copy.deepcopy(network.net).float()
        return network.to(memory_format=torch.channels_last)

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
            feats = feats.to(self.device)
            if self.precision != "int8":
                feats = feats.contiguous(memory_format=torch.channels_last)
            return self.runner(feats).float()

    def logits(self, waves: torch.Tensor) -> torch.Tensor:
        # On a CPU, small chunks keep the STFT's and the network's intermediates in the caches: one
        # thread ran the DCASE 2024 baseline's front end + network in 2.2 ms per clip in chunks of 16
        # one-second clips, 7.3 ms in batches of 256 (benchmarks/README.md, prediction).
        chunk = max(1, CACHE_SAMPLES * torch.get_num_threads() // max(1, waves.shape[-1]))
        if self.device.type != "cpu" or waves.dim() != 2 or len(waves) <= chunk:
            return self.logits_from_features(self.features(waves))
        return torch.cat([self.logits_from_features(self.features(part)) for part in waves.split(chunk)])

    def network_module(self) -> torch.nn.Module:
        """The part DCASE counts: log-mel features in, logits out."""
        return self.network

    @cached_property
    def input_shape(self) -> tuple:
        return artifact.input_shape(self.config)

    def complexity(self, duration: float | None = None) -> dict:
        """Stored parameters and bytes by dtype of this network; MACs of its float architecture
        counted the DCASE way (an int8 network does the same multiply-adds in int8) on the features
        of one clip of ``duration`` seconds (default: the clips it was trained on)."""
        sizes = stored_sizes(self.network)
        shape = self.input_shape if duration in (None, self.duration) else self.frontend.output_shape(duration)
        _, macs = torchinfo_counts(artifact.float_network(self.record), shape)
        return summarise(sizes["params"], macs, sizes["bytes"], sizes["by_dtype"], sizes["qparams"],
                         self.precision, [tuple(shape)])

    def describe(self) -> str:
        shapes = " pruned" if self.record.get("shapes") else ""
        return f"{self.config['model']['name']}{shapes} ({self.precision})"
