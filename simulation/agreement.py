"""The pure rules' milestones of a synthetic partner, looked at as the service looks, beside the service's.

The milestones service evaluates a partner once their events have settled,
as of every local date from the earliest date the new data touched, or the
day after its last evaluation, up to today (and every day at 04:00 in their
time zone, through the day that has ended) (``services.milestones.evaluation.evaluate_partner``). Each (type,
level) is stored once, ever, dated by the look (``as_of``) that found it. So
once a history has arrived, in whatever order, and been evaluated, the
service's milestones are those of one replay of every day from the partner's
first logged day to the day of the sync: each (type, level) as of the first
of those looks on which the pure rules
(``services.milestones.rules.detect_partner_milestones``, the function the
service runs) hold it. :func:`rule_milestones` computes that, on the rules'
whole history; :func:`compare` says where the service's differ.

A difference is a bug: in the service's reads (an evaluation reads only the
days the registry says the rules need), in its replay, or in how the history
was given to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

from services.milestones import rules
from services.milestones.rules import History, HistoryLike

__all__ = ["Milestones", "rule_milestones", "service_milestones", "compare", "REASONS"]

Milestones = dict[tuple[str, int], date]  # (type, level) -> the look (as_of) it was first found on

_PARTNER_TYPES = tuple(m.type for m in rules.MILESTONES if m.scope == rules.PARTNER)
REASONS = ("only the service", "only the rules", "another day")


def rule_milestones(
    history: HistoryLike,
    last_look: date,
    first_look: date | None = None,
    *,
    before_each_day: bool = False,
) -> Milestones:
    """The partner's own milestones under daily looks: each (type, level) as of the first look, from
    ``first_look`` (default: the first logged day, where the service's looks start) to ``last_look``
    (the day the service evaluates the history: today when it syncs), on which the rules hold it.

    ``before_each_day``: each day is looked at first without its own entries, then with them: what a
    scheduled evaluation looking as of the day just begun would add (the service's looks through the day
    that has ended instead, so that every look is at a complete day, as the calibration's are)."""
    h = History.of(history)
    first = h.first_logged_day(last_look)
    if first is None:
        return {}
    found: Milestones = {}
    day = max(first, first_look) if first_look else first
    while day <= last_look:
        done = {t for t in _PARTNER_TYPES if all((t, lv) in found for lv in rules.LEVELS[t])}
        if len(done) == len(_PARTNER_TYPES):
            break
        looks = [h]
        if before_each_day and day > first and h.between(day, day):
            looks.insert(0, History(tuple(d for d in h.days if d.day != day)))
        for seen in looks:
            for det in rules.detect_partner_milestones(seen, day, done):
                found.setdefault((det.type, det.level), day)
        day += timedelta(days=1)
    return found


def service_milestones(items: list[dict], partner_id: str | None = None) -> Milestones:
    """The milestones ``GET /v1/milestones`` listed (a partner's own: of ``partner_id`` if given), keyed
    as :func:`rule_milestones`'s."""
    return {
        (m["type"], m["level"]): date.fromisoformat(m["as_of"])
        for m in items
        if m["type"] in _PARTNER_TYPES and (partner_id is None or m["partner_id"] == partner_id)
    }


def compare(
    service: Mapping[tuple[str, int], date], expected: Mapping[tuple[str, int], date]
) -> list[dict]:
    """Where the service's milestones differ from the rules': one row a (type, level), with its reason
    (one of ``REASONS``) and each side's day (None: not found). Empty: they agree."""
    out = []
    for key in sorted(set(service) | set(expected)):
        got, want = service.get(key), expected.get(key)
        if got == want:
            continue
        reason = REASONS[0] if want is None else REASONS[1] if got is None else REASONS[2]
        out.append(
            {
                "type": key[0],
                "level": key[1],
                "reason": reason,
                "service": got.isoformat() if got else None,
                "rules": want.isoformat() if want else None,
            }
        )
    return out
