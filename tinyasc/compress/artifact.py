"""Compressed models on disk: tensors and plain data only, rebuilt from a recipe.

A file holds ``{"format": "tinyasc-model", "version": 1, "model": record, "info": {...}}`` and
is read with ``torch.load(weights_only=True)``, so loading never runs pickled code. A network
record is its rebuild recipe plus weights:

    {"kind": "network", "precision": "fp32" | "fp16" | "int8", "mode": "qat" | "ptq" | None,
     "hyper_parameters": {"config", "classes", "devices"},   # the training run's, as in a checkpoint
     "shapes": {layer: {"in", "out", "groups"}},              # layers narrowed by pruning
     "state_dict": {...}}                                      # of the network alone

Rebuilding runs the same code that made it: the registry builds the float network from the config,
``apply_shapes`` narrows pruned layers, an int8 one is converted to the same FX graph, then the
state dict is loaded strictly. An ensemble record lists member records with its weights and bias.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from tinyasc.compress.channels import apply_shapes
from tinyasc.errors import TinyAscError

FORMAT = "tinyasc-model"
VERSION = 1


def network_record(network: nn.Module, hyper: dict, precision: str = "fp32", mode: str | None = None,
                   shapes: dict | None = None) -> dict:
    return {"kind": "network", "precision": precision, "mode": mode,
            "hyper_parameters": {"config": hyper["config"], "classes": list(hyper["classes"]),
                                 "devices": list(hyper["devices"])},
            "shapes": dict(shapes or {}), "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()}}


def record_from_checkpoint(ckpt: dict) -> dict:
    """The float network of a Lightning checkpoint as a record."""
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return {"kind": "network", "precision": "fp32", "mode": None, "hyper_parameters": ckpt["hyper_parameters"],
            "shapes": {}, "state_dict": state}


def input_shape(config: dict) -> tuple[int, int, int, int]:
    """Shape of the network input for one clip, measured through the record's front end."""
    from tinyasc.audio.features import MelFrontEnd
    from tinyasc.complexity import model_input_shape

    return model_input_shape(MelFrontEnd(**config["frontend"]), config["data"]["duration"])


def float_network(record: dict) -> nn.Module:
    """The record's architecture in float32 (pruned layers narrowed), weights not loaded."""
    from tinyasc.models import create_model

    hyper = record["hyper_parameters"]
    cfg, frontend_channels = hyper["config"], 1 + int(hyper["config"]["frontend"].get("deltas", 0))
    model = create_model(cfg["model"]["name"], n_classes=len(hyper["classes"]), in_channels=frontend_channels,
                         **(cfg["model"].get("args") or {}))
    return apply_shapes(model, record.get("shapes") or {})


def build_network(record: dict, source: str = "model") -> nn.Module:
    """The record's network with its weights, in eval mode: features -> float32 logits."""
    from tinyasc.compress.quantize import int8_skeleton, quiet_ao

    precision = record["precision"]
    model = float_network(record).eval()
    if precision == "int8":
        model = int8_skeleton(model, torch.zeros(input_shape(record["hyper_parameters"]["config"])))
    elif precision == "fp16":
        model = model.half()
    elif precision != "fp32":
        raise TinyAscError(f"{source}: unknown precision {precision!r} (expected fp32, fp16 or int8)")
    try:
        with quiet_ao():
            model.load_state_dict(record["state_dict"], strict=True)
    except RuntimeError as exc:
        raise TinyAscError(f"{source}: weights do not fit the network its recipe describes "
                           f"({str(exc).splitlines()[0][:160]})") from None
    return (HalfNetwork(model) if precision == "fp16" else model).eval()


class HalfNetwork(nn.Module):
    """An fp16 network behind a float32 interface: features are cast in, logits cast out."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.half()).float()


def save(path: str | Path, record: dict, info: dict | None = None) -> Path:
    """Write atomically (temporary sibling, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"format": FORMAT, "version": VERSION, "model": record, "info": info or {}}, tmp)
    os.replace(tmp, path)
    return path


def read(path: str | Path) -> dict | None:
    """The file's contents when it is a tinyasc model file, None when it is some other checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise TinyAscError(f"{path}: no such model file")
    from tinyasc.compress.quantize import quiet_ao

    try:
        with quiet_ao():  # int8 tensors are rebuilt through torch's deprecated typed storages
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it holds objects other than tensors and plain data, and tinyasc does not unpickle code"
        raise TinyAscError(f"{path}: not a loadable model file ({reason})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    if data.get("version") != VERSION:
        raise TinyAscError(f"{path}: tinyasc model file version {data.get('version')!r}; this tinyasc reads {VERSION}")
    return data
