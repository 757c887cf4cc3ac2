"""The model table behind ``tinyasc models``: measured complexity beside each report's figures.

The int8 and fp16 bytes are measured on real conversions, not as parameters x bytes: the fp16 copy
(``.half()``) and the int8 network are counted by ``stored_sizes``, so a layer left float in the int8
graph (no int8 kernel) counts 4 bytes a value, an int8 conv's bias too. The int8 conversion is
torch.ao machinery on a higher floor (``tinyasc.modelfile.int8``), so the caller hands it in
(``Int8Conversion``); ``tinyasc models`` passes ``modelfile.int8.int8_measurement``.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from tinyasc.base.errors import TinyAscError
from tinyasc.base.tables import format_table
from tinyasc.complexity.conventions import report_counts
from tinyasc.complexity.counts import torchinfo_counts, verdict
from tinyasc.complexity.stored import stored_sizes
from tinyasc.models.registry import create_model, get_spec, input_shape, list_models

# (float model in eval mode, example input) -> (its int8 network, that network's float layers)
Int8Conversion = Callable[[nn.Module, torch.Tensor], tuple[nn.Module, list[str]]]


def _deviation(measured, reported):
    return None if not reported else round(100.0 * (measured - reported) / reported, 2)


def model_row(name: str, int8_conversion: Int8Conversion) -> dict:
    """One model's row: DCASE counts, the report's figures, bytes of its real fp16 and int8 versions."""
    spec = get_spec(name)
    shape = input_shape(name)
    model = create_model(name, in_channels=shape[1])
    params, macs = torchinfo_counts(model, shape)
    row = {"name": name, "report": spec.report, "title": spec.title, "input_shape": list(shape[1:]),
           "params": params, "macs": macs, "report_params": spec.report_params, "report_macs": spec.report_macs,
           "counting": spec.counting}
    report_params, report_macs = params, macs
    if spec.counting != "dcase":
        report_params, report_macs = report_counts(model, shape, spec.counting)
        row.update(params_report_convention=report_params, macs_report_convention=report_macs)
    row["params_deviation_pct"] = _deviation(report_params, spec.report_params)
    row["macs_deviation_pct"] = _deviation(report_macs, spec.report_macs)
    try:
        int8_network, float_layers = int8_conversion(model.eval(), torch.zeros(shape))
    except TinyAscError as exc:  # a model without an int8 version: the row says why, the table goes on
        row.update(bytes_int8=None, int8_float_layers=[], int8_error=str(exc))
    else:
        row.update(bytes_int8=stored_sizes(int8_network)["bytes"], int8_float_layers=list(float_layers))
    row["bytes_fp16"] = stored_sizes(copy.deepcopy(model).half())["bytes"]
    row["fits_int8"] = row["bytes_int8"] is not None and verdict(row["bytes_int8"], macs)["fits"]
    row["fits_fp16"] = verdict(row["bytes_fp16"], macs)["fits"]
    return row


def model_table(int8_conversion: Int8Conversion) -> list[dict]:
    return [model_row(name, int8_conversion) for name in list_models()]


def _fmt(value, pct=False):
    if value is None:
        return "-"
    return f"{value:+.2f}%" if pct else f"{value:,.0f}"


def format_model_table(rows: list[dict]) -> str:
    header = ["model", "report", "input", "params", "MACs", "rep. params", "rep. MACs", "counted as",
              "dev. P % (as counted)", "dev. M % (as counted)", "int8 B", "fp16 B", "fits int8/fp16", "float in int8"]
    body = [[r["name"], r["report"], "x".join(map(str, r["input_shape"])), _fmt(r["params"]), _fmt(r["macs"]),
             _fmt(r["report_params"]), _fmt(r["report_macs"]), r["counting"], _fmt(r["params_deviation_pct"], True),
             _fmt(r["macs_deviation_pct"], True), _fmt(r["bytes_int8"]), _fmt(r["bytes_fp16"]),
             f"{'yes' if r['fits_int8'] else 'no'}/{'yes' if r['fits_fp16'] else 'no'}",
             _float_layers(r.get("int8_float_layers", []))] for r in rows]
    return (format_table(header, body, left=3) + "\nparams/MACs: DCASE convention (torchinfo, as NeSsi). dev. P / "
            "dev. M: the report's figures against ours counted the way the report counted (`counted as`: dcase = "
            "torchinfo; bn_fused = BatchNorm folded into the conv; keras = BN statistics counted; tflite = int8 "
            "TFLite bytes; tokens = Linears once per token; `--json`: *_report_convention).\n"
            "int8 B / fp16 B: bytes of the parameters of the real int8 network (post-training conversion) and "
            "fp16 copy, each at the precision it is stored in; float in int8: layers the int8 network runs in "
            "float (no int8 kernel), by type (`--json`: int8_float_layers).")


def _float_layers(layers: list[str]) -> str:
    """'3 SiLU, 2 ResNorm' from ["a (SiLU)", ...]; '-' when the int8 network is int8 throughout."""
    counts: dict[str, int] = {}
    for layer in layers:
        kind = layer.rsplit("(", 1)[-1].rstrip(")")
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "-"
