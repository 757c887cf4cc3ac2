"""What the command groups share: common options, JSON-or-text output, the side-by-side table."""
from __future__ import annotations

import json

from tinyasc.base.tables import format_table


def add_common(p, data: bool = True) -> None:
    if data:
        p.add_argument("--data", help="dataset folder (default: the one the model was trained on)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def show(args, info, text: str) -> None:
    print(json.dumps(info, indent=2, default=float) if getattr(args, "json", False) else text)


def _pct(v) -> str:
    return f"{100 * v:.2f} %"


def comparison_table(columns: dict[str, dict]) -> str:
    """Metrics and complexity of several models side by side."""
    rows = [("macro class-wise accuracy", lambda r: _pct(r["macro_accuracy"])),
            ("accuracy", lambda r: _pct(r["accuracy"])), ("log loss", lambda r: f"{r['log_loss']:.4f}"),
            ("parameters", lambda r: f"{r['complexity']['params']:,}"),
            ("parameter bytes", lambda r: f"{r['complexity']['bytes']:,}"),
            ("MACs per clip", lambda r: f"{r['complexity']['macs']:,}"),
            ("precision", lambda r: r["complexity"]["precision"]),
            ("fits DCASE limits", lambda r: "yes" if r["complexity"]["fits"] else "no")]
    return format_table(["", *columns], [[label, *(fmt(c) for c in columns.values())] for label, fmt in rows],
                        rule=False)
