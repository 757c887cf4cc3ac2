"""Complexity the DCASE way, in one place.

- ``counts``: DCASE counts (torchinfo, as NeSsi), bytes by precision, the limits and the one verdict.
- ``macs``: tinyasc's MAC counter (per-layer rows; token models and attention counted for real).
- ``conventions``: each seed report's own counting, chosen by name from the model's spec.
- ``stored``: parameters and bytes as a converted network really stores them (int8, fp16).
- ``table``: the model table of ``tinyasc models``.
"""
from tinyasc.complexity.counts import (BYTES_PER_PARAM, MAX_BYTES, MAX_MACS, Complexity, measure, parameter_bytes,
                                       summarise, torchinfo_counts, verdict)

__all__ = ["BYTES_PER_PARAM", "MAX_BYTES", "MAX_MACS", "Complexity", "measure", "parameter_bytes", "summarise",
           "torchinfo_counts", "verdict"]
