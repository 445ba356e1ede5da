"""A progress report a partner can hand to their therapist: the weekly figures and the milestones.

:func:`build` reads the tables directly (the daily aggregates and the
milestones) and returns the report's content, the JSON that
``GET /v1/report`` answers and that :mod:`.report_pdf` lays out as a PDF.

Whose data, and from which table:

- the caller's own series: every entry of theirs, private and shared (``days``);
- the couple's: both partners' shared entries alone (``shared_days``), pooled
  into one figure a week, never split by partner;
- the other partner's own series: only if they share their milestones
  (``share_milestones_with_partner``, as ``/v1/milestones`` decides), and
  then from their shared entries alone (``shared_days``). Sharing milestones
  is consent to show what a rule concluded, not every private entry's week:
  nothing the caller reads is derived from the other partner's private
  entries, not even as a weekly figure.

Each week runs Monday to Sunday in its owner's local dates (the time zone each
partner logs in), the last one being the caller's current week. A week with
no logging has no value (null, never zero), and every point carries the
number of logged days, so a quiet week without logging never reads as a calm
one. A metric that got worse is a chart like any other, with no headline;
only milestones achieved are named, never one not reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import utcnow

from .tables import days, milestones, partners, shared_days
from .use_cases import visible_milestones

MIN_WEEKS, MAX_WEEKS, DEFAULT_WEEKS = 4, 52, 12

YOURS, TOGETHER, PARTNER = "yours", "together", "partner"

ABOUT = (
    "Every figure here is self-reported: what each partner chose to log in the Tandem app, "
    "on the days they logged. Nothing was observed or measured by anyone else.",
    "Beside every chart are the days logged each week: a week with nothing logged has no value, "
    "which is not the same as a calm week.",
    "A milestone means a change larger than the partner's or couple's own week-to-week ups and "
    "downs would plausibly give: Tandem's rules are set so that, on simulated histories in which "
    "nothing changed, about one in a hundred would ever show a milestone over two years.",
    "This is not a diagnosis or an assessment of anyone, and it does not compare the partners.",
)


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    value: Callable[[list], float | None]  # of a week's logged day rows (at least one)
    shown: Callable[[list], bool]  # whether the rows of the whole span hold any of it


def _mean(values: list) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _listed(key: str) -> Callable[[list], list]:
    return lambda rows: [v for r in rows for v in r.detail[key]]


def _rate(rows: list) -> float:
    return round(sum(r.episodes for r in rows) / len(rows), 2)


def _count(column: str) -> Callable[[list], int]:
    return lambda rows: sum(getattr(r, column) for r in rows)


def _mean_metric(key: str, title: str, unit: str) -> Metric:
    values = _listed(key)
    return Metric(
        key, title, unit, lambda rows: _mean(values(rows)), lambda rows: bool(values(rows))
    )


def _count_metric(key: str, column: str, title: str, unit: str, shown_by: str = "") -> Metric:
    count, shown = _count(column), _count(shown_by or column)
    return Metric(key, title, unit, count, lambda rows: shown(rows) > 0)


METRICS = {
    m.key: m
    for m in (
        Metric(
            "anxious_moments",
            "Anxious moments",
            "per logged day",
            _rate,
            lambda rows: any(r.episodes for r in rows),
        ),
        _mean_metric("intensities", "How intense the anxious moments felt", "mean, out of 10"),
        _mean_metric("communication", "Daily communication", "mean rating, out of 5"),
        _mean_metric("connection", "Weekly check-in: connection", "mean rating, out of 5"),
        _mean_metric("understanding", "Weekly check-in: understanding", "mean rating, out of 5"),
        _count_metric("rituals", "ritual_count", "Rituals kept", "a week"),
        _count_metric("independence", "activities", "Independence activities", "a week"),
        _count_metric("conflicts", "conflicts", "Conflicts", "a week"),
        # shown whenever there were conflicts: none repaired is a figure too
        _count_metric(
            "repaired",
            "conflicts_repaired_24h",
            "Conflicts repaired within a day",
            "a week",
            shown_by="conflicts",
        ),
    )
}
# A partner's own series (theirs to keep); the couple's (what the couple rules read, pooled).
PERSONAL = ("anxious_moments", "intensities", "communication", "independence")
COUPLE = ("communication", "connection", "understanding", "rituals", "conflicts", "repaired")

# A milestone in plain words: its name, by type.
NAMES = {
    "fewer_anxious_episodes": "Fewer anxious moments",
    "calmer_episodes": "Calmer anxious moments",
    "more_independence": "More time of one's own",
    "better_communication": "Better communication",
    "stronger_bond": "A stronger bond",
    "rituals_kept": "Rituals kept",
    "check_in_rhythm": "A weekly check-in rhythm",
}


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def _weeks_of(rows: Iterable, starts: list[date]) -> dict[date, list]:
    out: dict[date, list] = {start: [] for start in starts}
    for r in rows:
        week = out.get(_monday(r.local_date))
        if week is not None and r.entries > 0:
            week.append(r)
    return out


def _charts(by_week: dict[date, list], keys: tuple[str, ...], logged: dict[date, int]) -> list:
    every = [r for rows in by_week.values() for r in rows]
    charts = []
    for key in keys:
        metric = METRICS[key]
        if not metric.shown(every):
            continue
        points = [
            {
                "start": start,
                "value": metric.value(rows) if rows else None,
                "logged_days": logged[start],
            }
            for start, rows in by_week.items()
        ]
        charts.append({"metric": key, "title": metric.title, "unit": metric.unit, "points": points})
    return charts


def _section(whose: str, title: str, rows: list, keys: tuple[str, ...], starts: list[date]):
    by_week = _weeks_of(rows, starts)
    # A couple's logged day: a date on which either partner shared anything (their own local dates).
    logged = {start: len({r.local_date for r in week}) for start, week in by_week.items()}
    charts = _charts(by_week, keys, logged)
    return {"whose": whose, "title": title, "charts": charts} if charts else None


def _read(s: Session, table, partner_ids: list[str], first: date, last: date) -> list:
    return s.execute(
        select(table).where(
            table.c.partner_id.in_(partner_ids),
            table.c.local_date >= first,
            table.c.local_date <= last,
        )
    ).all()


def build(s: Session, partner_id: str, weeks: int, now: datetime | None = None) -> dict:
    """The report's content for the caller, over the last ``weeks`` weeks (the current one included)."""
    now = now or utcnow()
    me = s.execute(select(partners).where(partners.c.id == partner_id)).first()
    tz = me.timezone if me is not None and me.timezone else "UTC"
    today = now.astimezone(_zone(tz)).date()
    first = _monday(today) - timedelta(weeks=weeks - 1)
    last = first + timedelta(weeks=weeks, days=-1)
    starts = [first + timedelta(weeks=i) for i in range(weeks)]
    other = None
    if me is not None and me.couple_id and not me.erased:
        other = s.execute(
            select(partners).where(
                partners.c.couple_id == me.couple_id,
                partners.c.id != partner_id,
                partners.c.erased.is_(False),
            )
        ).first()
    sections = [
        _section(
            YOURS, "Your own entries", _read(s, days, [partner_id], first, last), PERSONAL, starts
        )
    ]
    if other is not None:
        shared = _read(s, shared_days, [partner_id, other.id], first, last)
        sections.append(
            _section(TOGETHER, "Together: what both of you shared", shared, COUPLE, starts)
        )
        if other.share_milestones_with_partner:
            theirs = [r for r in shared if r.partner_id == other.id]
            sections.append(
                _section(PARTNER, "Your partner's own, as they shared it", theirs, PERSONAL, starts)
            )
    return {
        "weeks": weeks,
        "first_day": first,
        "last_day": last,
        "today": today,
        "timezone": tz,
        "sections": [x for x in sections if x is not None],
        "milestones": _milestones(s, partner_id, first, last),
        "about": list(ABOUT),
    }


def _milestones(s: Session, partner_id: str, first: date, last: date) -> list[dict]:
    """The milestones the caller may see (as /v1/milestones), reached in the report's weeks, oldest first."""
    rows = s.execute(
        select(milestones)
        .where(
            visible_milestones(s, partner_id),
            milestones.c.as_of >= first,
            milestones.c.as_of <= last,
        )
        .order_by(milestones.c.as_of, milestones.c.achieved_at, milestones.c.level)
    ).all()
    # Levels of one milestone reached on one look are one celebration, at the highest: one line here too.
    highest = {}
    for r in rows:
        highest[(r.type, r.owner_key, r.as_of)] = r
    out = []
    for r in highest.values():
        whose = (
            YOURS if r.owner_key == partner_id else TOGETHER if r.partner_id is None else PARTNER
        )
        out.append(
            {
                "type": r.type,
                "level": r.level,
                "whose": whose,
                "name": NAMES.get(r.type, r.type.replace("_", " ").capitalize()),
                "reached_on": r.as_of,
                "evidence": evidence_words(r.type, r.evidence),
            }
        )
    return out


def evidence_words(kind: str, evidence: dict) -> str:
    """A milestone's evidence in plain words: the two periods compared and the figure in each, or the count.
    The rules' own registry says which figures a type compares (imported here: it is heavy, and only a
    report with a milestone needs it)."""
    from .rules.aggregates import PARTNER as _SCOPE
    from .rules.aggregates import Detection
    from .rules.registry import picture
    from .rules.wording import _about, _months

    if kind == "rituals_kept" and isinstance(evidence.get("rituals"), int):
        return f"{evidence['rituals']} rituals kept together, counted from the first."
    if kind == "check_in_rhythm" and isinstance(evidence.get("weeks_with_check_in"), int):
        return (
            f"A weekly check-in in {evidence['weeks_with_check_in']} "
            f"of {evidence.get('of_weeks', 5)} weeks in a row."
        )
    shown = picture(Detection(kind, 1, _SCOPE, evidence, ""))
    if shown is None:
        return ""
    scale = shown.get("scale")

    def figure(x: float) -> str:
        if scale is not None:
            return f"{x:.1f}"
        return "none" if x <= 0 else f"about {_about(x)}"

    before, after = shown["periods"]
    return (
        f"{shown['unit'].capitalize()}: {figure(before['value'])} in {_months(before['start'], before['end'])}, "
        f"{figure(after['value'])} in {_months(after['start'], after['end'])}."
    )
