"""The broker topology, declared from this one module in every process.

One durable topic exchange, ``progress``; each consuming service has a durable
queue named after itself with a dead-letter queue beside it. On RabbitMQ the
queues are quorum queues: replicated, and they count redeliveries, so a message
that keeps killing its consumer is dead-lettered by the broker itself.

Kombu's ``filesystem://`` transport routes a topic exchange across processes
only when every process has declared it, so everything is declared everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re

import amqp
from kombu import Connection, Exchange, Queue, binding

EXCHANGE = Exchange("progress", type="topic", durable=True)
DEAD_EXCHANGE = Exchange("progress.dead", type="direct", durable=True)

# Broker-side redelivery limit (quorum queues): covers a consumer that dies on a
# message; ordinary failures are retried and dead-lettered by the consumer itself.
DELIVERY_LIMIT = 20

# queue -> the routing keys it subscribes to
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "milestones.events": (
        "journal.partner.registered",
        "journal.couple.partnered",
        "journal.entry.recorded",
        "journal.entry.revised",
        "journal.entry.deleted",
        "journal.partner.erased",
        "notify.preferences.changed",
    ),
    "notify.events": (
        "milestones.milestone.achieved",
        "journal.partner.registered",
        "journal.couple.partnered",
        "journal.partner.erased",
        "journal.session.ended",
        "journal.password.reset_requested",
    ),
}

# Bindings an earlier version made, removed when the topology is declared: the milestones
# queue took every journal event ("journal.#"), and so would have taken a reset link's token.
RETIRED: dict[str, tuple[str, ...]] = {"milestones.events": ("journal.#",)}


def dead_letter_name(queue_name: str) -> str:
    return f"{queue_name}.dead"


def _is_amqp(conn: Connection) -> bool:
    return conn.transport_cls in ("amqp", "pyamqp", "amqps") or conn.transport.driver_type == "amqp"


def owner(queue_name: str) -> str:
    """The service that consumes a queue: the first word of its name."""
    return queue_name.partition(".")[0]


def _queue_specs(amqp: bool) -> dict[str, tuple[dict, list[tuple[Exchange, str]]]]:
    """Every queue by name: (its arguments, its bindings as (exchange, routing key))."""
    out: dict[str, tuple[dict, list[tuple[Exchange, str]]]] = {}
    for name, keys in SUBSCRIPTIONS.items():
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
        out[name] = (args, [(EXCHANGE, k) for k in keys])
        out[dead_letter_name(name)] = (dead_args, [(DEAD_EXCHANGE, name)])
    return out


def queues_for(conn: Connection) -> dict[str, Queue]:
    """Every queue of the topology, dead-letter queues included, by name."""
    return {
        name: Queue(
            name,
            bindings=[binding(ex, routing_key=k) for ex, k in bindings],
            durable=True,
            queue_arguments=args,
        )
        for name, (args, bindings) in _queue_specs(_is_amqp(conn)).items()
    }


def declare(conn: Connection) -> dict[str, Queue]:
    """Declare exchanges, queues and bindings; idempotent, run by every process.

    A service's own broker user may configure nothing (RabbitMQ refuses it,
    403): there the operator's definitions (``tandem broker-users``) made the
    topology before any process started, and the process checks it is there."""
    queues = queues_for(conn)
    if not _is_amqp(conn):
        _declare(conn.default_channel, queues)
        return queues
    channel = conn.channel()
    try:
        _declare(channel, queues)
    except amqp.exceptions.AccessRefused:
        channel = conn.channel()  # the refusal closed the other one
        EXCHANGE(channel).declare(passive=True)
        DEAD_EXCHANGE(channel).declare(passive=True)
        for q in queues.values():
            q(channel).queue_declare(passive=True)
    finally:
        if channel.is_open:
            channel.close()
    return queues


def _declare(channel, queues: dict[str, Queue]) -> None:
    EXCHANGE(channel).declare()
    DEAD_EXCHANGE(channel).declare()
    for q in queues.values():
        q(channel).declare()
    for name, keys in RETIRED.items():
        for key in keys:
            channel.queue_unbind(queue=name, exchange=EXCHANGE.name, routing_key=key)
            if hasattr(channel, "_exchange_file"):
                _unbind_in_file(channel, name, key)


def _unbind_in_file(channel, queue: str, routing_key: str) -> None:
    """Kombu's filesystem transport (the embedded broker) keeps an exchange's bindings in a file
    that its ``queue_unbind`` leaves as it was (kombu 5.7): the binding is taken out there, under
    the transport's own lock."""
    from kombu.transport import filesystem
    from kombu.utils.json import dumps, loads

    try:
        f = channel._exchange_file(EXCHANGE.name).open("rb+", buffering=0)
    except FileNotFoundError:
        return
    try:
        filesystem.lock(f, filesystem.LOCK_EX)
        table = loads(f.read().decode())
        kept = [b for b in table if not (b[0] == routing_key and b[2] == queue)]
        if len(kept) != len(table):
            f.seek(0)
            f.write(dumps(kept).encode())
            f.truncate()
    finally:
        filesystem.unlock(f)
        f.close()


# --- who may do what: one RabbitMQ user per service ---


def permissions(service: str) -> dict[str, str]:
    """A service's own broker user's permissions on its vhost, as narrow as its
    processes allow (measured on RabbitMQ): it configures nothing (the topology
    comes from the definitions); it writes to ``progress`` (its relay) and, if
    it consumes, to ``progress.dead`` (its consumer's dead letters); it reads
    only its own queue. On ``progress`` it may publish only its own event
    types (topic permission on the routing key) and bind nothing. Checking
    that an exchange or a queue exists (a passive declare) needs no permission."""
    own = [re.escape(name) for name in SUBSCRIPTIONS if owner(name) == service]
    return {
        "configure": "^$",
        "write": f"^{re.escape(EXCHANGE.name)}$"
        if not own
        else f"^({re.escape(EXCHANGE.name)}|{re.escape(DEAD_EXCHANGE.name)})$",
        "read": f"^({'|'.join(own)})$" if own else "^$",
        "topic_write": f"^{re.escape(service)}\\.",
        "topic_read": "^$",
    }


def password_hash(password: str) -> str:
    """RabbitMQ's default scheme (rabbit_password_hashing_sha256): a 4-byte salt,
    then SHA-256 of salt and password, in base64."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode(
        "ascii"
    )


def definitions(
    vhost: str, users: dict[str, tuple[str, str]], admin: tuple[str, str] | None = None
) -> dict:
    """RabbitMQ definitions (import at boot, ``rabbitmqctl import_definitions``
    or the management UI): the vhost, the whole topology, each service's user
    (``users``: service -> (name, password)) with its permissions, and an
    operator's user (``admin``) for ``tandem dlq`` and ``tandem watch``.
    Passwords are only hashed into it."""

    def user(name: str, password: str, tags: list[str]) -> dict:
        return {
            "name": name,
            "password_hash": password_hash(password),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": tags,
            "limits": {},
        }

    out: dict = {
        "vhosts": [{"name": vhost}],
        "users": [],
        "permissions": [],
        "topic_permissions": [],
        "exchanges": [],
        "queues": [],
        "bindings": [],
    }
    if admin:
        out["users"].append(user(*admin, ["administrator"]))
        out["permissions"].append(
            {"user": admin[0], "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
        )
    for service, (name, password) in users.items():
        perms = permissions(service)
        out["users"].append(user(name, password, []))
        out["permissions"].append(
            {
                "user": name,
                "vhost": vhost,
                "configure": perms["configure"],
                "write": perms["write"],
                "read": perms["read"],
            }
        )
        out["topic_permissions"].append(
            {
                "user": name,
                "vhost": vhost,
                "exchange": EXCHANGE.name,
                "write": perms["topic_write"],
                "read": perms["topic_read"],
            }
        )
    for ex in (EXCHANGE, DEAD_EXCHANGE):
        out["exchanges"].append(
            {
                "name": ex.name,
                "vhost": vhost,
                "type": ex.type,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
        )
    for name, (args, bindings) in _queue_specs(amqp=True).items():
        out["queues"].append(
            {"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": args}
        )
        for ex, key in bindings:
            out["bindings"].append(
                {
                    "source": ex.name,
                    "vhost": vhost,
                    "destination": name,
                    "destination_type": "queue",
                    "routing_key": key,
                    "arguments": {},
                }
            )
    return out
