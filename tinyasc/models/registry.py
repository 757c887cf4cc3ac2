"""One registry of model families: ``create_model(name, **cfg)`` builds any of them.

Each entry keeps the report's own figures beside the builder, so ``tinyasc models`` can compare
what tinyasc measures with what the report printed. A model's input shape is not stored: it is
what the registered front end makes of a clip (``input_shape``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from tinyasc.audio.features import DCASE24_FRONTEND, MelFrontEnd
from tinyasc.base.errors import TinyAscError
from tinyasc.base.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    report: str = ""  # seed report id(s), e.g. "000" or "001, 004"
    title: str = ""
    report_params: float | None = None
    report_macs: float | None = None
    param_tolerance: float = 0.02  # relative; 0.05 where the report says "approx."
    mac_tolerance: float = 0.02
    # How the report counted, a name in tinyasc.complexity.conventions: "dcase" (torchinfo), "keras" (BN
    # statistics too), "bn_fused" (after folding BN into convs), "tflite" (bytes of the int8 TFLite model),
    # "tokens" (Linear per token, no attention matmuls).
    counting: str = "dcase"
    frontend: dict = field(default_factory=dict)  # front-end settings of the report (over DCASE24_FRONTEND)
    defaults: dict = field(default_factory=dict)  # constructor kwargs of the registered variant


# Filled by the family modules; importing this module first imports the package, whose __init__
# imports every family.
MODELS = Registry("model")


def register_model(name: str, **spec_kwargs):
    """Decorator: register a builder function ``fn(n_classes=10, in_channels=..., **cfg)``."""

    def wrap(fn):
        MODELS.register(name, ModelSpec(name=name, builder=fn, **spec_kwargs))
        return fn

    return wrap


def get_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def list_models() -> list[str]:
    return MODELS.names()


def frontend_config(name: str) -> dict:
    """The complete front-end settings the model's report used."""
    return {**DCASE24_FRONTEND, **get_spec(name).frontend}


def input_shape(name: str, duration: float = 1.0) -> tuple[int, int, int, int]:
    """(1, channels, mel bins, frames) of one clip through the model's registered front end."""
    return MelFrontEnd(**frontend_config(name)).output_shape(duration)


def create_model(name: str, n_classes: int = 10, **cfg) -> nn.Module:
    spec = get_spec(name)
    kwargs = {**spec.defaults, **cfg}
    if "in_channels" not in kwargs:  # the channels the model's own front end gives (deltas)
        kwargs["in_channels"] = MelFrontEnd(**frontend_config(name)).out_channels
    try:
        return spec.builder(n_classes=n_classes, **kwargs)
    except TypeError as exc:
        raise TinyAscError(f"model {name!r}: bad argument ({exc})") from None
