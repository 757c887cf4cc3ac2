"""The DCASE 2025 Task 1 inference interface, backed by tinyasc model files.

The official harness (github.com/CPJKU/dcase2025_task1_inference: ``test_complexity.py``,
``complexity.py``, ``evaluate_submission.py``) imports the module ``<Package>.<Package>_<N>`` and
calls its four functions, which delegate to the ones here (``tinyasc package-2025`` writes it):

    model = load_model()                                   # no path: the packaged model
    inputs = load_inputs(file_paths, device_ids, model)    # one [1, C, F, T] tensor per file
    net = get_model_for_device(model, device_id)           # an nn.Module: features -> logits
    logits, class_order = predict(file_paths, device_ids, model_file_path=None, use_cuda=True)
    torch.save(model.model.state_dict(), ...)               # evaluate_submission keeps the weights

It measures ``net`` with ``torchinfo.summary(copy.deepcopy(net).float(), input_size=inputs[i].shape)``
(MACs: only leaf modules with ``weight``/``bias`` parameters count) and with the sum of
``p.numel() x bytes of p.dtype`` over ``net.parameters()``. It reads nothing else, so
``get_model_for_device`` returns each network in a form those two readings see as it is stored:

- fp16: the input is cast to the dtype of the network's parameters, not to a fixed fp16, because
  the harness counts on a float32 copy;
- int8: torch.ao kernels keep their weights packed, where neither reading sees them (0 MACs,
  0 bytes). Each int8 conv/linear becomes a leaf that runs the same kernel and holds its int8
  weight and float32 bias as parameters: bytes are then what tinyasc stores
  (``complexity.stored``), MACs torchinfo's count of the BN-folded network that runs (tinyasc's
  ``bn_fused`` convention). int8 kernels run on the CPU only, so an int8 network ignores moves.

2025 systems may use one model per recording device, with a general model for devices not seen
in training. ``model_file_path`` names one of:

- a model file or run folder: the general model, used for every device;
- a YAML file ``{general: PATH, devices: {a: PATH, s1: PATH, ...}}`` (paths relative to it);
- a folder holding ``general.pt`` (or ``general.ckpt``) and ``<device>.pt`` / ``<device>.ckpt``.

Without a path, ``$TINYASC_MODEL`` is used. All models must share one front end, since
``load_inputs`` computes the features once for all of them.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import fx, nn

from tinyasc.audio.io import load_audio
from tinyasc.base.errors import TinyAscError
from tinyasc.complexity import torchinfo_counts, verdict
from tinyasc.complexity.stored import is_int8_module
from tinyasc.modelfile import load_predictor
from tinyasc.modelfile.format import HalfNetwork

MODEL_SUFFIXES = (".pt", ".ckpt")
GENERAL = "general"
DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class DeviceModels(nn.Module):
    """What ``load_model`` returns: ``model`` holds the networks as loaded ("general" and one per
    device), ``predictors`` their front ends and classes."""

    def __init__(self, predictors: dict):
        super().__init__()
        self.predictors = predictors
        self.model = nn.ModuleDict({name: p.network_module() for name, p in predictors.items()})
        self.measurable: dict[str, nn.Module] = {}  # harness forms, made once per network

    @property
    def general(self):
        return self.predictors[GENERAL]

    @property
    def class_order(self) -> list[str]:
        return list(self.general.classes)

    def name_for(self, device_id: str) -> str:
        """The model that serves ``device_id``: its own, else the general one."""
        return device_id if device_id in self.predictors and device_id != GENERAL else GENERAL


class InputToParameterDtype(nn.Module):
    """An fp16 network behind a float32 interface that also runs when converted to float32."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        dtype = next((p.dtype for p in self.net.parameters() if p.is_floating_point()), x.dtype)
        return self.net(x.to(dtype)).float()


class Int8Layer(nn.Module):
    """An int8 conv/linear kernel as a leaf whose int8 weight and float32 bias are parameters."""

    def __init__(self, kernel: nn.Module):
        super().__init__()
        weight, bias = kernel._weight_bias()
        self.weight = nn.Parameter(weight.int_repr(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)
        # Not a child module: torchinfo counts MACs on leaf modules only.
        self.__dict__["kernel"] = kernel

    def forward(self, x):
        return self.kernel(x)


class Int8Conv(Int8Layer):
    """torchinfo charges a module whose class name holds "Conv" per output position."""


class Int8Linear(Int8Layer):
    pass


class CpuInt8Network(nn.Module):
    """An int8 network (CPU kernels only): moves and dtype changes leave it as it is; inputs go to
    the CPU and logits come back to the input's device."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def _apply(self, fn, recurse=True):
        return self

    def forward(self, x):
        return self.net(x.cpu()).float().to(x.device)


def measurable(network: nn.Module) -> nn.Module:
    """A copy of ``network`` that the harness measures as stored (see the module docstring) and that
    computes the same logits."""
    return _measurable(copy.deepcopy(network))


def _measurable(module: nn.Module) -> nn.Module:
    if isinstance(module, HalfNetwork):
        return InputToParameterDtype(_measurable(module.net))
    if is_int8_module(module) and hasattr(module, "_weight_bias"):
        return (Int8Conv if module._weight_bias()[0].dim() > 2 else Int8Linear)(module)
    for name, child in list(module.named_children()):
        new = _measurable(child)
        if new is not child:
            setattr(module, name, new)
    if isinstance(module, fx.GraphModule) and any(isinstance(m, Int8Layer) for m in module.modules()):
        return CpuInt8Network(module)
    return module


def model_paths(path: Path) -> tuple[Path, dict[str, Path]]:
    """(general model, {device: model}) named by a model file, run folder, YAML map or model folder."""
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TinyAscError(f"{path}: cannot read the device model map ({str(exc).splitlines()[0]})") from None
        if not isinstance(spec, dict) or GENERAL not in spec:
            raise TinyAscError(f"{path}: expected a mapping with 'general' (and optional 'devices')")
        devices = spec.get("devices") or {}
        if not isinstance(devices, dict):
            raise TinyAscError(f"{path}: 'devices' must map device ids to model files")
        return path.parent / spec[GENERAL], {str(d): path.parent / p for d, p in devices.items()}
    if path.is_dir() and not (path / "checkpoints").is_dir():
        found = {p.stem: p for p in sorted(path.iterdir()) if p.suffix in MODEL_SUFFIXES}
        if GENERAL not in found:
            raise TinyAscError(f"{path}: a device model folder needs general.pt or general.ckpt")
        general = found.pop(GENERAL)
        return general, found
    return path, {}


def load_model(model_file_path: str | None = None) -> DeviceModels:
    path = model_file_path or os.environ.get("TINYASC_MODEL")
    if not path:
        raise TinyAscError("no model_file_path given and $TINYASC_MODEL is not set")
    general_path, device_paths = model_paths(Path(path))
    bad = [d for d in device_paths if not DEVICE_ID.match(d) or d == GENERAL]
    if bad:
        raise TinyAscError(f"{path}: device id {bad[0]!r} is not a plain name (letters, digits, - and _)")
    general = load_predictor(general_path)
    devices = {d: load_predictor(p) for d, p in device_paths.items()}
    for device, model in devices.items():
        if model.classes != general.classes:
            raise TinyAscError(f"{device_paths[device]}: classes differ from the general model's")
        if model.frontends != general.frontends or model.duration != general.duration:
            raise TinyAscError(f"{device_paths[device]}: front end differs from the general model's; "
                               "load_inputs computes one set of features for all device models")
    return DeviceModels({GENERAL: general, **devices})


def load_inputs(file_paths: list[str], device_ids: list[str], model: DeviceModels,
                batch_size: int = 64) -> list[torch.Tensor]:
    """Log-mel features [1, C, F, T] per file on the CPU, in the order of ``file_paths`` (clips cut/padded)."""
    if len(file_paths) != len(device_ids):
        raise TinyAscError(f"{len(file_paths)} files but {len(device_ids)} device ids")
    general = model.general
    inputs = []
    for i in range(0, len(file_paths), batch_size):
        waves = np.stack([load_audio(p, general.sample_rate, general.duration) for p in file_paths[i:i + batch_size]])
        feats = general.features(torch.from_numpy(waves)).cpu()
        inputs += [f.unsqueeze(0).clone() for f in feats]
    return inputs


def get_model_for_device(model: DeviceModels, device_id: str) -> nn.Module:
    """The network for ``device_id`` (features -> logits): its own model, else the general one."""
    name = model.name_for(device_id)
    if name not in model.measurable:
        model.measurable[name] = measurable(model.model[name]).eval()
    return model.measurable[name]


def input_shape(model: DeviceModels) -> tuple:
    """The shape of one clip's ``load_inputs`` tensor, [1, C, F, T]."""
    general = model.general
    return tuple(general.features(torch.zeros(1, int(round(general.duration * general.sample_rate)))).shape)


def harness_counts(network: nn.Module, shape) -> dict:
    """MACs and parameter bytes of a ``get_model_for_device`` network as the harness reads them:
    torchinfo on a float32 copy, and numel x dtype size over its parameters."""
    _, macs = torchinfo_counts(copy.deepcopy(network).float(), shape)
    n_bytes = sum(p.numel() * p.element_size() for p in network.parameters())
    return {"macs": macs, "bytes": n_bytes, **verdict(n_bytes, macs)}


@torch.no_grad()
def predict(file_paths: list[str], device_ids: list[str], model_file_path: str | None = None,
            use_cuda: bool = True, batch_size: int = 64) -> tuple[list[torch.Tensor], list[str]]:
    """Logits [n_classes] per file (float32, CPU), in the order of ``file_paths``, and the class order.
    Files are batched by device and run by their model's predictor, as ``tinyasc evaluate`` runs it
    (the same logits as ``get_model_for_device``'s network, on tinyasc's fastest kernels);
    ``use_cuda`` runs on the GPU when there is one (int8 stays on the CPU)."""
    model = load_model(model_file_path)
    device = torch.device("cuda" if use_cuda and torch.cuda.is_available() else "cpu")
    for predictor in model.predictors.values():
        predictor.to(device)
    inputs = load_inputs(file_paths, device_ids, model, batch_size)
    outputs: list = [None] * len(inputs)
    by_model: dict[str, list[int]] = {}
    for i, device_id in enumerate(device_ids):
        by_model.setdefault(model.name_for(device_id), []).append(i)
    for name, indices in by_model.items():
        for j in range(0, len(indices), batch_size):
            chunk = indices[j:j + batch_size]
            logits = model.predictors[name].logits_from_features(torch.cat([inputs[i] for i in chunk])).float().cpu()
            for i, row in zip(chunk, logits):
                outputs[i] = row.clone()
    return outputs, model.class_order
