"""Relay throughput: committed outbox rows to messages confirmed by RabbitMQ.

Anchor, in the same run on the same broker and queues: raw Kombu publishing
with publisher confirms, one message at a time (``Producer.publish`` on a
connection with ``confirm_publish``), the same bodies and routing key.

The relay under test is the journal's own (``services.journal.app.make_relay``):
it claims a batch of rows (``SELECT ... FOR UPDATE SKIP LOCKED`` and an UPDATE),
publishes the batch pipelined on one confirm channel, awaits the acks, and
marks the rows published. Each round: the anchor publishes N messages, the
queues are emptied, N outbox rows are committed (not timed), the relay moves
them all (timed); anchor and relay rounds alternate, and the medians are
compared, so a busy moment of a shared machine falls on both alike.

Usage: python -m bench.relay [--messages N] [--rounds R]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

from bench import setup


def _body(i: int) -> dict:
    return {"entry_id": str(uuid.uuid4()), "couple_id": None, "partner_id": str(uuid.uuid4())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    setup.servers()

    from kombu import Producer

    from services.journal import app as journal_app
    from services.journal.tables import outbox
    from shared import broker, events, topology
    from shared.db import make_engine, make_session_factory, unit_of_work
    from shared.outbox import emit

    conn = broker.connect()
    queues = topology.declare(conn)
    producer = Producer(conn, exchange=topology.EXCHANGE, auto_declare=False)
    relay = journal_app.make_relay()
    sessions = make_session_factory(
        make_engine(relay.engine.url.render_as_string(hide_password=False))
    )
    key = "journal.entry.deleted"
    sample = events.encode(events.make_event(key, source="/journal", subject="c", data=_body(0)))

    def empty_queues() -> None:
        for q in queues.values():
            q(conn.default_channel).purge()

    anchor, relayed, batches = [], [], []
    with unit_of_work(sessions) as s:  # nothing left from an earlier run
        s.execute(outbox.delete())
    for _ in range(args.rounds):
        empty_queues()
        t0 = time.perf_counter()
        for _ in range(args.messages):
            producer.publish(
                sample,
                routing_key=key,
                content_type=events.CONTENT_TYPE,
                content_encoding="utf-8",
                delivery_mode=2,
                message_id=str(uuid.uuid4()),
            )
        anchor.append(args.messages / (time.perf_counter() - t0))

        empty_queues()
        with unit_of_work(sessions) as s:
            for i in range(args.messages):
                emit(s, outbox, key, source="/journal", subject="c", data=_body(i))
        t0, moved, cycles = time.perf_counter(), 0, 0
        while moved < args.messages:
            moved += relay.relay_once()
            cycles += 1
        relayed.append(args.messages / (time.perf_counter() - t0))
        batches.append(cycles)
    empty_queues()
    with unit_of_work(sessions) as s:
        s.execute(outbox.delete())
    relay.publisher.close()
    conn.release()
    result = {
        "messages": args.messages,
        "rounds": args.rounds,
        "batch_size": relay.batch_size,
        "anchor_per_s": round(statistics.median(anchor)),
        "relay_per_s": round(statistics.median(relayed)),
        "ratio": round(statistics.median(relayed) / statistics.median(anchor), 2),
        "cycles_per_round": statistics.median(batches),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
