"""The words of the rules: numbers for JSON and for people, months, headlines' figures."""

from __future__ import annotations

import math
from datetime import date

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _iso(d: date) -> str:
    return d.isoformat()


def _num(x: float, digits: int = 3) -> float | None:
    """A float for JSON: rounded; None for NaN or infinity."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def _p(p: float) -> float:
    """A p-value to 3 significant digits (small ones stay visible)."""
    return float(f"{p:.3g}")


def _about(x: float) -> str:
    """A per-week figure as people say it: whole numbers from 3, else one decimal."""
    if x <= 0:
        return "none"
    if x >= 3:
        return str(int(round(x)))
    return f"{x:.1f}".rstrip("0").rstrip(".") if x >= 0.05 else "0.1"


def _mean_text(x: float) -> str:
    return f"{x:.1f}"


def _months(start: date, end: date) -> str:
    """The months a window spans: "October", "October and November", "October to December"."""
    if (start.year, start.month) == (end.year, end.month):
        return _MONTHS[start.month - 1]
    apart = (end.year - start.year) * 12 + end.month - start.month
    joint = "and" if apart == 1 else "to"
    return f"{_MONTHS[start.month - 1]} {joint} {_MONTHS[end.month - 1]}"


def _distinct(a: str, b: str, x: float, y: float, digits: int = 2) -> tuple[str, str]:
    """Show two figures so that a real difference does not round away."""
    if a != b:
        return a, b
    return f"{x:.{digits}f}", f"{y:.{digits}f}"
