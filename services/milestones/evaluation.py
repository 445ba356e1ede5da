"""Deciding, storing and announcing milestones.

Evaluation reads a partner's daily aggregates (the days the registry of
``rules`` says each rule reads back: a hundred rows or so; of every older
day only its episodes, for the change-point scan; of the couple scans' 26
weeks before those only the ratings) and runs the pure rules:
a partner's own rules read the aggregates of all their entries
(``days``), the couple's rules both partners' aggregates of their shared
entries alone (``shared_days``), so a private entry counts only toward its
author's own milestones. It happens (1) once a partner's events have settled after new
data, coalesced however many events arrived, and (2) on a daily schedule in the
partner's own time zone, since a good month brings fewer events.

Late data (an app that synced weeks late, in any order) is replayed: the
detectors are run as of every local date from the earliest date the new data
touched up to today, so the milestones end the same as if every entry had
arrived on its day. Each (type, level, owner) is stored once, ever, with its
evidence, and announced through the outbox in the same transaction: one
event per look and milestone, at the highest level reached on that look,
carrying the picture of the change (``rules.picture``).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
from sqlalchemy import (
    String,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from shared.db import insert_if_new, lock_until_commit, utcnow
from shared.outbox import emit

from . import rules
from .local_time import local_today, zone
from .rules import DayAggregate, Detection, History, check_in_rhythm, rituals_kept
from .rules.aggregates import RATINGS, EpisodeDaysHistory, RatedDaysHistory
from .rules.registry import READS, SINCE_FIRST, Reads
from .rules.windows import BASELINE_LOGGED_DAYS, RHYTHM_WEEKS
from .tables import batches, days, milestones, outbox, partners, shared_days

SOURCE = "/milestones"
MAX_REPLAY_DAYS = 400
DAILY_AT = time(
    4, 0
)  # local time of the scheduled evaluation: after the day is over for almost everyone


def next_daily_run(tz_name: str | None, now: datetime) -> datetime:
    tz = zone(tz_name)
    local = now.astimezone(tz)
    run = datetime.combine(local.date(), DAILY_AT, tz)
    if run <= local:
        run = datetime.combine(local.date() + timedelta(days=1), DAILY_AT, tz)
    return run.astimezone(UTC)


# What the rules read back of each table from an evaluation date (the head, the recent days, the ratings of the
# couple scans' older days and, for SINCE_FIRST, the episodes of every day since the first) is the registry's
# READS: the most any rule of the table's scope reads.


def _aggregates(rows) -> list[DayAggregate]:
    """The days' aggregates from rows of ``_Reads.day``'s columns, in their order (a few hundred an
    evaluation): their ``detail`` texts are decoded in one go (one JSON array), not one call a row."""
    rows = list(rows)
    details = json.loads("[" + ",".join(r[3] for r in rows) + "]")
    return [
        DayAggregate.trusted(
            {
                "day": day,
                "logged": entries > 0,
                "episodes": episodes,
                "intensities": tuple(d["intensities"]),
                "communication": tuple(d["communication"]),
                "connection": tuple(d["connection"]),
                "understanding": tuple(d["understanding"]),
                "rituals": tuple(d["rituals"]),
                "activities": activities,
                "conflicts": conflicts,
                "conflicts_repaired_24h": repaired,
                "weekly_check_ins": check_ins,
            }
        )
        for (day, entries, episodes, _, activities, conflicts, repaired, check_ins), d in zip(
            rows, details
        )
    ]


class _Reads:
    """The statements an evaluation reads one table of daily aggregates with (``days`` or
    ``shared_days``) and the days back they read (``windows``: the registry's for the table's scope), built
    once (building a statement costs more CPU than sending it)."""

    def __init__(self, t, windows: Reads):
        self.windows = windows
        # Only the columns an aggregate is made of; ``detail`` as its text, decoded by ``_aggregates`` for all
        # the rows in one go (the driver's decoding, one call a row, cost more than the rest of a row's read).
        self.day = (
            t.c.local_date,
            t.c.entries,
            t.c.episodes,
            cast(t.c.detail, Text).label("detail"),
            t.c.activities,
            t.c.conflicts,
            t.c.conflicts_repaired_24h,
            t.c.weekly_check_ins,
        )
        mine = t.c.partner_id == bindparam("pid")
        # Of one partner (``pid``) or of two (and ``other``): a couple's two in one statement each, every
        # statement's rows with their partner's id first.
        ours = t.c.partner_id.in_([bindparam("pid"), bindparam("other")])
        # The partial index's own predicate, as SQL text: a bound 0 would not match it in a prepared (generic)
        # plan.
        self.ritual_day = t.c.ritual_count > literal_column("0")
        self.all = select(*self.day).where(mine)

        # The baseline is the first 28 logged days within the first 56 (every stored day is a logged one: a day
        # whose last entry is deleted is deleted): the first 28 days stored, less those past the 56. Without a
        # head, the first day alone (the couple scans count their threshold's rise from it).
        def head(pid: str):
            return (
                select(t.c.partner_id, *self.day)
                .where(t.c.partner_id == bindparam(pid))
                .order_by(t.c.local_date)
                .limit(BASELINE_LOGGED_DAYS if windows.head else 1)
                .subquery()
            )

        recent = select(t.c.partner_id, *self.day).where(
            ours, t.c.local_date.between(bindparam("recent_start"), bindparam("last"))
        )
        # The heads and the recent days in one statement (a statement costs more than a few rows); a day in
        # both comes twice.
        self.head_and_recent = union_all(select(head("pid")), select(head("other")), recent)
        # A day as a number, YYYYMMDD (its ISO date less the dashes): parsed by numpy with the numbers next to
        # it, where an ISO date costs a conversion each (``_ordinals``).
        day_number = func.replace(cast(t.c.local_date, String), "-", "")
        # The scan's days before the recent days: two small columns of each.
        # "day:episodes,..." in one string: the scan reads hundreds of these on a long history, and a row
        # apiece (with the driver's date conversion) cost more than the scan itself.
        self.episodes_before = (
            select(
                t.c.partner_id,
                func.aggregate_strings(day_number + ":" + cast(t.c.episodes, String), ","),
            )
            .where(ours, t.c.local_date < bindparam("recent_start"))
            .group_by(t.c.partner_id)
        )
        self.older_rituals = select(t.c.partner_id, t.c.local_date, t.c.detail).where(
            ours, self.ritual_day, t.c.local_date < bindparam("recent_start")
        )
        # The ratings of the days before the recent days that the couple scans read, "[day,[communication],
        # [connection],[understanding]],..." in one string: a few small lists of a day, not its whole row and
        # an aggregate.
        packed = "[" + day_number
        for name in RATINGS:
            packed = packed + "," + cast(t.c.detail[name], String)
        self.ratings_before = (
            select(t.c.partner_id, func.aggregate_strings(packed + "]", ","))
            .where(
                ours,
                t.c.local_date >= bindparam("ratings_start"),
                t.c.local_date < bindparam("recent_start"),
            )
            .group_by(t.c.partner_id)
        )


_ALL, _SHARED = _Reads(days, READS[rules.PARTNER]), _Reads(shared_days, READS[rules.COUPLE])


def history(
    s: Session,
    partner_id: str | None,
    first_as_of: date | None = None,
    last_as_of: date | None = None,
    *,
    prior_rituals: bool = True,
    shared: bool = False,
    since_first: bool = False,
) -> tuple[History, Counter]:
    """The days the rules read for evaluations as of first_as_of..last_as_of,
    and the rituals (by tag) of every older day left out (unless
    ``prior_rituals`` is False: no ritual level can be new). Without dates: all.
    ``shared``: of the partner's shared entries alone (what the couple's rules read).
    ``since_first``: also every older day's episodes (what the change-point scan reads). The days of
    ``ratings`` back not among the recent ones are read by their ratings alone (what the couple scans read)."""
    if first_as_of is None or last_as_of is None:
        if partner_id is None:
            return History(()), Counter()
        db, reads = s.connection(), _SHARED if shared else _ALL
        return History(tuple(_aggregates(db.execute(reads.all, {"pid": partner_id})))), Counter()
    return histories(
        s,
        (partner_id,),
        first_as_of,
        last_as_of,
        prior_rituals=prior_rituals,
        shared=shared,
        since_first=since_first,
    )[0]


def histories(
    s: Session,
    partner_ids: tuple[str | None, ...],
    first_as_of: date,
    last_as_of: date,
    *,
    prior_rituals: bool = True,
    shared: bool = False,
    since_first: bool = False,
) -> list[tuple[History, Counter]]:
    """:func:`history` of one partner or of two (a couple's), each statement read for both at once; a
    partner None has no days."""
    if len(partner_ids) > 2:
        raise ValueError("one partner or two")
    db, reads = s.connection(), _SHARED if shared else _ALL
    pid, other = (*partner_ids, None)[:2]
    recent_start = first_as_of - timedelta(days=reads.windows.recent)
    args = {"pid": pid, "other": other, "recent_start": recent_start, "last": last_as_of}
    found: dict[str, list] = {}
    for row in db.execute(reads.head_and_recent, args):
        found.setdefault(row[0], []).append(row[1:])
    if not found:
        return [(History(()), Counter()) for _ in partner_ids]
    rows: dict[str, dict] = {}
    for p, days_read in found.items():
        # the head's first day is the first of all; of the head, the days past its window are left out
        head_end = min(r[0] for r in days_read) + timedelta(days=reads.windows.head)
        rows[p] = {r[0]: r for r in days_read if r[0] <= head_end or r[0] >= recent_start}
    prior: dict[str, Counter] = {p: Counter() for p in rows}
    if prior_rituals:
        for p, day, detail in db.execute(reads.older_rituals, args):
            if day not in rows[p]:
                prior[p].update(detail["rituals"])
    parts: dict[str, str] = {}
    if reads.windows.ratings > reads.windows.recent:
        args["ratings_start"] = first_as_of - timedelta(days=reads.windows.ratings)
        parts = dict(db.execute(reads.ratings_before, args).all())
    elif since_first:
        parts = dict(db.execute(reads.episodes_before, args).all())
    out = []
    for p in partner_ids:
        if p not in rows:
            out.append((History(()), Counter()))
            continue
        whole = _aggregates(rows[p].values())
        if reads.windows.ratings > reads.windows.recent:
            packed = json.loads(f"[{parts.get(p) or ''}]")
            read = {day.toordinal() for day in rows[p]}  # a day of the head is read whole
            ordinals = _ordinals(np.array([day[0] for day in packed], dtype=np.int64)).tolist()
            rated = [(o, *day[1:]) for o, day in zip(ordinals, packed) if o not in read]
            out.append((RatedDaysHistory(whole, rated), prior[p]))
        elif since_first:
            ordinals, episodes = _unpack_episodes(parts.get(p))
            # a day of the head is read whole
            fresh = ~np.isin(ordinals, [day.toordinal() for day in rows[p]])
            out.append((EpisodeDaysHistory(whole, ordinals[fresh], episodes[fresh]), prior[p]))
        else:
            out.append((History(tuple(whole)), prior[p]))
    return out


_EPOCH = date(1970, 1, 1).toordinal()


def _ordinals(numbers: np.ndarray) -> np.ndarray:
    """The ordinals (:meth:`date.toordinal`) of days given as numbers YYYYMMDD, by numpy."""
    year, month_day = np.divmod(numbers, 10000)
    month, day = np.divmod(month_day, 100)
    months = (year - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (month - 1)
    return months.astype("datetime64[D]").astype(np.int64) + (day - 1 + _EPOCH)


def _unpack_episodes(packed: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The days and episodes of ``episodes_before``'s "YYYYMMDD:episodes,..." as two arrays (ordinals,
    episodes), parsed by numpy in one call, not an object a day."""
    if not packed:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    numbers = np.fromstring(packed.replace(":", ","), dtype=np.int64, sep=",")
    return _ordinals(numbers[0::2]), numbers[1::2]


# Built once: run for every ritual and check-in the consumer applies.
_PARTNER = select(partners).where(partners.c.id == bindparam("pid"))
_OTHER = select(partners.c.id).where(
    partners.c.couple_id == bindparam("couple"),
    partners.c.id != bindparam("pid"),
    partners.c.erased.is_(False),
)
# The other partner's time zone: a couple's count milestone reached by a late entry is dated the
# earlier of the two partners' days (whichever partner's entry crossed the level, the same day).
_OTHER_TIMEZONE = _OTHER.with_only_columns(partners.c.timezone)
# The levels a partner out of a couple holds already.
_ACHIEVED_BY = select(milestones.c.type, milestones.c.level).where(
    milestones.c.owner_key == bindparam("pid")
)
# What the count milestones need, in one statement (``couple``, ``pid``, ``as_of``): the other partner,
# the levels held (the couple's and the partner's), and the couple's rituals as of ``as_of`` counted up to the
# top level's threshold. That many ritual days hold that many rituals at least, so no more are read: the
# count tells every level apart however long the history, from an index of the ritual days alone
# (ix_shared_days_rituals: the couple's count is of shared rituals), through the two partners' own ids
# (never a join a planner could turn into a scan of every couple's days).
_TOP_THRESHOLD = max(threshold for _, threshold in rules.RITUAL_LEVELS)
_OTHER_ONCE = select(_OTHER.cte("other").c.id).scalar_subquery()  # read once, used twice below
# Every level the partner and the couple hold, "type:level,...": a type is always of one scope (the
# partner's or the couple's), so its owner goes without saying.
_HELD = select(
    func.aggregate_strings(milestones.c.type + ":" + cast(milestones.c.level, String), ",")
).where(milestones.c.owner_key.in_([bindparam("couple"), bindparam("pid")]))
_FIRST_RITUAL_DAYS = (
    select(shared_days.c.ritual_count)
    .where(
        shared_days.c.partner_id.in_([bindparam("pid"), _OTHER_ONCE]),
        _SHARED.ritual_day,
        shared_days.c.local_date <= bindparam("as_of"),
    )
    .limit(_TOP_THRESHOLD)
    .subquery()
)
_RITUALS_UP_TO_TOP = select(func.coalesce(func.sum(_FIRST_RITUAL_DAYS.c.ritual_count), 0))
_COUNTS_STATE = select(_OTHER_ONCE, _HELD.scalar_subquery(), _RITUALS_UP_TO_TOP.scalar_subquery())
# Both partners' shared days in one statement (``pids``: the couple's one or two partners).
_PAIR = shared_days.c.partner_id.in_(bindparam("pids", expanding=True))
_DAYS_SINCE = select(shared_days.c.partner_id, *_SHARED.day).where(
    _PAIR,
    shared_days.c.local_date <= bindparam("as_of"),
    shared_days.c.local_date >= bindparam("since"),
)
_RITUAL_DAYS = select(shared_days.c.partner_id, *_SHARED.day).where(
    _PAIR, shared_days.c.local_date <= bindparam("as_of"), _SHARED.ritual_day
)


def audience(s: Session, owner, other_id: str | None, scope: str) -> list[str]:
    """Who may see it: the couple's both; a partner's own, the partner and,
    only if the owner shares, the other partner."""
    if scope == rules.COUPLE:
        return sorted(p for p in (owner.id, other_id) if p)
    return [owner.id] + ([other_id] if other_id and owner.share_milestones_with_partner else [])


_ONCE = (milestones.c.type, milestones.c.level, milestones.c.owner_key)  # uq_milestones_once


def _achieve(
    s: Session,
    owner,
    other_id: str | None,
    det: Detection,
    as_of: date,
    now: datetime,
    *,
    announce: bool = True,
) -> dict | None:
    """Store one level once, ever, and announce it (unless a higher level reached on the same look is
    announced instead: ``announce``); None if it was achieved before."""
    couple_id = owner.couple_id
    if det.scope == rules.COUPLE and not couple_id:
        return None
    owner_key = couple_id if det.scope == rules.COUPLE else owner.id
    row = {
        "id": str(uuid.uuid4()),
        "type": det.type,
        "level": det.level,
        "couple_id": couple_id,
        "partner_id": owner.id if det.scope == rules.PARTNER else None,
        "owner_key": owner_key,
        "achieved_at": now,
        "as_of": as_of,
        "headline": det.headline,
        "evidence": det.evidence,
    }
    # One statement: stored unless this (type, level, owner) is already (or another evaluator's transaction
    # storing it commits first: PostgreSQL waits for it, then does nothing), no savepoint to roll back to.
    db = s.connection()
    if db.execute(insert_if_new(db, milestones.c.id, _ONCE), row).first() is None:
        return None
    if not announce:
        return row
    data = {
        k: row[k]
        for k in (
            "id",
            "type",
            "level",
            "couple_id",
            "partner_id",
            "achieved_at",
            "headline",
            "evidence",
        )
    }
    data["audience"] = audience(s, owner, other_id, det.scope)
    if (shown := rules.picture(det)) is not None:
        data["picture"] = shown
    emit(
        s,
        outbox,
        "milestones.milestone.achieved",
        source=SOURCE,
        subject=couple_id or owner.id,
        data=data,
    )
    return row


def _all_detectors(
    mine: History,
    ours: History,
    theirs: History,
    as_of: date,
    in_couple: bool,
    prior_rituals: Counter,
    done: set[str],
) -> list[Detection]:
    """The partner's own rules on all their days; the couple's on both partners' shared days."""
    found = rules.detect_partner_milestones(mine, as_of, done)
    if in_couple:
        found += rules.detect_couple_milestones(ours, theirs, as_of, prior_rituals, done)
    return found


def _done(held: set[tuple[str, int]]) -> set[str]:
    """The types whose every level is held: their rules have nothing left to find."""
    return {
        type_ for type_, levels in rules.LEVELS.items() if all((type_, lv) in held for lv in levels)
    }


def evaluate_partner(
    s: Session,
    partner_id: str,
    now: datetime | None = None,
    *,
    dates: list[date] | None = None,
    through: date | None = None,
) -> list[dict]:
    """Run the detectors for one partner (and their couple) and record what is new.

    Without ``dates``: as of every date from the earliest the new data touched
    (or the day after the last evaluation) to ``through`` (default: today).
    """
    now = now or utcnow()
    owner = s.execute(select(partners).where(partners.c.id == partner_id)).first()
    if owner is None or owner.erased:
        return []
    today = local_today(owner.timezone, now)
    if dates is None:
        last = through or today
        start = owner.replay_from or last
        if owner.evaluated_through is not None and owner.evaluated_through < start:
            start = owner.evaluated_through + timedelta(days=1)
        start = max(start, last - timedelta(days=MAX_REPLAY_DAYS))
        dates = [start + timedelta(days=i) for i in range((last - start).days + 1)]
        if not dates:
            if through is not None:
                return []  # every day through ``through`` is looked at already
            dates = [today]
    # Rituals kept is a count of every ritual ever: its older rituals are read
    # only if a level not yet achieved is within the couple's total.
    other_id, counted, held = None, False, None
    if owner.couple_id:
        other_id, held, total = _counts_state(s.connection(), owner, max(dates))
        counted = _ritual_level_due(held, total)
    # own rules count no rituals; the scan's older days are read while a level of its rule is left to reach
    mine, _ = history(
        s,
        owner.id,
        min(dates),
        max(dates),
        prior_rituals=False,
        since_first=not held or any(t not in _done(held) for t in SINCE_FIRST),
    )
    (ours, prior), (theirs, prior_theirs) = (
        histories(
            s, (owner.id, other_id), min(dates), max(dates), prior_rituals=counted, shared=True
        )
        if owner.couple_id
        else [(History(()), Counter()), (History(()), Counter())]
    )
    prior.update(prior_theirs)
    first = mine.first_logged_day(today)
    done = _done(held) if held else set()
    found = [
        (as_of, det)
        for as_of in dates
        if first is not None and as_of >= first
        for det in _all_detectors(mine, ours, theirs, as_of, bool(owner.couple_id), prior, done)
    ]
    if not found:
        return []
    # A long-time partner's evaluation finds again the levels held for months: read with the counts' state
    # in a couple, else here, once for all of them, not one each (what is left is checked again as it is stored).
    if held is None:
        held = {(t, lv) for t, lv in s.connection().execute(_ACHIEVED_BY, {"pid": owner.id})}
    return _celebrate(s, owner, other_id, found, held, now)


def _celebrate(
    s: Session,
    owner,
    other_id: str | None,
    found: list[tuple[date, Detection]],
    held: set[tuple[str, int]],
    now: datetime,
) -> list[dict]:
    """Store every new level found, and announce one celebration per look and milestone: its highest new level.

    Levels of one milestone reached on the same look are one change seen at
    once, so they make one event (one notification), in the words of the
    highest level. Every level is still stored, once, ever, and listed in
    ``GET /v1/milestones`` as before: the couple reading their milestones
    sees each step the change has passed (a fall by 30%, by half, by 70%),
    dated the day it was seen, and a later look can never reach a level
    stored already (so it is never announced twice).
    """
    new = [(as_of, det) for as_of, det in found if (det.type, det.level) not in held]
    top = {}
    for as_of, det in new:  # the highest new level of each milestone on each look
        key = (as_of, det.type)
        if key not in top or det.level > top[key].level:
            top[key] = det
    achieved = []
    for as_of, det in new:
        key = (det.type, det.level)
        if key in held:
            continue
        row = _achieve(s, owner, other_id, det, as_of, now, announce=top[as_of, det.type] is det)
        if row:
            achieved.append(row)
            held.add(key)
    return achieved


def evaluate_counts(
    s: Session, partner_id: str, day: date, owner=None, *, check_in: bool = True
) -> list[dict]:
    """Count-based milestones (rituals kept, the check-in rhythm) need no
    settling: a count that reached 10 really did. Run in the consumer's
    transaction, as of the day touched.

    What it reads is bounded whatever the history: one statement for the
    other partner, the levels held and the ritual count (up to the top
    threshold); the check-in rhythm's 5 weeks while it is not achieved, and
    only for a check-in (``check_in``: the entry is one; another entry adds
    no week with a check-in, and the settled evaluation looks at the rhythm
    anyway); the rituals themselves only when the count reaches a new level.

    The count is the couple's: with several consumers, the other partner's
    ritual may be committing at this moment. The couple is locked first, so
    of two such transactions the later one counts both rituals (else each
    would count one short, and a threshold crossed by the pair be missed).

    ``owner``: the partner's row if the caller holds it, locked."""
    db = s.connection()
    if owner is None:
        owner = db.execute(_PARTNER, {"pid": partner_id}).first()
    if owner is None or owner.erased or not owner.couple_id:
        return []  # rituals kept and the check-in rhythm are the couple's
    lock_until_commit(db, f"milestones.couple:{owner.couple_id}")
    today = local_today(owner.timezone, utcnow())
    if day < today:  # a late entry: the couple's today, the same whichever partner's entry it is
        other_tz = db.execute(
            _OTHER_TIMEZONE, {"couple": owner.couple_id, "pid": owner.id}
        ).scalar()
        if other_tz is not None:
            today = min(today, local_today(other_tz, utcnow()))
    as_of = max(day, today)
    other_id, achieved, total = _counts_state(db, owner, as_of)
    pair = (owner.id, other_id)
    found: list[Detection] = []
    if check_in and (rules.CHECK_IN_RHYTHM, 1) not in achieved:
        since = as_of - timedelta(days=7 * RHYTHM_WEEKS - 1)
        found += check_in_rhythm.check_in_rhythm(
            *_pair_days(db, _DAYS_SINCE, pair, as_of, since), as_of
        )
    if _ritual_level_due(achieved, total):
        found += rituals_kept.rituals_kept(*_pair_days(db, _RITUAL_DAYS, pair, as_of), as_of)
    now = utcnow()
    return [row for det in found if (row := _achieve(s, owner, other_id, det, as_of, now))]


def _pair_days(
    db, statement, pair: tuple[str, str | None], as_of: date, since: date | None = None
) -> tuple[History, History]:
    """Each partner's days, read in one statement; no partner (None), no days."""
    rows: dict[str | None, list] = {pid: [] for pid in pair}
    for pid, *day in db.execute(
        statement, {"pids": [pid for pid in pair if pid], "as_of": as_of, "since": since}
    ):
        rows[pid].append(day)
    return History(tuple(_aggregates(rows[pair[0]]))), History(tuple(_aggregates(rows[pair[1]])))


def _counts_state(db, owner, as_of: date) -> tuple[str | None, set[tuple[str, int]], int]:
    """(the other partner's id or None, the levels the couple and the partner hold (type, level), the
    couple's rituals as of ``as_of`` counted up to the top threshold), in one statement."""
    other_id, held, total = db.execute(
        _COUNTS_STATE, {"couple": owner.couple_id, "pid": owner.id, "as_of": as_of}
    ).one()
    achieved = (
        {(type_, int(level)) for type_, _, level in (h.rpartition(":") for h in held.split(","))}
        if held
        else set()
    )
    return other_id, achieved, total


def _ritual_level_due(achieved: set[tuple[str, int]], total: int) -> bool:
    """Whether the couple's ritual count reaches a level not yet achieved.
    If not, the rituals of days the other rules do not read can be left
    unread: a total from fewer days only reaches fewer levels, all of them
    achieved already."""
    return any(
        total >= threshold and (rules.RITUALS_KEPT, level) not in achieved
        for level, threshold in rules.RITUAL_LEVELS
    )


# How long a batch still being applied holds its partner and couple after its last event came: its
# other events are on their way (a batch's events are committed, and published, together), unless a
# consumer or the broker is down. Past it, what has arrived is judged (a lost event never holds a
# partner for ever).
BATCH_HOLD = timedelta(minutes=10)


def _no_batch_in_flight(now: datetime):
    """No batch of the partner's, or of their couple's (whose shared days the couple's rules read),
    is half applied: a replay judges a batch whole, never a part of it."""
    return ~exists().where(
        batches.c.last_applied_at > now - BATCH_HOLD,
        or_(batches.c.partner_id == partners.c.id, batches.c.couple_id == partners.c.couple_id),
    )


def forget_stale_batches(s: Session, now: datetime) -> None:
    """Batches not heard from within ``BATCH_HOLD`` (an event lost to the dead letters) hold no one."""
    s.execute(delete(batches).where(batches.c.last_applied_at <= now - BATCH_HOLD))


def due_partners(s: Session, now: datetime, settle: timedelta, limit: int = 50) -> list[str]:
    """Partners whose new data has settled (first, oldest first), or whose daily
    evaluation is due, and who have no batch of entries half applied; locked
    (PostgreSQL) so that several evaluators never take the same one. Two
    statements, each on its own index: one with an OR of the two walked a
    whole index at the daily run."""
    live = and_(partners.c.erased.is_(False), _no_batch_in_flight(now))
    settled = list(
        s.execute(
            select(partners.c.id)
            .where(live, partners.c.dirty_since <= now - settle)
            .order_by(partners.c.dirty_since)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    if len(settled) == limit:
        return settled
    scheduled = s.execute(
        select(partners.c.id)
        .where(live, partners.c.next_scheduled_at <= now)
        .order_by(partners.c.next_scheduled_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (
        settled + [pid for pid in scheduled.scalars() if pid not in settled][: limit - len(settled)]
    )


def evaluate_due(s: Session, partner_id: str, now: datetime) -> list[dict]:
    """One scheduled or settled evaluation; the partner is marked clean and
    scheduled for tomorrow in their own time zone.

    A settled evaluation (new data) looks as of every day the data touched,
    through today. A scheduled one (time passing, nothing new) looks only
    through yesterday, a day complete: at 04:00 the day just begun holds none
    of its entries yet, and a look at it would be one the thresholds were not
    calibrated for (each day looked at once with all of its entries).
    """
    owner = s.execute(select(partners).where(partners.c.id == partner_id)).first()
    today = local_today(owner.timezone, now)
    new_data = owner.dirty_since is not None or owner.replay_from is not None
    through = today if new_data else today - timedelta(days=1)
    achieved = evaluate_partner(s, partner_id, now, through=through)
    evaluated = max(through, owner.evaluated_through) if owner.evaluated_through else through
    s.execute(
        update(partners)
        .where(partners.c.id == partner_id)
        .values(
            dirty_since=None,
            replay_from=None,
            evaluated_through=evaluated,
            next_scheduled_at=next_daily_run(owner.timezone, now),
        )
    )
    return achieved


# Partners never scheduled, locked as they are read (PostgreSQL; SQLite's writer holds the file): an
# erasure that comes meanwhile waits, then clears the run. One a consumer's transaction holds is skipped,
# not waited for: it is scheduled on a later tick.
_NEVER_SCHEDULED = (
    select(partners.c.id, partners.c.timezone)
    .where(partners.c.next_scheduled_at.is_(None), partners.c.erased.is_(False))
    .limit(500)
    .with_for_update(skip_locked=True)
)
_FIRST_RUN = (
    update(partners)
    .where(partners.c.id == bindparam("b_id"))
    .values(next_scheduled_at=bindparam("b_at"))
)


def schedule_new_partners(s: Session, now: datetime) -> None:
    """Partners never scheduled get their first daily run (in one batch of statements)."""
    runs = [
        {"b_id": pid, "b_at": next_daily_run(tz, now)} for pid, tz in s.execute(_NEVER_SCHEDULED)
    ]
    if runs:
        s.connection().execute(_FIRST_RUN, runs)
