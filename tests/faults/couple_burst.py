"""A burst of journal events for one couple, what the milestones service should
make of it (the same events applied one after another by one consumer), and
the milestones database's state to compare with.

The burst interleaves both partners' entries, revisions (some moving an entry
to another day) and deletions on a few days, so that concurrent consumers
touch the same day aggregates, and rituals that cross the rituals-kept
thresholds (10, 25, 50). Rituals are only ever recorded, never revised or
deleted, so whatever the order the events are applied in, each threshold is
crossed by exactly one ritual: a milestone's evidence counts exactly its
threshold, and a count that missed a concurrent ritual would show.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import func, select

from shared import events, migrate

TZ = "Europe/Paris"


def _event(type_: str, subject: str, data: dict, at: datetime) -> dict:
    return events.make_event(type_, source="/journal", subject=subject, data=data, time=at)


def couple(at: datetime) -> tuple[str, str, str, list[dict]]:
    """(partner a, partner b, couple id, the events that make them a couple)."""
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    evs = [
        _event(
            "journal.partner.registered",
            p,
            {
                "partner_id": p,
                "email": f"{p[:8]}@example.com",
                "display_name": name,
                "timezone": TZ,
            },
            at,
        )
        for p, name in ((a, "Ana"), (b, "Ben"))
    ]
    evs.append(
        _event(
            "journal.couple.partnered",
            c,
            {"couple_id": c, "partner_ids": [a, b]},
            at + timedelta(milliseconds=1),
        )
    )
    return a, b, c, evs


def _measures(kind: str, rng: random.Random) -> dict:
    if kind == "ritual":
        return {"ritual": rng.choice(["good_morning_text", "affection"])}
    if kind == "anxious_episode":
        return {"intensity": rng.randint(0, 10)}
    if kind == "daily_reflection":
        return {"mood": rng.randint(1, 10), "communication": rng.randint(1, 5)}
    return {"activity": rng.choice(["hobby", "friends"])}


def burst(a: str, b: str, c: str, n: int, start: datetime, seed: int = 5) -> list[dict]:
    """`n` entry events for the couple, in the order a journal would publish them."""
    rng = random.Random(seed)
    days = [date.today() - timedelta(days=d) for d in range(2, 6)]  # a few days: shared aggregates
    live: dict[str, dict] = {}
    out = []
    for i in range(n):
        at = start + timedelta(milliseconds=10 * i)
        pid = (a, b)[i % 2]
        mine = [e for e in live.values() if e["partner_id"] == pid and e["kind"] != "ritual"]
        roll = rng.random()
        if mine and roll < 0.15:  # a revision, sometimes to another day
            e = rng.choice(mine)
            day = rng.choice(days)
            e.update(
                local_date=day,
                occurred_at=datetime.combine(day, time(rng.randint(6, 22)), UTC),
                **_measures(e["kind"], rng),
            )
            out.append(_event("journal.entry.revised", c, dict(e), at))
        elif mine and roll < 0.25:
            e = live.pop(rng.choice(mine)["entry_id"])
            out.append(
                _event(
                    "journal.entry.deleted",
                    c,
                    {"entry_id": e["entry_id"], "couple_id": c, "partner_id": pid},
                    at,
                )
            )
        else:
            kind = (
                "ritual"
                if roll < 0.65
                else rng.choice(["anxious_episode", "daily_reflection", "independence_activity"])
            )
            day = rng.choice(days)
            e = {
                "entry_id": str(uuid.uuid4()),
                "couple_id": c,
                "partner_id": pid,
                "kind": kind,
                "occurred_at": datetime.combine(day, time(rng.randint(6, 22)), UTC),
                "local_date": day,
                "visibility": "shared",
                **_measures(kind, rng),
            }
            if kind != "ritual":
                live[e["entry_id"]] = e
            out.append(_event("journal.entry.recorded", c, dict(e), at))
    return out


def reference(evs: list[dict], tmp: Path) -> dict:
    """The milestones state after one consumer applied `evs` one after another
    (on a database of its own), as `state` reads it."""
    from services.milestones.app import handlers
    from services.milestones.tables import processed_events
    from shared.consumer import EventConsumer
    from shared.db import make_engine, make_session_factory

    url = f"sqlite:///{tmp / 'reference-milestones.sqlite3'}"
    migrate.upgrade("milestones", url)
    engine = make_engine(url)
    try:
        one = EventConsumer(
            None, "milestones.events", handlers(), make_session_factory(engine), processed_events
        )
        for ev in evs:
            parsed = events.parse(events.encode(ev))
            assert one.apply(parsed, one.handlers[parsed.type])
        return state(engine)
    finally:
        engine.dispose()


def state(engine) -> dict:
    """What the milestones service made of the events: entries, day aggregates,
    milestones (with the count that crossed each threshold), each event once."""
    from services.milestones.tables import (
        days,
        entries,
        milestones,
        outbox,
        partners,
        processed_events,
        shared_days,
    )

    with engine.connect() as conn:
        achieved = conn.execute(select(milestones)).all()
        announced = conn.execute(
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.routing_key == "milestones.milestone.achieved")
        ).scalar()
        return {
            "partners": {
                r.id: (r.couple_id, r.timezone, r.erased) for r in conn.execute(select(partners))
            },
            # what a deleted entry last looked like depends on the order (a revision
            # older than the deletion may come after it, and change nothing): not compared
            "entries": {
                r.id: (r.partner_id, True, r.version)
                if r.deleted
                else (r.partner_id, r.kind, r.local_date, r.measures, r.version)
                for r in conn.execute(select(entries))
            },
            **{
                name: {
                    (r.partner_id, r.local_date): (
                        r.entries,
                        r.episodes,
                        r.detail,
                        r.ritual_count,
                        r.ratings,
                        r.activities,
                        r.conflicts,
                        r.weekly_check_ins,
                    )
                    for r in conn.execute(select(table))
                }
                for name, table in (("days", days), ("shared_days", shared_days))
            },
            "milestones": sorted(
                (
                    m.type,
                    m.level,
                    m.owner_key,
                    m.as_of,
                    m.evidence.get("rituals"),
                    m.evidence.get("threshold"),
                )
                for m in achieved
            ),
            "announced": announced,
            "processed": conn.execute(select(func.count()).select_from(processed_events)).scalar(),
        }


def rituals_kept_levels(evs: list[dict]) -> list[tuple[str, int]]:
    """The rituals-kept milestones the rituals recorded in `evs` reach."""
    from services.milestones.rules import RITUAL_LEVELS

    n = sum(
        1 for e in evs if e["type"] == "journal.entry.recorded" and e["data"]["kind"] == "ritual"
    )
    return [("rituals_kept", level) for level, threshold in RITUAL_LEVELS if n >= threshold]
