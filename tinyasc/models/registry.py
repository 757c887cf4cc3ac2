"""One registry of model families: ``create_model(name, **cfg)`` builds any of them.

Each entry keeps the report's own figures beside the builder, so ``tinyasc models`` can compare
what tinyasc measures with what the report printed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from tinyasc.errors import TinyAscError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # (channels, mel bins, frames) of a 1 s clip
    report: str = ""  # seed report id(s), e.g. "000" or "001, 004"
    title: str = ""
    report_params: float | None = None
    report_macs: float | None = None
    param_tolerance: float = 0.02  # relative; 0.05 where the report says "approx."
    mac_tolerance: float = 0.02
    # How the report counted: "dcase" (torchinfo), "keras" (BN statistics too), "bn_fused" (after folding BN
    # into convs), "tflite" (bytes of the int8 TFLite model), "tokens" (Linear per token, no attention matmuls).
    counting: str = "dcase"
    # (model, input_shape) -> (params, macs) counted the way the report counted; None: the DCASE way.
    report_counter: Callable | None = None
    frontend: dict = field(default_factory=dict)  # front-end settings of the report
    defaults: dict = field(default_factory=dict)  # constructor kwargs of the registered variant


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, input_shape, **spec_kwargs):
    """Decorator: register a builder function ``fn(n_classes=10, in_channels=..., **cfg)``."""

    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name=name, builder=fn, input_shape=tuple(input_shape), **spec_kwargs)
        return fn

    return wrap


def get_spec(name: str) -> ModelSpec:
    _import_families()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise TinyAscError(f"unknown model {name!r}; known models: {known}")
    return _REGISTRY[name]


def list_models() -> list[str]:
    _import_families()
    return sorted(_REGISTRY)


def create_model(name: str, n_classes: int = 10, **cfg) -> nn.Module:
    spec = get_spec(name)
    kwargs = {**spec.defaults, **cfg}
    try:
        return spec.builder(n_classes=n_classes, **kwargs)
    except TypeError as exc:
        raise TinyAscError(f"model {name!r}: bad argument ({exc})") from None


def _import_families():
    # Importing the package registers every family; done lazily so the registry module has no cycle.
    import tinyasc.models  # noqa: F401
