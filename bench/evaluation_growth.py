"""Does a partner's per-event and evaluation cost grow with their history?

Builds one couple with 2 months, 6 months, 1 year and 2 years of daily
journal data in the milestones database (via the real projection, event by
event), settles each (one committed evaluation as of today, as after its
last event), then times, interleaved in the same run:
- a settled evaluation as of today (what the evaluator does after new data),
- one new ritual entry through the consumer's handler (projection and the
  count milestones), one that crosses no ritual level.

Usage: python -m bench.evaluation_growth [--repeat N]   (uses MILESTONES_DATABASE_URL, or SQLite under ./var)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as dtime

from bench.setup import vacuum
from shared import config, events, migrate
from shared.db import make_engine, make_session_factory, unit_of_work

SPANS = {"2 months": 61, "6 months": 182, "1 year": 365, "2 years": 730}


def _event(type_, data, when):
    raw = events.make_event(
        type_,
        source="/journal",
        subject=str(data.get("couple_id") or data["partner_id"]),
        data=data,
        time=when,
    )
    return events.parse(raw)


def new_couple(sessions, handlers, tz: str = "Europe/Paris") -> tuple[str, str, str]:
    """Two partners registered and partnered, through the projection: (a, b, couple)."""
    a, b, couple = (str(uuid.uuid4()) for _ in range(3))
    now = datetime.now(UTC)
    with unit_of_work(sessions) as s:
        for pid in (a, b):
            handlers["journal.partner.registered"](
                s,
                _event(
                    "journal.partner.registered",
                    {
                        "partner_id": pid,
                        "email": "x@example.com",
                        "display_name": "X",
                        "timezone": tz,
                    },
                    now,
                ),
            )
        handlers["journal.couple.partnered"](
            s, _event("journal.couple.partnered", {"couple_id": couple, "partner_ids": [a, b]}, now)
        )
    return a, b, couple


def build(sessions, handlers, days: int, rng: random.Random):
    """One couple; `days` days of entries ending today, through the projection."""
    a, b, couple = new_couple(sessions, handlers)
    now = datetime.now(UTC)
    today = now.date()
    with unit_of_work(sessions) as s:
        for i in range(days):
            day = today - timedelta(days=days - i)
            for pid in (a, b):
                if rng.random() < 0.3:
                    continue
                kinds = [
                    (
                        "daily_reflection",
                        {"mood": rng.randint(3, 8), "communication": rng.randint(2, 5)},
                    )
                ]
                kinds += [
                    ("anxious_episode", {"intensity": rng.randint(2, 8)})
                    for _ in range(rng.randint(0, 2))
                ]
                if rng.random() < 0.15:
                    kinds.append(
                        (
                            "check_in",
                            {"connection": rng.randint(2, 5), "understanding": rng.randint(2, 5)},
                        )
                    )
                if rng.random() < 0.1:
                    kinds.append(("ritual", {"ritual": "good_morning_text"}))
                for kind, measures in kinds:
                    handlers["journal.entry.recorded"](
                        s, _entry(pid, couple, kind, day, measures, now)
                    )
    return a, b, couple


def _entry(pid, couple, kind, day: date, measures, now, visibility: str = "shared"):
    """A recorded entry's event; shared (the couple's rules read shared entries alone), unless said."""
    occurred = datetime.combine(day, dtime(9, 0), timezone(timedelta(hours=1)))
    return _event(
        "journal.entry.recorded",
        {
            "entry_id": str(uuid.uuid4()),
            "couple_id": couple,
            "partner_id": pid,
            "kind": kind,
            "occurred_at": occurred,
            "local_date": day,
            "visibility": visibility,
            **measures,
        },
        now,
    )


def open_milestones():
    """(url, engine, sessions, the consumer's handlers) of the milestones database, migrated."""
    from services.milestones import app as milestones_app

    url = config.database_url("milestones")
    migrate.upgrade("milestones", url)
    engine = make_engine(url)
    return url, engine, make_session_factory(engine), milestones_app.handlers()


def main(argv: list[str] | None = None) -> dict:
    from sqlalchemy import func, select

    from services.milestones import evaluation, tables
    from services.milestones.rules import RITUAL_LEVELS

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args(argv)
    url, engine, sessions, handlers = open_milestones()
    rng = random.Random(1)
    built = {label: build(sessions, handlers, days, rng) for label, days in SPANS.items()}
    # Settled, as a partner is between events: what their history reaches as
    # of today is achieved already (else every timed run would achieve it
    # again, and be rolled back).
    today = evaluation.local_today("Europe/Paris", datetime.now(UTC))
    with unit_of_work(sessions) as s:
        for a, b, _ in built.values():
            for pid in (a, b):
                evaluation.evaluate_partner(s, pid, dates=[today])
    # The timed ritual is an ordinary one: a level crossed (four times in a
    # couple's life) reads the couple's rituals once, and is not what every
    # event costs. Where the next ritual would cross one, it is crossed first.
    thresholds = {n for _, n in RITUAL_LEVELS}
    for a, b, couple in built.values():
        with unit_of_work(sessions) as s:
            total = s.execute(
                select(func.coalesce(func.sum(tables.days.c.ritual_count), 0)).where(
                    tables.days.c.partner_id.in_([a, b])
                )
            ).scalar()
            if total + 1 in thresholds:
                now = datetime.now(UTC)
                handlers["journal.entry.recorded"](
                    s,
                    _entry(
                        b, couple, "ritual", today - timedelta(days=1), {"ritual": "affection"}, now
                    ),
                )
    if (
        engine.dialect.name == "postgresql"
    ):  # built in a minute, not in years: what autovacuum did meanwhile
        vacuum(url)
    evals = {label: [] for label in SPANS}
    per_event = {label: [] for label in SPANS}
    # Interleaved: each round times every history once, so a busy moment of a
    # shared machine falls on all of them alike, and the ratios hold.
    for _ in range(args.repeat):
        for label, (a, _b, couple) in built.items():
            with unit_of_work(sessions) as s:
                t0 = time.perf_counter()
                evaluation.evaluate_partner(
                    s, a, dates=[evaluation.local_today("Europe/Paris", datetime.now(UTC))]
                )
                evals[label].append(time.perf_counter() - t0)
                s.rollback()
            with unit_of_work(sessions) as s:
                ev = _entry(
                    a,
                    couple,
                    "ritual",
                    datetime.now(UTC).date(),
                    {"ritual": "affection"},
                    datetime.now(UTC),
                )
                t0 = time.perf_counter()
                handlers["journal.entry.recorded"](s, ev)
                per_event[label].append(time.perf_counter() - t0)
                s.rollback()
    results = {}
    for label, days in SPANS.items():
        with unit_of_work(sessions) as s:
            today = evaluation.local_today("Europe/Paris", datetime.now(UTC))
            rows_read = len(evaluation.history(s, built[label][0], today, today)[0].days)
        results[label] = {
            "days": days,
            "rows_read": rows_read,
            "evaluate_ms": round(statistics.median(evals[label]) * 1000, 2),
            "per_event_ms": round(statistics.median(per_event[label]) * 1000, 2),
        }
    base = results["2 months"]
    for r in results.values():
        r["evaluate_ratio"] = round(r["evaluate_ms"] / base["evaluate_ms"], 2)
        r["per_event_ratio"] = round(r["per_event_ms"] / base["per_event_ms"], 2)
    out = {"database": engine.dialect.name, "repeat": args.repeat, "results": results}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
