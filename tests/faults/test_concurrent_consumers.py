"""Two milestones consumer processes on one queue (RabbitMQ, PostgreSQL) take a
burst of one couple's events at once: both partners' entries on the same few
days, revisions, deletions, rituals crossing the rituals-kept thresholds. The
end state (entries, day aggregates, milestones) is the one a single consumer
reaches applying the same events one after another: no update lost to a
concurrent one, no milestone twice, none missed, each event applied once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.milestones.tables import processed_events
from shared import broker
from tests.e2e.conftest import process_env
from tests.faults import couple_burst
from tests.support import drain, publish_events, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]  # processes killed, servers stopped


def queue_counts(name: str = "milestones.events") -> tuple[int, int]:
    """(messages ready, consumers attached) of a queue on the broker."""
    with broker.connect() as conn:
        _, ready, consumers = conn.default_channel.queue_declare(queue=name, passive=True)
        return ready, consumers


def _processed(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(processed_events)).scalar()


def test_two_consumers_on_one_couples_burst_end_as_one_consumer_would(
    rabbit_backend, workers, tmp_path
):
    start = datetime.now(UTC) - timedelta(hours=1)
    a, b, c, setup = couple_burst.couple(start)
    evs = couple_burst.burst(a, b, c, n=240, start=start + timedelta(seconds=1))
    levels = couple_burst.rituals_kept_levels(evs)
    assert len(levels) >= 3, "the burst crosses several thresholds"
    expected = couple_burst.reference(setup + evs, tmp_path)

    engine = rabbit_backend.engine("milestones")
    env = process_env(rabbit_backend)
    consumers = [workers(env, "milestones", "consumer").start() for _ in range(2)]
    try:
        publish_events(*setup)  # the couple exists first, as the journal publishes it
        wait_until(lambda: _processed(engine) == len(setup), timeout=60, what="the couple's events")
        wait_until(lambda: queue_counts()[1] == 2, timeout=30, what="both consumers on the queue")
        publish_events(*evs)
        wait_until(
            lambda: (
                _processed(engine) == len(setup) + len(evs) or not all(w.alive() for w in consumers)
            ),
            timeout=90,
            what="every event of the burst to be applied",
        )
        assert all(w.alive() for w in consumers), "\n".join(w.output() for w in consumers)
        for w in consumers:
            w.stop()
        got = couple_burst.state(engine)
    finally:
        engine.dispose()

    assert [w.exits for w in consumers] == [[0], [0]], "\n".join(w.output() for w in consumers)
    assert queue_counts() == (0, 0) and drain("milestones.events.dead") == [], (
        "every message acked, none dead"
    )
    for key in ("partners", "entries", "days", "milestones", "announced", "processed"):
        assert got[key] == expected[key], key
    assert "handler_failed" not in "".join(w.output() for w in consumers), (
        "no event failed, even once"
    )
    assert [m[:2] for m in got["milestones"]] == levels
