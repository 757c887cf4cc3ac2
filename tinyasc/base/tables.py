"""Plain-text tables for the terminal: one formatter for every table tinyasc prints."""
from __future__ import annotations


def format_table(header: list[str], rows: list[list], left: int = 1, rule: bool = True) -> str:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned, the rest right.
    Cells are printed with ``str``; format numbers before passing them."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in cells]
    if rule:
        lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)
