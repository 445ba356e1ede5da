"""A small chart of a milestone's change, for the celebration email: pure functions.

:func:`chart_data` keeps, from a milestone's ``picture`` (the typed part of
``milestones.milestone.achieved`` that says what a celebration shows), only
the numbers a chart needs: the two periods compared (their first and last
local dates), the per-week rate or the mean in each, and the words for the
unit. The milestone's ``evidence`` is never read: how a rule computes it is
the rule's business. Nothing else is kept (no counts of entries, no test
statistics, no other text).
:func:`render` draws those numbers as a small PNG bar chart and
:func:`describe` says the same in words (the image's alt text).

A milestone is only ever an improvement, and a chart never shows a decline:
numbers that do not show the improvement in the milestone's own direction
(fewer or gentler anxious moments, more time for oneself, better
communication, a stronger bond) give no chart at all. Types without two
comparable windows (``rituals_kept``, ``check_in_rhythm``) have none either.

No database, no clock, no network: the same numbers always give the same
bytes (with the same Pillow).
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

WIDTH, HEIGHT = 480, 240

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MAX_PER_WEEK = 1000.0  # a per-week rate above this is not a real journal


@dataclass(frozen=True)
class _Kind:
    """How one milestone type's evidence becomes a chart."""

    title: str  # without a unit from the picture
    per_week: bool  # a rate per week (else a mean rating on a scale)
    lower_is_better: bool
    scale: float | None = None  # a rating's maximum


KINDS: dict[str, _Kind] = {
    "fewer_anxious_episodes": _Kind("Anxious moments", per_week=True, lower_is_better=True),
    "calmer_episodes": _Kind(
        "How intense anxious moments felt", per_week=False, lower_is_better=True, scale=10
    ),
    "more_independence": _Kind("Activities of your own", per_week=True, lower_is_better=False),
    "better_communication": _Kind(
        "How well you talk together", per_week=False, lower_is_better=False, scale=5
    ),
    "stronger_bond": _Kind("Your weekly check-ins", per_week=False, lower_is_better=False, scale=5),
}


# --- from evidence to chart numbers ---


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _day(value: Any) -> date | None:
    if isinstance(value, date):  # a picture's dates, as the event catalog loads them
        return value
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def chart_data(milestone: dict) -> dict | None:
    """The numbers a chart of ``milestone`` needs, from its ``picture``, or None if it has no chart.

    ``{"type", "unit", "before": {"start", "end", "value"}, "after": {...}}``:
    dates are ISO local dates, values the per-week rate or the mean rating of
    each period, rounded to 2 decimals. None for types without a chart, and
    for a picture that is missing, malformed or does not show the improvement.
    """
    kind = KINDS.get(milestone.get("type")) if isinstance(milestone, dict) else None
    shown = milestone.get("picture") if kind else None
    periods = shown.get("periods") if isinstance(shown, dict) else None
    if (
        not isinstance(periods, list)
        or len(periods) != 2
        or not all(isinstance(w, dict) for w in periods)
    ):
        return None
    raw = {"type": milestone["type"], "unit": shown.get("unit")}
    for name, w in zip(("before", "after"), periods):
        value = _number(
            w.get("value")
        )  # rounded before the check, so what is kept still shows the improvement
        raw[name] = {
            "start": w.get("start"),
            "end": w.get("end"),
            "value": None if value is None else round(value, 2),
        }
    try:
        c = _checked(raw)
    except ValueError:
        return None

    def side(
        w: _Side,
    ) -> dict:  # written anew from the checked numbers: nothing else of the event is kept
        return {"start": w.start.isoformat(), "end": w.end.isoformat(), "value": w.value}

    out = {"type": milestone["type"], "before": side(c.before), "after": side(c.after)}
    if c.unit:
        out["unit"] = c.unit
    return out


# --- checking chart numbers (stored, or from elsewhere) ---


@dataclass(frozen=True)
class _Side:
    start: date
    end: date
    value: float


@dataclass(frozen=True)
class _Chart:
    kind: _Kind
    before: _Side
    after: _Side
    unit: str | None = None  # the picture's words for the figure ("anxious moments a week")


_UNIT = re.compile(
    r"[a-z][a-z0-9 ,-]{0,79}"
)  # plain words: the unit is a title, never a channel for text


def _side(raw: Any, kind: _Kind) -> _Side:
    if not isinstance(raw, dict):
        raise ValueError("a window must be an object")
    start, end, value = _day(raw.get("start")), _day(raw.get("end")), _number(raw.get("value"))
    if start is None or end is None or start > end:
        raise ValueError("a window needs a start and an end date, in order")
    top = kind.scale if kind.scale is not None else MAX_PER_WEEK
    if value is None or not 0 <= value <= top:
        raise ValueError(f"a window's value must be a number from 0 to {top:g}")
    return _Side(start, end, value)


def _checked(chart: Any) -> _Chart:
    """The chart's numbers, checked; ValueError if they are not a chart of an improvement."""
    if not isinstance(chart, dict) or chart.get("type") not in KINDS:
        raise ValueError("not a chart of a milestone type that has one")
    kind = KINDS[chart["type"]]
    before, after = _side(chart.get("before"), kind), _side(chart.get("after"), kind)
    if not before.start < after.start or not before.end <= after.end:
        raise ValueError("the earlier window must come first")
    improved = after.value < before.value if kind.lower_is_better else after.value > before.value
    if not improved:
        raise ValueError("a chart only ever shows an improvement")
    unit = chart.get("unit")
    if unit is not None and not (isinstance(unit, str) and _UNIT.fullmatch(unit)):
        raise ValueError("a unit is a few plain lower-case words")
    return _Chart(kind, before, after, unit)


# --- words ---


def _about(x: float) -> str:
    """A per-week figure as people say it: whole numbers from 3, else one decimal."""
    if x >= 3:
        return str(int(round(x)))
    return f"{x:.1f}".rstrip("0").rstrip(".") if x >= 0.05 else "0.1"


def _figures(c: _Chart) -> tuple[str, str]:
    """The two values as labels, shown so that the difference never rounds away."""
    per_week, scale = c.kind.per_week, c.kind.scale

    def figure(v: float, digits: int | None) -> str:
        if per_week and v <= 0:
            return ""
        return _about(v) if digits is None else f"{v:.{digits}f}"

    for digits in (None, 1, 2) if per_week else (1, 2):
        a, b = figure(c.before.value, digits), figure(c.after.value, digits)
        if a != b:
            break

    def label(f: str) -> str:
        if c.unit:  # the title says the unit
            return f"about {f}" if f or not per_week else "none"
        if per_week:
            return f"about {f} a week" if f else "none"
        return f"about {f} out of {scale:g}"

    return label(a), label(b)


def _span(side: _Side, dash: str = "\u2013") -> str:
    def day(d: date) -> str:
        return f"{_MONTHS[d.month - 1]} {d.day}"

    return f"{day(side.start)} {dash} {day(side.end)}"


def _title(c: _Chart) -> str:
    if c.unit:  # the picture's own words: "Anxious moments a week"
        return c.unit[0].upper() + c.unit[1:]
    return f"{c.kind.title}, per week" if c.kind.per_week else f"{c.kind.title}, on average"


def describe(chart: dict) -> str:
    """The chart in words (its alt text); ValueError as :func:`render`."""
    c = _checked(chart)
    a, b = _figures(c)
    return f"{_title(c)}: {a} ({_span(c.before)}), then {b} ({_span(c.after)})."


# --- the picture ---

BACKGROUND = (255, 248, 240)
INK = (94, 58, 38)
SOFT_INK = (161, 110, 82)
RULE = (236, 218, 200)
BEFORE_BAR = (246, 201, 168)
AFTER_BAR = (226, 122, 90)


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's own font: the same on every machine


def _centered(draw, x: float, y: float, text: str, font, fill) -> None:
    draw.text((x - draw.textlength(text, font=font) / 2, y), text, font=font, fill=fill)


def render(chart: dict) -> bytes:
    """A PNG (480x240) of the two windows side by side; ValueError if ``chart``
    is not a chart of an improvement (see :func:`chart_data`)."""
    from PIL import Image, ImageDraw

    c = _checked(chart)
    labels = _figures(c)
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    title, value_font, small = _font(16), _font(14), _font(12)
    _centered(draw, WIDTH / 2, 12, _title(c), title, INK)

    floor, room = 176, 100  # the bars' baseline and the tallest bar's height
    top = c.kind.scale if c.kind.scale is not None else max(c.before.value, c.after.value)
    draw.line((48, floor, WIDTH - 48, floor), fill=RULE, width=2)
    for x, side, label, word, colour in (
        (WIDTH * 0.3, c.before, labels[0], "then", BEFORE_BAR),
        (WIDTH * 0.7, c.after, labels[1], "lately", AFTER_BAR),
    ):
        height = max(3, round(room * side.value / top)) if top else 3
        draw.rounded_rectangle((x - 46, floor - height, x + 46, floor - 1), radius=6, fill=colour)
        _centered(draw, x, floor - height - 22, label, value_font, INK)
        _centered(draw, x, floor + 10, _span(side, "-"), small, INK)  # the font has no en dash
        _centered(draw, x, floor + 28, word, small, SOFT_INK)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
