"""The model table behind ``tinyasc models``: measured complexity beside each report's figures."""
from __future__ import annotations

from tinyasc.base.tables import format_table
from tinyasc.complexity.conventions import report_counts
from tinyasc.complexity.counts import BYTES_PER_PARAM, torchinfo_counts, verdict
from tinyasc.models.registry import create_model, get_spec, input_shape, list_models


def _deviation(measured, reported):
    return None if not reported else round(100.0 * (measured - reported) / reported, 2)


def model_row(name: str) -> dict:
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
    row["bytes_int8"] = params * BYTES_PER_PARAM["int8"]
    row["bytes_fp16"] = params * BYTES_PER_PARAM["fp16"]
    row["fits_int8"] = verdict(row["bytes_int8"], macs)["fits"]
    row["fits_fp16"] = verdict(row["bytes_fp16"], macs)["fits"]
    return row


def model_table() -> list[dict]:
    return [model_row(name) for name in list_models()]


def _fmt(value, pct=False):
    if value is None:
        return "-"
    return f"{value:+.2f}%" if pct else f"{value:,.0f}"


def format_model_table(rows: list[dict]) -> str:
    header = ["model", "report", "input", "params", "MACs", "rep. params", "rep. MACs", "dev. P", "dev. M",
              "int8 B", "fp16 B", "fits int8/fp16"]
    body = [[r["name"], r["report"], "x".join(map(str, r["input_shape"])), _fmt(r["params"]), _fmt(r["macs"]),
             _fmt(r["report_params"]), _fmt(r["report_macs"]), _fmt(r["params_deviation_pct"], True),
             _fmt(r["macs_deviation_pct"], True), _fmt(r["bytes_int8"]), _fmt(r["bytes_fp16"]),
             f"{'yes' if r['fits_int8'] else 'no'}/{'yes' if r['fits_fp16'] else 'no'}"] for r in rows]
    return (format_table(header, body, left=3) + "\nparams/MACs: DCASE convention (torchinfo); deviations use the "
            "report's own counting where it differs (see `tinyasc models --json`: counting, *_report_convention).")
