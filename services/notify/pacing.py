"""When a push or an email may go out: pure rules, no database and no clock.

Two rules from the contract and the milestone science, both in the
recipient's own time zone:

- Quiet hours: a push or email falls due when the recipient's quiet hours end;
  the inbox gets everything at once (the inbox is never paced here).
- Pace: at most one push or email per recipient per channel per local day
  (the day runs from the recipient's local midnight); anything more waits for
  the next local day and is then folded into one message.

``now`` is always a parameter and must be an aware ``datetime``; every instant
returned is in UTC. An unknown or missing zone name falls back to UTC.

Wall-clock times that do not exist or exist twice
------------------------------------------------
Quiet hours are wall-clock times ("22:00"-"08:00"), and daylight saving makes
some wall-clock times missing (the spring-forward gap) or repeated (the
fall-back hour). The rule, applied the same way to every boundary (the start
and end of quiet hours, and local midnight):

- A time in a gap resolves to the first real instant after the gap, the
  moment the clocks jump (Paris, 2026-03-29: "02:30" resolves to 03:00 CEST,
  01:00 UTC). It is the first instant at which the wall clock reads that time
  or later.
- A time that occurs twice resolves so that quiet hours are as wide as the
  wall clock says: a start takes the earlier occurrence and an end takes the
  later one (Paris, 2026-10-25: an end at "02:30" is 02:30 CET, 01:30 UTC, not
  02:30 CEST). So every instant whose wall-clock time lies inside the quiet
  window is quiet; a send is never due while the recipient's clock reads a
  quiet time. Local midnight takes the earlier occurrence (the day starts the
  first time the clock reads 00:00).

Quiet windows of consecutive days that touch or overlap (possible only on a
daylight-saving night with a window of nearly 24 hours) are one quiet period:
the end returned is never itself inside quiet hours. A window whose start
equals its end (refused upstream) is empty: no quiet hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .celebrate import COUPLE_TITLE, FOLDED_TITLE, OWN_TITLE

UTC = UTC
IN_APP = "in_app"

Quiet = tuple[str, str] | None


# -- time zones and wall-clock times ------------------------------------------------------------


def zone(tz_name: str | None) -> ZoneInfo:
    """The recipient's zone; UTC when the name is missing or unknown."""
    try:
        return ZoneInfo(tz_name) if tz_name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _aware(now_utc: datetime) -> datetime:
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    return now_utc.astimezone(UTC)


def _hhmm(value: str) -> time:
    hours, _, minutes = value.partition(":")
    if len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError(f"quiet hours must be HH:MM, not {value!r}")
    return time(int(hours), int(minutes))


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def resolve(day: date, at: time, tz: ZoneInfo, *, later: bool) -> datetime:
    """The UTC instant at which the wall clock in ``tz`` reads ``at`` on ``day``.

    In a gap: the first instant after the gap. Twice: the later occurrence if
    ``later``, else the earlier one (see the module's docstring).
    """
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return first
    first_real = _wall(first, tz) == naive
    second_real = _wall(second, tz) == naive
    if first_real and second_real:  # the repeated hour
        return max(first, second) if later else min(first, second)
    if first_real or second_real:  # cannot happen with tzdata; be safe
        return first if first_real else second
    # A gap: the first instant whose wall-clock time is `naive` or later, found
    # by bisection between the two readings (whole seconds: tzdata's
    # transitions are).
    lo, hi = min(first, second), max(first, second)
    while hi - lo > timedelta(seconds=1):
        mid = (lo + (hi - lo) // 2).replace(microsecond=0)
        if _wall(mid, tz) >= naive:
            hi = mid
        else:
            lo = mid
    return hi  # the wall clock reads before `naive` at lo and at or after it at hi


def local_day(now_utc: datetime, tz_name: str | None) -> date:
    """The recipient's local calendar date at ``now``."""
    return _aware(now_utc).astimezone(zone(tz_name)).date()


def start_of_next_local_day(now_utc: datetime, tz_name: str | None) -> datetime:
    """The UTC instant of the recipient's next local midnight (DST-safe)."""
    tz = zone(tz_name)
    return resolve(local_day(now_utc, tz_name) + timedelta(days=1), time(0, 0), tz, later=False)


# -- quiet hours ---------------------------------------------------------------------------------


def _window(day: date, start: time, end: time, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
    """The quiet period that starts on local ``day``, as UTC [start, end); None when empty."""
    begins = resolve(day, start, tz, later=False)
    end_day = day if start < end else day + timedelta(days=1)
    ends = resolve(end_day, end, tz, later=True)
    return (begins, ends) if begins < ends else None


def quiet_until(now_utc: datetime, tz_name: str | None, quiet: Quiet) -> datetime | None:
    """If ``now`` is inside the recipient's quiet hours, the UTC instant they end; else None.

    ``quiet`` is ``(start, end)`` in local "HH:MM"; the window may cross
    midnight ("22:00", "08:00"). The end returned is never itself quiet.
    """
    now = _aware(now_utc)
    if not quiet:
        return None
    start, end = _hhmm(quiet[0]), _hhmm(quiet[1])
    if start == end:
        return None
    tz = zone(tz_name)
    windows: dict[date, tuple[datetime, datetime] | None] = {}

    def containing(t: datetime) -> list[datetime]:
        today = t.astimezone(tz).date()
        ends = []
        for offset in (-2, -1, 0, 1):
            day = today + timedelta(days=offset)
            if day not in windows:
                windows[day] = _window(day, start, end, tz)
            w = windows[day]
            if w is not None and w[0] <= t < w[1]:
                ends.append(w[1])
        return ends

    t = now
    while ends := containing(t):  # follow touching or overlapping windows to the very end
        t = max(ends)
    return None if t == now else t


def due_at(now_utc: datetime, tz_name: str | None, quiet: Quiet) -> datetime:
    """When a push or email made at ``now`` may go out: now, or when quiet hours end."""
    return quiet_until(now_utc, tz_name, quiet) or _aware(now_utc)


# -- daily pacing --------------------------------------------------------------------------------


def is_paced(channel: str) -> bool:
    """Email and push (webhook, Apprise) are paced; the inbox shows everything at once."""
    return channel != IN_APP


@dataclass(frozen=True)
class PendingItem:
    """A notification not yet sent on the channel being planned."""

    notification_id: str
    title: str
    body: str
    created_at: datetime


@dataclass(frozen=True)
class Send:
    """One message to send now, folding one or more notifications."""

    notification_ids: tuple[str, ...]
    title: str
    body: str


@dataclass(frozen=True)
class Plan:
    """What to do now on one channel for one recipient.

    ``send`` is the message to send now, or None. ``look_again_at`` is when to
    plan again (the end of quiet hours, or the start of the recipient's next
    local day, or a later instant if that one is quiet); None when there is
    nothing left to wait for.
    """

    send: Send | None
    look_again_at: datetime | None


FOLDED_INTRO = "Here's what you've been building:"


def _line(item: PendingItem) -> str:
    if item.title in (OWN_TITLE, COUPLE_TITLE) or not item.title:
        return f"• {item.body}"
    return f"• {item.title}: {item.body}"  # whose milestone it is, e.g. "Sam shared a milestone with you"


def fold(items: Iterable[PendingItem]) -> Send:
    """One message for every item, oldest first, each notification once.

    A single item keeps its own title and body. Several make "N things to
    celebrate" and a body listing each one, as it was written: nothing is
    compared, ranked or summed up between the partners.
    """
    unique: dict[str, PendingItem] = {}
    for item in sorted(items, key=lambda i: (_aware(i.created_at), i.notification_id)):
        unique.setdefault(item.notification_id, item)
    ordered = list(unique.values())
    if not ordered:
        raise ValueError("nothing to fold")
    ids = tuple(unique)
    if len(ordered) == 1:
        return Send(ids, ordered[0].title, ordered[0].body)
    body = "\n".join([FOLDED_INTRO, *(_line(i) for i in ordered)])
    return Send(ids, FOLDED_TITLE.format(count=len(ordered)), body)


def plan_sends(
    pending: Sequence[PendingItem],
    last_sent_at: datetime | None,
    now_utc: datetime,
    tz_name: str | None,
    quiet: Quiet,
) -> Plan:
    """Decide, for one recipient and one paced channel, what goes out now.

    ``pending``: the recipient's notifications not yet sent on this channel.
    ``last_sent_at``: when this channel last sent this recipient a message
    (any day; None if never). The rules, in the recipient's zone:

    - nothing pending: nothing to do;
    - a message already went out during the current local day (or a later
      one): nothing now; look again at the next local midnight after it,
      or when quiet hours then end;
    - quiet hours now: nothing now; look again when they end;
    - otherwise: one message now folding every pending item.
    """
    now = _aware(now_utc)
    if not pending:
        return Plan(None, None)
    if last_sent_at is not None:
        last = _aware(last_sent_at)
        if local_day(last, tz_name) >= local_day(now, tz_name):
            next_day = start_of_next_local_day(max(now, last), tz_name)
            return Plan(None, due_at(next_day, tz_name, quiet))
    ends = quiet_until(now, tz_name, quiet)
    if ends is not None:
        return Plan(None, ends)
    return Plan(fold(pending), None)
