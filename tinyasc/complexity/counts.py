"""Complexity the DCASE way: parameters, parameter bytes at a precision, MACs per 1 s clip.

The official counter (NeSsi) is ``torchinfo.summary(model, input_size)``: ``total_params`` and
``total_mult_adds`` on the model input (features are not counted). The limits are 128,000 bytes of
parameters and 30,000,000 MACs per second of audio.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torchinfo
from torch import nn

from tinyasc.base.errors import TinyAscError

MAX_BYTES = 128_000
MAX_MACS = 30_000_000
BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


def verdict(n_bytes: int, macs: int) -> dict:
    """The DCASE verdict: within 128,000 bytes of parameters, within 30 M MACs, and both."""
    fits_bytes, fits_macs = n_bytes <= MAX_BYTES, macs <= MAX_MACS
    return {"fits_bytes": fits_bytes, "fits_macs": fits_macs, "fits": fits_bytes and fits_macs}


def summarise(params: int, macs: int, n_bytes: int, by_dtype: dict, qparams: int, precision: str,
              input_shapes: list) -> dict:
    """The complexity record of a stored model (a network or an ensemble): counts, bytes by dtype, verdict."""
    return {"params": int(params), "macs": int(macs), "bytes": int(n_bytes), "bytes_by_dtype": by_dtype,
            "qparams": int(qparams), "precision": precision, **verdict(n_bytes, macs),
            "input_shapes": [list(s) for s in input_shapes]}


@dataclass
class Complexity:
    params: int
    macs: int
    bytes: int
    precision: str
    fits_bytes: bool
    fits_macs: bool
    fits: bool
    input_shape: tuple

    def to_dict(self) -> dict:
        return asdict(self)


def torchinfo_counts(model: nn.Module, input_shape) -> tuple[int, int]:
    """(params, MACs) exactly as DCASE's NeSsi reports them, for an input of shape (1, C, F, T)."""
    was_training = model.training
    model.eval()
    try:
        stats = torchinfo.summary(model, input_size=tuple(input_shape), verbose=0, device="cpu")
    finally:
        model.train(was_training)
    return int(stats.total_params), int(stats.total_mult_adds)


def parameter_bytes(model: nn.Module, precision: str = "fp32") -> int:
    """Bytes of parameter memory at ``precision`` (numel x bytes per value; BN statistics excluded)."""
    if precision not in BYTES_PER_PARAM:
        raise TinyAscError(f"unknown precision {precision!r}; choose one of {', '.join(BYTES_PER_PARAM)}")
    return sum(p.numel() for p in model.parameters()) * BYTES_PER_PARAM[precision]


def measure(model: nn.Module, input_shape, precision: str = "fp32") -> Complexity:
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) == 3:
        input_shape = (1, *input_shape)
    params, macs = torchinfo_counts(model, input_shape)
    n_bytes = parameter_bytes(model, precision)
    return Complexity(params=params, macs=macs, bytes=n_bytes, precision=precision, input_shape=input_shape,
                      **verdict(n_bytes, macs))
