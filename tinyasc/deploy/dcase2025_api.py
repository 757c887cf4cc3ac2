"""The DCASE 2025 Task 1 inference interface, backed by tinyasc model files.

2025 systems may use one model per recording device, with a general model for devices not seen
in training. ``model_file_path`` names one of:

- a model file or run folder: the general model, used for every device;
- a YAML file ``{general: PATH, devices: {a: PATH, s1: PATH, ...}}`` (paths relative to it);
- a folder holding ``general.pt`` (or ``general.ckpt``) and ``<device>.pt`` / ``<device>.ckpt``.

Without a path, ``$TINYASC_MODEL`` is used. All models must share one front end, since
``load_inputs`` computes the features once for all of them.

    logits, class_order = predict(file_paths, device_ids, model_file_path)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from tinyasc.audio.io import load_audio
from tinyasc.base.errors import TinyAscError
from tinyasc.modelfile import load_predictor

MODEL_SUFFIXES = (".pt", ".ckpt")


@dataclass
class DeviceModels:
    general: object
    devices: dict = field(default_factory=dict)

    @property
    def class_order(self) -> list[str]:
        return list(self.general.classes)


def _model_paths(path: Path) -> tuple[Path, dict[str, Path]]:
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TinyAscError(f"{path}: cannot read the device model map ({str(exc).splitlines()[0]})") from None
        if not isinstance(spec, dict) or "general" not in spec:
            raise TinyAscError(f"{path}: expected a mapping with 'general' (and optional 'devices')")
        devices = spec.get("devices") or {}
        return path.parent / spec["general"], {str(d): path.parent / p for d, p in devices.items()}
    if path.is_dir() and not (path / "checkpoints").is_dir():
        found = {p.stem: p for p in sorted(path.iterdir()) if p.suffix in MODEL_SUFFIXES}
        if "general" not in found:
            raise TinyAscError(f"{path}: a device model folder needs general.pt or general.ckpt")
        general = found.pop("general")
        return general, found
    return path, {}


def load_model(model_file_path: str | None = None) -> DeviceModels:
    path = model_file_path or os.environ.get("TINYASC_MODEL")
    if not path:
        raise TinyAscError("no model_file_path given and $TINYASC_MODEL is not set")
    general_path, device_paths = _model_paths(Path(path))
    models = DeviceModels(load_predictor(general_path), {d: load_predictor(p) for d, p in device_paths.items()})
    for device, model in models.devices.items():
        if model.classes != models.general.classes:
            raise TinyAscError(f"{device_paths[device]}: classes differ from the general model's")
        if model.frontends != models.general.frontends or model.duration != models.general.duration:
            raise TinyAscError(f"{device_paths[device]}: front end differs from the general model's; "
                               "load_inputs computes one set of features for all device models")
    return models


def load_inputs(file_paths: list[str], device_ids: list[str], model: DeviceModels,
                batch_size: int = 64) -> list[torch.Tensor]:
    """Log-mel features [1, C, F, T] per file, in the order of ``file_paths`` (clips cut/padded)."""
    if len(file_paths) != len(device_ids):
        raise TinyAscError(f"{len(file_paths)} files but {len(device_ids)} device ids")
    general = model.general
    inputs = []
    for i in range(0, len(file_paths), batch_size):
        waves = np.stack([load_audio(p, general.sample_rate, general.duration) for p in file_paths[i:i + batch_size]])
        feats = general.features(torch.from_numpy(waves))
        inputs += [f.unsqueeze(0).clone() for f in feats]
    return inputs


def get_model_for_device(model: DeviceModels, device_id: str) -> nn.Module:
    """The network for ``device_id`` (features -> logits): its own model, else the general one."""
    return model.devices.get(device_id, model.general).network_module()


@torch.no_grad()
def predict(file_paths: list[str], device_ids: list[str], model_file_path: str | None = None,
            batch_size: int = 64) -> tuple[list[torch.Tensor], list[str]]:
    """Logits [n_classes] per file, grouped by device for batching, and the class order."""
    model = load_model(model_file_path)
    inputs = load_inputs(file_paths, device_ids, model, batch_size)
    outputs: list = [None] * len(inputs)
    by_device: dict[str, list[int]] = {}
    for i, device in enumerate(device_ids):
        by_device.setdefault(device, []).append(i)
    for device, indices in by_device.items():
        network = get_model_for_device(model, device)
        for j in range(0, len(indices), batch_size):
            chunk = indices[j:j + batch_size]
            logits = network(torch.cat([inputs[i] for i in chunk])).float()
            for i, row in zip(chunk, logits):
                outputs[i] = row.clone()
    return outputs, model.class_order
