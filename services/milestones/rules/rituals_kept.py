"""rituals_kept: the couple's 10th, 25th, 50th and 100th ritual (counts, never streaks)."""

from __future__ import annotations

from datetime import date

from .aggregates import COUPLE, Detection, History, HistoryLike, _check_as_of
from .registry import RITUAL_LEVELS, RITUALS_KEPT
from .wording import _iso


def rituals_kept(
    a: HistoryLike, b: HistoryLike, as_of: date, prior: dict[str, int] | None = None
) -> list[Detection]:
    """The couple's 10th, 25th, 50th and 100th ritual (levels 1-4).

    Counts every ``ritual`` entry of both partners dated up to ``as_of``;
    totals only, nothing resets. Symmetric in ``a`` and ``b``. ``prior``:
    rituals (by tag) dated before every day given, for a caller that passes
    only the days the other rules read.
    The evidence is the total alone: a count by ritual would name what one
    entry was about.
    """
    _check_as_of(as_of)
    total = sum((prior or {}).values()) + sum(
        h.ritual_count(as_of) for h in (History.of(a), History.of(b))
    )
    out = []
    for level, threshold in RITUAL_LEVELS:
        if total >= threshold:
            evidence = {
                "measure": "ritual entries of both partners, counted (never a streak)",
                "as_of": _iso(as_of),
                "rituals": total,
                "threshold": threshold,
                "level": level,
                "level_rule": f"at least {threshold} rituals",
            }
            out.append(
                Detection(
                    RITUALS_KEPT,
                    level,
                    COUPLE,
                    evidence,
                    f"You have kept {threshold} rituals together.",
                )
            )
    return out
