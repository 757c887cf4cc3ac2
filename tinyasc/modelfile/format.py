"""The one model-file format: tensors and plain data only, rebuilt from a recipe.

Lightning checkpoints of training runs and tinyasc model files (compressed networks, ensembles)
are both read here, into the same record.

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

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from tinyasc.audio.features import MelFrontEnd
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import atomic_path
from tinyasc.modelfile.checkpoint import check_hyper_parameters, load_checkpoint, resolve_checkpoint
from tinyasc.modelfile.int8 import int8_skeleton, quiet_ao
from tinyasc.modelfile.shapes import apply_shapes
from tinyasc.models import create_model

FORMAT = "tinyasc-model"
VERSION = 1


def network_record(network: nn.Module, hyper: dict, precision: str = "fp32", mode: str | None = None,
                   shapes: dict | None = None) -> dict:
    return {"kind": "network", "precision": precision, "mode": mode,
            "hyper_parameters": {"config": hyper["config"], "classes": list(hyper["classes"]),
                                 "devices": list(hyper["devices"])},
            "shapes": dict(shapes or {}), "state_dict": _plain_state(network.state_dict())}


def _plain_state(state) -> OrderedDict:
    """A state dict to save: tensors on the CPU; other values (an int8 Linear's packed-parameter dtype
    and (weight, bias) pair) kept as they are, with the ``_metadata`` load_state_dict needs. A packed
    int8 weight that FX keeps as a graph attribute (a ``torch.ScriptObject``, e.g. a Conv1d called as a
    linear layer) is stored unpacked (``_unpack``): the safe loader refuses script objects."""
    def plain(v):
        if isinstance(v, torch.Tensor):
            return v.detach().cpu()
        if isinstance(v, torch.ScriptObject):
            return _unpack(v)
        return type(v)(plain(x) for x in v) if isinstance(v, tuple) else v

    out = OrderedDict((k, plain(v)) for k, v in state.items())
    if hasattr(state, "_metadata"):
        out._metadata = state._metadata
    return out


PACKED = "tinyasc-packed"  # marks an unpacked int8 weight in a saved state dict
PREPACK = {"Conv2dPackedParamsBase": "conv2d_prepack"}  # what FX leaves as graph attributes in tinyasc's models


def _unpack(packed: torch.ScriptObject) -> tuple:
    """(PACKED, kind, weight, bias, geometry): plain tensors and ints that ``_repacked`` packs again.
    A conv1d's packed weight is a conv2d one (4-d weight, 2-d strides), so it repacks as conv2d."""
    kind = packed._type().qualified_name().rsplit(".", 1)[-1]
    if kind not in PREPACK or packed.transpose():
        raise TinyAscError(f"cannot store the int8 weight {kind}{' (transposed)' if kind in PREPACK else ''} "
                           f"in a model file (storable: {', '.join(PREPACK)})")
    weight, bias = packed.unpack()
    geometry = [list(packed.stride()), list(packed.padding()), list(packed.dilation()), int(packed.groups())]
    return PACKED, kind, weight, bias, geometry


def _repacked(model: nn.Module, state) -> OrderedDict:
    """A saved state dict ready for ``load_state_dict``: its unpacked int8 weights are packed again and
    set on ``model``'s graph attributes of the same name. torch's own load hook for them looks only at
    names starting with ``_packed_weight``, which FX never gives (it names them ``<layer>_packed_weight_<i>``)."""
    out = OrderedDict()
    for key, v in state.items():
        if isinstance(v, tuple) and len(v) == 5 and v[0] == PACKED and v[1] in PREPACK \
                and isinstance(getattr(model, key, None), torch.ScriptObject):
            _, kind, weight, bias, geometry = v
            setattr(model, key, getattr(torch.ops.quantized, PREPACK[kind])(weight, bias, *geometry))
        else:
            out[key] = v  # anything else is for load_state_dict to accept or refuse
    if hasattr(state, "_metadata"):
        out._metadata = state._metadata
    return out


def record_from_checkpoint(ckpt: dict) -> dict:
    """The float network of a Lightning checkpoint as a record."""
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return {"kind": "network", "precision": "fp32", "mode": None, "hyper_parameters": ckpt["hyper_parameters"],
            "shapes": {}, "state_dict": state}


def input_shape(config: dict) -> tuple[int, int, int, int]:
    """Shape of the network input for one clip, measured through the record's front end."""
    return MelFrontEnd(**config["frontend"]).output_shape(config["data"]["duration"])


def float_network(record: dict) -> nn.Module:
    """The record's architecture in float32 (pruned layers narrowed), weights not loaded."""
    hyper = record["hyper_parameters"]
    cfg, frontend_channels = hyper["config"], 1 + int(hyper["config"]["frontend"].get("deltas", 0))
    model = create_model(cfg["model"]["name"], n_classes=len(hyper["classes"]), in_channels=frontend_channels,
                         **(cfg["model"].get("args") or {}))
    return apply_shapes(model, record.get("shapes") or {})


def build_network(record: dict, source: str = "model") -> nn.Module:
    """The record's network with its weights, in eval mode: features -> float32 logits."""
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
            model.load_state_dict(_repacked(model, record["state_dict"]), strict=True)
    except (RuntimeError, TypeError) as exc:  # TypeError: a packed weight of the wrong types
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
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: a full disk is an OSError
        torch.save({"format": FORMAT, "version": VERSION, "model": record, "info": info or {}}, f)
    return Path(path)


def read(path: str | Path) -> dict | None:
    """The file's contents when it is a tinyasc model file, None when it is some other checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise TinyAscError(f"{path}: no such model file")
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


def read_model_file(path: str | Path) -> tuple[dict, dict, Path]:
    """(record, info, file) for a run folder, a Lightning checkpoint or a tinyasc model file."""
    path = Path(path)
    if not path.exists():
        raise TinyAscError(f"{path}: no such run folder or model file")
    if path.is_dir():
        path, _ = resolve_checkpoint(path)
    data = read(path)
    if data is not None:
        check_record(data["model"], str(path))
        return data["model"], data.get("info") or {}, path
    return record_from_checkpoint(load_checkpoint(path)), {}, path


def check_record(record, source: str) -> None:
    """A model file's record, checked before anything is rebuilt from it: its kind, and for every
    network in it the run's config, classes and devices (as a checkpoint's are)."""
    if not isinstance(record, dict) or record.get("kind") not in ("network", "ensemble"):
        kind = record.get("kind") if isinstance(record, dict) else type(record).__name__
        raise TinyAscError(f"{source}: unknown model kind {kind!r} (expected network or ensemble)")
    if record["kind"] == "ensemble":
        members = record.get("members")
        if not isinstance(members, list) or not members:
            raise TinyAscError(f"{source}: an ensemble record without a list of members")
        for i, member in enumerate(members):
            check_record(member, f"{source} member {i + 1}")
        return
    if not isinstance(record.get("hyper_parameters"), dict) or not isinstance(record.get("state_dict"), dict):
        raise TinyAscError(f"{source}: a network record needs hyper_parameters and a state_dict")
    check_hyper_parameters(record["hyper_parameters"], source)


def run_dir_of(path: str | Path) -> Path:
    """The run folder a model belongs to: outputs of compression steps go into it."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.parent.name in ("checkpoints", "compressed"):
        return path.parent.parent
    return path.parent
