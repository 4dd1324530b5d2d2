"""Markdown helpers of the report: number formatting, tables, comparisons."""

from __future__ import annotations

import math


def seeds_text(n: int) -> str:
    """ "1 seed", "3 seeds"."""
    return f"{n} seed{'' if n == 1 else 's'}"


def fmt(value, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def md_table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table (cells as given, | escaped)."""

    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    if not rows:
        return "*(no finished run for this table yet)*"
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def compare(a: float, b: float, what: str, unit: str = "", digits: int = 2) -> str:
    """ "<what> is lower/higher than ... by X" (or "equal") for a − b."""
    if math.isnan(a) or math.isnan(b):
        return f"{what}: not available"
    d = a - b
    if round(d, digits) == 0:
        return f"{what} is equal to {digits} decimals"
    return f"{what} is {'lower' if d < 0 else 'higher'} by {abs(d):.{digits}f}{unit}"
