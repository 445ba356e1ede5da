"""Reading and replaying a dead-letter queue (``<queue>.dead``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from kombu import Exchange, Producer

from shared import broker, topology


def _dead_queue(conn, queue: str):
    queues = topology.declare(conn)
    name = topology.dead_letter_name(queue)
    if name not in queues:
        raise KeyError(
            f"no dead-letter queue for {queue!r}; one of {', '.join(topology.SUBSCRIPTIONS)}"
        )
    return queues[name](conn.default_channel)


def _describe(message) -> dict:
    headers = message.headers or {}
    item = {
        "reason": headers.get("x-tandem-reason") or _death_reason(headers),
        "detail": headers.get("x-tandem-detail"),
        "dead_at": headers.get("x-tandem-dead-at"),
    }
    try:
        event = json.loads(message.body)
        item.update(event_id=event.get("id"), type=event.get("type"), subject=event.get("subject"))
    except (ValueError, AttributeError):
        item["body_bytes"] = len(message.body or b"")
    return item


def _death_reason(headers: dict) -> str | None:
    deaths = headers.get("x-death") or []
    return f"broker:{deaths[0].get('reason')}" if deaths else None


def peek(queue: str) -> Iterator[dict]:
    """Describe every dead letter, leaving them all in place."""
    with broker.connect() as conn:
        q = _dead_queue(conn, queue)
        held = []
        try:
            while (message := q.get(no_ack=False)) is not None:
                held.append(message)
                yield _describe(message)
        finally:
            for message in held:
                message.requeue()


def replay(queue: str) -> int:
    """Move every dead letter back to its queue, once. Returns how many moved."""
    n = 0
    with broker.connect() as conn:
        q = _dead_queue(conn, queue)
        producer = Producer(conn.channel(), exchange=Exchange(""), auto_declare=False)
        while (message := q.get(no_ack=False)) is not None:
            headers = {
                k: v
                for k, v in (message.headers or {}).items()
                if not k.startswith("x-tandem-") and k != "x-death"
            }
            producer.publish(
                message.body,
                routing_key=queue,
                headers=headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                delivery_mode=2,
                retry=True,
                retry_policy=broker.RETRY_POLICY,
            )
            message.ack()  # only after the copy is confirmed on the queue
            n += 1
    return n
