"""Ensembles of trained models as one predictor: weighted logit averaging or a linear combination.

Averaging (report 001): logits = sum_n w_n z_n with non-negative weights normalised to sum to 1
(the report's v1 is 0.5/0.5, v2 0.6/0.4). Linear combination (report 003):
logits = sum_n w_n z_n + b, one free weight per model and one bias per class, fitted by minimising
cross-entropy on held-out clips (``tinyasc.compress.ensemble`` fits them). Each member keeps its own front end, so members with different
input shapes combine; members sharing a front end share its features. DCASE complexity of an
ensemble is the sum over its members (plus the combination's own N + K float32 values).

Members trained on clips of different lengths: the ensemble scores clips of the shortest member's
duration, and every member computes its own features from that whole clip. A member trained on
longer clips therefore sees fewer frames than in training: report 003's ensemble 4 trains its second
MobileNet on features twice as long in time and evaluates both members on the 1 s test clip, i.e.
on the 36 frames its own front end makes of that clip (its network ends in a global pool, so any
length fits). Its MACs are counted on that input, the one it runs on.
"""
from __future__ import annotations

import math
from collections import Counter
from numbers import Real

import torch
from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.complexity import summarise


def finite_numbers(values, what: str, source: str) -> list[float]:
    """``values`` as floats, refusing anything but a list of finite numbers (a crafted file may hold anything)."""
    if hasattr(values, "tolist"):  # a tensor or an array
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, Real) and not isinstance(v, bool)
                                                         for v in values):
        raise TinyAscError(f"{source}: the ensemble's {what} must be a list of numbers, not {values!r:.80}")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise TinyAscError(f"{source}: the ensemble's {what} hold {bad[0]} ({', '.join(map(str, values))}); "
                           "every value must be a finite number")
    return [float(v) for v in values]


class Ensemble:
    def __init__(self, members: list, weights, bias=None, method: str = "average", source: str = "ensemble"):
        if len(members) < 2:
            raise TinyAscError(f"{source}: an ensemble needs at least two models")
        first = members[0]
        for m in members[1:]:
            if m.classes != first.classes:
                raise TinyAscError(f"{m.source}: classes ({', '.join(m.classes)}) differ from {first.source}'s "
                                   f"({', '.join(first.classes)})")
            if m.sample_rate != first.sample_rate:
                raise TinyAscError(f"{m.source}: clips at {m.sample_rate} Hz, but {first.source} takes "
                                   f"{first.sample_rate} Hz; the members must read the clip at one sample rate")
        self.members, self.method, self.source = members, method, source
        self.weights = torch.tensor(finite_numbers(weights, "weights", source), dtype=torch.float32)
        self.bias = None if bias is None else torch.tensor(finite_numbers(bias, "bias", source), dtype=torch.float32)
        if len(self.weights) != len(members):
            raise TinyAscError(f"{source}: {len(self.weights)} weights for {len(members)} models")
        if not self.weights.any():
            raise TinyAscError(f"{source}: the ensemble's weights are all zero, so every clip would get the same "
                               "scores")
        if self.bias is not None and len(self.bias) != len(first.classes):
            raise TinyAscError(f"{source}: {len(self.bias)} bias values for {len(first.classes)} classes")
        self.sample_rate, self.duration = first.sample_rate, min(m.duration for m in members)
        shortest = next(m for m in members if m.duration == self.duration)
        self.classes, self.devices, self.config = first.classes, first.devices, shortest.config
        self._check_clip_fits(source)
        self.precision = "+".join(sorted({m.precision for m in members}))

    def _check_clip_fits(self, source: str) -> None:
        """Refuse, before any scoring, a member whose network cannot take the ensemble's shorter clip."""
        for m in self.members:
            if m.duration == self.duration:
                continue
            try:
                m.logits(torch.zeros(1, int(round(self.duration * self.sample_rate))))
            except (RuntimeError, ValueError) as exc:
                raise TinyAscError(f"{source}: {m.source} was trained on {m.duration} s clips and cannot take the "
                                   f"ensemble's {self.duration} s clips ({str(exc).splitlines()[0][:120]})") from None

    @classmethod
    def from_record(cls, record: dict, member_from_record, source: str = "ensemble") -> "Ensemble":
        members = [member_from_record(r, f"{source} member {i + 1}") for i, r in enumerate(record["members"])]
        return cls(members, record.get("weights"), record.get("bias"), record.get("method", "average"), source)

    def to(self, device) -> "Ensemble":
        for m in self.members:
            m.to(device)
        return self

    @property
    def record(self) -> dict:
        return {"kind": "ensemble", "method": self.method, "weights": self.weights.tolist(),
                "bias": None if self.bias is None else self.bias.tolist(), "members": [m.record for m in self.members]}

    @property
    def frontends(self) -> list[dict]:
        unique = []
        for m in self.members:
            for f in m.frontends:
                if f not in unique:
                    unique.append(f)
        return unique

    def member_logits(self, waves: torch.Tensor) -> torch.Tensor:
        """[members, B, classes]; features are computed once per distinct front end."""
        cache, out = {}, []
        for m in self.members:
            if hasattr(m, "features"):
                key = repr(sorted(m.config["frontend"].items()))
                if key not in cache:
                    cache[key] = m.features(waves)
                out.append(m.logits_from_features(cache[key]))
            else:
                out.append(m.logits(waves))
        return torch.stack(out)

    def combine(self, member_logits: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("n,nbk->bk", self.weights, member_logits)
        return out if self.bias is None else out + self.bias

    def logits(self, waves: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.combine(self.member_logits(waves))

    def network_module(self) -> nn.Module:
        if len(self.frontends) != 1 or not all(hasattr(m, "network_module") for m in self.members):
            raise TinyAscError(f"{self.source}: members use different front ends, so the ensemble has no single "
                               "feature input; use its members one by one")
        return EnsembleNetwork([m.network_module() for m in self.members], self.weights, self.bias)

    def logits_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.network_module()(feats)

    def features(self, waves: torch.Tensor) -> torch.Tensor:
        self.network_module()  # refuses members with different front ends
        return self.members[0].features(waves)

    def complexity(self, duration: float | None = None) -> dict:
        """Counts over the members, each on the input it runs on: the ensemble's clip (or ``duration``)."""
        duration = self.duration if duration is None else duration
        parts = [m.complexity(duration) for m in self.members]
        extra = len(self.weights) + (0 if self.bias is None else len(self.bias)) if self.method == "linear" else 0
        by_dtype: dict = {}
        for p in parts:
            for dtype, v in p["bytes_by_dtype"].items():
                slot = by_dtype.setdefault(dtype, Counter())
                slot.update(v)
        if extra:
            by_dtype.setdefault("fp32", Counter()).update({"params": extra, "bytes": 4 * extra})
        result = summarise(sum(p["params"] for p in parts) + extra, sum(p["macs"] for p in parts),
                           sum(p["bytes"] for p in parts) + 4 * extra, {k: dict(v) for k, v in by_dtype.items()},
                           sum(p["qparams"] for p in parts), self.precision,
                           [s for p in parts for s in p["input_shapes"]])
        result["members"] = parts
        return result

    def describe(self) -> str:
        parts = [f"{w:.3g} x {m.describe()}" for w, m in zip(self.weights.tolist(), self.members)]
        return f"{self.method} ensemble: " + " + ".join(parts) + (" + bias" if self.bias is not None else "")


class EnsembleNetwork(nn.Module):
    """Members sharing one front end as one network: features in, combined logits out."""

    def __init__(self, networks: list[nn.Module], weights: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.networks = nn.ModuleList(networks)
        self.register_buffer("weights", weights.clone())
        self.register_buffer("bias", None if bias is None else bias.clone())

    def forward(self, x):
        out = sum(w * net(x).float() for w, net in zip(self.weights, self.networks))
        return out if self.bias is None else out + self.bias
