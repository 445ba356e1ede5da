"""Consumer throughput: events a second through the milestones service's own
consumer, against a raw Kombu consume-and-ack loop on the same queue.

Each round fills ``milestones.events`` with N journal events (not timed): the
entries of 50 couples over their last 60 days, every kind the app records,
in the order a relay would publish them. The anchor drains N messages with a
plain ``kombu.Consumer`` (the service's prefetch, per-consumer QoS) that acks
each one; then the queue is filled again with new events and the milestones
consumer (``services.milestones.app.make_consumer``: parse, the idempotency
record, the projection and the day aggregates, the count milestones; one
transaction a batch of the messages waiting together, up to 10, acked after
its commit) takes them, timed until the N-th is recorded. Rounds alternate, medians compared.

Usage: python -m bench.consumer [--events N] [--rounds R]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from datetime import time as dtime

from bench import setup

KINDS = [
    ("daily_reflection", lambda r: {"mood": r.randint(1, 10), "communication": r.randint(1, 5)}),
    ("anxious_episode", lambda r: {"intensity": r.randint(0, 10)}),
    ("ritual", lambda r: {"ritual": "good_morning_text"}),
    ("independence_activity", lambda r: {"activity": "friends"}),
    ("conflict", lambda r: {"intensity": r.randint(0, 10)}),
    ("check_in", lambda r: {"connection": r.randint(1, 5), "understanding": r.randint(1, 5)}),
]


def couples(n: int, rng: random.Random) -> tuple[list[dict], list[tuple[str, str]]]:
    from shared import events

    out, pairs = [], []
    now = datetime.now(UTC)
    for _ in range(n):
        a, b, c = (str(uuid.uuid4()) for _ in range(3))
        for pid in (a, b):
            out.append(
                events.make_event(
                    "journal.partner.registered",
                    source="/journal",
                    subject=pid,
                    data={
                        "partner_id": pid,
                        "email": "bench@example.com",
                        "display_name": "B",
                        "timezone": "Europe/Paris",
                    },
                    time=now,
                )
            )
        out.append(
            events.make_event(
                "journal.couple.partnered",
                source="/journal",
                subject=c,
                data={"couple_id": c, "partner_ids": [a, b]},
                time=now,
            )
        )
        pairs += [(a, c), (b, c)]
    return out, pairs


def entries(pairs: list[tuple[str, str]], n: int, rng: random.Random) -> list[dict]:
    from shared import events

    now = datetime.now(UTC)
    out = []
    for _ in range(n):
        pid, c = rng.choice(pairs)
        day = now.date() - timedelta(days=rng.randint(1, 60))
        kind, measures = rng.choice(KINDS)
        occurred = datetime.combine(day, dtime(9, rng.randint(0, 59)), timezone(timedelta(hours=1)))
        out.append(
            events.make_event(
                "journal.entry.recorded",
                source="/journal",
                subject=c,
                data={
                    "entry_id": str(uuid.uuid4()),
                    "couple_id": c,
                    "partner_id": pid,
                    "kind": kind,
                    "occurred_at": occurred,
                    "local_date": day,
                    "visibility": "private",
                    **measures(rng),
                },
                time=now,
            )
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    setup.servers()

    from kombu import Consumer
    from sqlalchemy import func, select

    from services.milestones import app as milestones_app
    from services.milestones.tables import processed_events
    from shared import broker, events, topology
    from shared.db import make_engine

    rng = random.Random(6)
    conn = broker.connect()
    queues = topology.declare(conn)
    queue = queues["milestones.events"]
    for q in queues.values():
        q(conn.default_channel).purge()
    publisher = broker.Publisher(broker.connect())

    def fill(evs: list[dict]) -> None:
        for start in range(0, len(evs), 500):
            publisher.publish_many(
                (events.encode(e), e["type"], e["id"]) for e in evs[start : start + 500]
            )

    engine = make_engine(setup.servers()["MILESTONES_DATABASE_URL"])

    def processed() -> int:
        with engine.connect() as c:
            return c.execute(select(func.count()).select_from(processed_events)).scalar()

    # the couples, processed once before any timing
    setup_events, pairs = couples(50, rng)
    consumer = milestones_app.make_consumer()
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    base = processed()
    fill(setup_events)
    while processed() < base + len(setup_events):
        time.sleep(0.05)
    consumer.should_stop = True
    thread.join(timeout=30)

    anchor, service = [], []
    for _ in range(args.rounds):
        fill(entries(pairs, args.events, rng))
        got = [0]
        done = threading.Event()

        def ack(message):
            message.ack()
            got[0] += 1
            if got[0] >= args.events:
                done.set()

        with conn.channel() as channel:
            c = Consumer(
                channel,
                queues=[queue],
                on_message=ack,
                prefetch_count=consumer.prefetch,
                auto_declare=False,
            )
            c.qos(prefetch_count=consumer.prefetch, apply_global=False)
            t0 = time.perf_counter()
            with c:
                while not done.is_set():
                    conn.drain_events(timeout=10)
            anchor.append(args.events / (time.perf_counter() - t0))

        fill(entries(pairs, args.events, rng))
        before = processed()
        consumer = milestones_app.make_consumer()
        thread = threading.Thread(target=consumer.run, daemon=True)
        t0 = time.perf_counter()
        thread.start()
        while processed() < before + args.events:
            time.sleep(0.01)
        service.append(args.events / (time.perf_counter() - t0))
        consumer.should_stop = True
        thread.join(timeout=30)
    publisher.close()
    conn.release()
    engine.dispose()
    result = {
        "events": args.events,
        "rounds": args.rounds,
        "prefetch": consumer.prefetch,
        "anchor_per_s": round(statistics.median(anchor)),
        "consumer_per_s": round(statistics.median(service)),
        "ratio": round(statistics.median(service) / statistics.median(anchor), 3),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
