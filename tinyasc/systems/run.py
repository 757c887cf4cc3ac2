"""``tinyasc system run``: a spec's pipeline over the splits, then the results the reports show.

The system folder gets ``results.json`` (every stage's scores per split, the final model of each
split as ``final_models``, which ``tinyasc submit`` reads), ``results.md`` (the report-style table:
macro accuracy and log loss of every member and of the system, before and after compression, per
split; the final model's DCASE complexity and verdict) and ``results.png``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import write_json, write_text
from tinyasc.evaluation.plots import plt, save_figure
from tinyasc.systems.pipeline import SystemRun, final_stage, member_configs
from tinyasc.systems.spec import Spec, load_spec


def run_system(spec_name, out=None, data_dir=None, splits: list[int] | None = None, overrides: list[dict] = (),
               member_overrides: dict[str, list[dict]] | None = None, epochs: int | None = None,
               progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run (or continue) a system; returns what ``results.json`` holds."""
    spec = load_spec(spec_name)
    splits = splits or spec.splits
    if epochs is not None and epochs < 1:
        raise TinyAscError(f"--epochs {epochs}: give at least 1")
    unknown = sorted(set(member_overrides or {}) - set(spec.members))
    if unknown:
        raise TinyAscError(f"--set {unknown[0]}:...: {spec.path.name} has no member {unknown[0]!r}; "
                           f"members: {', '.join(spec.members)}")
    out = Path(out or Path("systems") / spec.name)
    # Every member's config of every split is checked before anything is written.
    configs = {s: member_configs(spec, s, data_dir, overrides, member_overrides, epochs) for s in splits}
    runner = SystemRun(spec, out, configs, progress, log)
    done = runner.run()
    results = collect(spec, runner, done)
    write_json(out / "results.json", results)
    write_text(out / "results.md", results_markdown(results))
    plot_results(results, out / "results.png")
    log(f"wrote {out / 'results.md'}, results.json and results.png")
    return results


def collect(spec: Spec, runner: SystemRun, done: dict) -> dict:
    final = final_stage(spec, runner.stages)
    stages = {str(split): {name: {k: v for k, v in marker.items() if k not in ("key", "seconds")}
                           for name, marker in per_split.items()} for split, per_split in done.items()}
    return {"system": {"name": spec.name, "reproduces": spec.reproduces, "spec": str(spec.path)},
            "reported": spec.reported, "splits": [int(s) for s in done], "final_stage": final.name,
            "final_models": {split: per[final.name]["output"] for split, per in stages.items()},
            "final": {split: per[final.name] for split, per in stages.items()}, "stages": stages}


def _pct(v) -> str:
    return f"{100 * v:.2f} %"


def results_markdown(results: dict) -> str:
    splits = list(results["stages"])
    first = results["stages"][splits[0]]
    header = "| model | " + " | ".join(f"{s} %: macro acc. / log loss" for s in splits) + " |"
    lines = [f"# {results['system']['name']}", "", results["system"]["reproduces"], "",
             "Macro class-wise accuracy and log loss on the test set, per training split:", "",
             header, "|---|" + "---|" * len(splits)]
    for name, marker in first.items():
        label = marker["label"] + (" **final**" if name == results["final_stage"] else "")
        cells = [f"{_pct(results['stages'][s][name]['macro_accuracy'])} / {results['stages'][s][name]['log_loss']:.3f}"
                 for s in splits]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "DCASE complexity of the final model (parameter bytes at its precision, summed over ensemble "
              "members; MACs per 1 s clip, summed), against 128,000 bytes and 30 M MACs:", "",
              "| split | model file | precision | parameters | bytes | MACs | fits |", "|---|---|---|---:|---:|---:|---|"]
    for s in splits:
        f, c = results["final"][s], results["final"][s]["complexity"]
        lines.append(f"| {s} % | `{f['output']}` | {c['precision']} | {c['params']:,} | {c['bytes']:,} | "
                     f"{c['macs']:,} | {'yes' if c['fits'] else 'no'} |")
    reported = results.get("reported") or {}
    if reported:
        lines += ["", "The report: " + ", ".join(f"{k} {v}" for k, v in reported.items())]
    return "\n".join(lines) + "\n"


def plot_results(results: dict, path: Path) -> None:
    """Grouped bars: macro accuracy (%) of every stage, per split."""
    splits = list(results["stages"])
    names = list(results["stages"][splits[0]])
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(splits) + 0.4 * len(names)), 3.8))
    x = np.arange(len(splits))
    for i, name in enumerate(names):
        values = [100 * results["stages"][s][name]["macro_accuracy"] for s in splits]
        label = results["stages"][splits[0]][name]["label"]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=label,
               edgecolor="black" if name == results["final_stage"] else None)
    ax.set_xticks(x, [f"{s} %" for s in splits])
    ax.set_xlabel("training split")
    ax.set_ylabel("macro class-wise accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{results['system']['name']}: test macro accuracy per split (final model outlined)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save_figure(fig, path)
