"""The broker topology, declared from this one module in every process.

One durable topic exchange, ``progress``; each consuming service has a durable
queue named after itself with a dead-letter queue beside it. On RabbitMQ the
queues are quorum queues: replicated, and they count redeliveries, so a message
that keeps killing its consumer is dead-lettered by the broker itself.

Kombu's ``filesystem://`` transport routes a topic exchange across processes
only when every process has declared it, so everything is declared everywhere.
"""
from __future__ import annotations

from kombu import Connection, Exchange, Queue, binding

EXCHANGE = Exchange("progress", type="topic", durable=True)
DEAD_EXCHANGE = Exchange("progress.dead", type="direct", durable=True)

# Broker-side redelivery limit (quorum queues): covers a consumer that dies on a
# message; ordinary failures are retried and dead-lettered by the consumer itself.
DELIVERY_LIMIT = 20

# queue -> the routing keys it subscribes to
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "milestones.events": ("journal.#", "notify.preferences.changed"),
    "notify.events": (
        "milestones.milestone.achieved",
        "journal.partner.registered",
        "journal.couple.partnered",
        "journal.partner.erased",
    ),
}


def dead_letter_name(queue_name: str) -> str:
    return f"{queue_name}.dead"


def _is_amqp(conn: Connection) -> bool:
    return conn.transport_cls in ("amqp", "pyamqp", "amqps") or conn.transport.driver_type == "amqp"


def queues_for(conn: Connection) -> dict[str, Queue]:
    """Every queue of the topology, dead-letter queues included, by name."""
    amqp = _is_amqp(conn)
    out: dict[str, Queue] = {}
    for name, keys in SUBSCRIPTIONS.items():
        dead = dead_letter_name(name)
        args = {}
        dead_args = {}
        if amqp:
            args = {
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": DEAD_EXCHANGE.name,
                "x-dead-letter-routing-key": name,
                "x-delivery-limit": DELIVERY_LIMIT,
            }
            dead_args = {"x-queue-type": "quorum"}
        out[name] = Queue(
            name,
            bindings=[binding(EXCHANGE, routing_key=k) for k in keys],
            durable=True,
            queue_arguments=args,
        )
        out[dead] = Queue(dead, exchange=DEAD_EXCHANGE, routing_key=name, durable=True,
                          queue_arguments=dead_args)
    return out


def declare(conn: Connection) -> dict[str, Queue]:
    """Declare exchanges, queues and bindings; idempotent, run by every process."""
    channel = conn.default_channel
    EXCHANGE(channel).declare()
    DEAD_EXCHANGE(channel).declare()
    queues = queues_for(conn)
    for q in queues.values():
        q(channel).declare()
    return queues
