"""The broker topology as RabbitMQ sees it."""

from __future__ import annotations

import json
import subprocess

from shared import topology


def _queues(vhost: str) -> dict[str, dict]:
    out = subprocess.run(
        [
            "rabbitmqctl",
            "-q",
            "list_queues",
            "-p",
            vhost,
            "name",
            "type",
            "arguments",
            "durable",
            "--formatter",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {q["name"]: q for q in json.loads(out.stdout)}


def test_each_consumer_has_a_durable_quorum_queue_with_a_dead_letter_queue(rabbit_backend):
    vhost = rabbit_backend.broker_url.rsplit("/", 1)[-1] or "/"
    queues = _queues(vhost)
    for name in topology.SUBSCRIPTIONS:
        q, dead = queues[name], queues[f"{name}.dead"]
        assert (
            q["type"] == "quorum" and q["durable"] and dead["type"] == "quorum" and dead["durable"]
        )
        args = {k: v for k, _type, v in q["arguments"]}
        assert args["x-dead-letter-exchange"] == "progress.dead"
        assert args["x-dead-letter-routing-key"] == name
        assert int(args["x-delivery-limit"]) == topology.DELIVERY_LIMIT


def test_a_reset_links_event_reaches_the_notify_queue_alone_even_where_journal_hash_was_bound(
    backend,
):
    """The milestones queue once took every journal event (journal.#): declaring the topology removes that
    binding, so a reset link's token never reaches the milestones service (both backends)."""
    import uuid
    from datetime import timedelta

    from shared import broker, events
    from shared.db import utcnow
    from tests.support import drain, publish_events

    conn = broker.connect()
    try:
        channel = conn.default_channel
        topology.declare(conn)
        channel.queue_bind(
            queue="milestones.events", exchange=topology.EXCHANGE.name, routing_key="journal.#"
        )
        topology.declare(conn)  # what every process does when it starts
        drain("milestones.events", conn)
        drain("notify.events", conn)
        pid = str(uuid.uuid4())
        reset = events.make_event(
            "journal.password.reset_requested",
            source="/journal",
            subject=pid,
            data={
                "partner_id": pid,
                "token": "t" * 43,
                "expires_at": utcnow() + timedelta(minutes=30),
            },
        )
        entry = events.make_event(
            "journal.entry.deleted",
            source="/journal",
            subject=pid,
            data={"entry_id": str(uuid.uuid4()), "couple_id": None, "partner_id": pid},
        )
        publish_events(reset, entry)
        milestones = [json.loads(m.body)["id"] for m in drain("milestones.events", conn)]
        notify = [json.loads(m.body)["id"] for m in drain("notify.events", conn)]
    finally:
        conn.release()
    assert milestones == [entry["id"]]
    assert notify == [reset["id"]]
