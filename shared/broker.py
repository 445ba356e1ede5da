"""Broker connections and the publisher, with safe defaults in one place.

Publisher confirms are on (without them a lost message is silent), messages are
persistent, and a publish retries across reconnects.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import amqp
from kombu import Connection, Producer

from shared import config, topology
from shared.events import CONTENT_TYPE

RETRY_POLICY = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 3}


_FOLDER_TRANSPORTS: dict[str, type] = {}


def _filesystem_transport(root: Path) -> type:
    """Kombu's filesystem transport caches bindings in one process-wide state,
    so a process that uses a second broker folder would never write that
    folder's bindings. One transport class, with its own state, per folder."""
    from kombu.transport import filesystem, virtual

    key = str(root)
    if key not in _FOLDER_TRANSPORTS:
        _FOLDER_TRANSPORTS[key] = type(
            "FolderTransport",
            (filesystem.Transport,),
            {
                "global_state": virtual.BrokerState(),
                "Channel": _AtomicChannel,
                # A folder has no host: without a default of one, Kombu no longer warns at every
                # connection that it reverts to "localhost".
                "default_connection_params": {},
            },
        )
    return _FOLDER_TRANSPORTS[key]


def _atomic_channel():
    import fcntl
    import os
    import uuid
    from contextlib import contextmanager
    from time import monotonic

    from kombu.transport import filesystem
    from kombu.utils.json import dumps

    class AtomicChannel(filesystem.Channel):
        """Kombu's filesystem channel creates a file, then writes it: a reader
        in another process can find a message or an exchange table empty.
        Messages are written aside and renamed (readers only pick up names
        ending in ``.msg``); exchange tables are read and written under one
        lock file for the whole control folder, and a binding is in the file
        before ``queue_bind`` returns, whichever thread declared it first."""

        @contextmanager
        def _control_lock(self, mode):
            self.control_folder.mkdir(parents=True, exist_ok=True)
            with open(self.control_folder / ".lock", "a+") as f:
                fcntl.flock(f, mode)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)

        def queue_bind(self, queue, exchange=None, routing_key="", arguments=None, **kwargs):
            # Kombu skips the file when this process's shared state has the
            # binding already, and another thread may have put it there a
            # moment before writing the file: a publish in between would
            # route to nothing. Writing it here is idempotent, under the lock.
            super().queue_bind(queue, exchange, routing_key, arguments, **kwargs)
            exchange = exchange or "amq.direct"
            meta = self.typeof(exchange).prepare_bind(queue, exchange, routing_key, arguments)
            self._queue_bind(exchange, *meta)

        def get_table(self, exchange):
            with self._control_lock(fcntl.LOCK_SH):
                return super().get_table(exchange)

        def _queue_bind(self, exchange, routing_key, pattern, queue):
            with self._control_lock(fcntl.LOCK_EX):
                return super()._queue_bind(exchange, routing_key, pattern, queue)

        def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
            with self._control_lock(fcntl.LOCK_EX):
                return super()._delete(queue, exchange, routing_key, pattern, *args, **kwargs)

        def _put(self, queue, payload, **kwargs):
            name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
            final = os.path.join(self.data_folder_out, name)
            tmp = os.path.join(self.data_folder_out, f".{name}.tmp")
            with open(tmp, "wb") as f:
                f.write(dumps(payload).encode("utf-8"))
            os.replace(tmp, final)

    return AtomicChannel


_AtomicChannel = _atomic_channel()


def connect(url: str | None = None, *, heartbeat: int = 0) -> Connection:
    """A Kombu connection; ``filesystem://`` is kept under ``./var/broker/``."""
    url = url or config.broker_url()
    options: dict = {}
    transport = None
    if config.broker_is_embedded(url):
        root = config.var_dir() / "broker"
        for sub in ("queues", "processed", "control"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        options = {
            "data_folder_in": str(root / "queues"),
            "data_folder_out": str(root / "queues"),
            "processed_folder": str(root / "processed"),
            "control_folder": str(root / "control"),
            "store_processed": False,
            "polling_interval": 0.05,
        }
        transport = _filesystem_transport(root)
    else:
        options = {"confirm_publish": True, "max_retries": 3}
    return Connection(
        url,
        transport=transport,
        transport_options=options,
        heartbeat=heartbeat,
        connect_timeout=5,
        failover_strategy="round-robin",
    )


class Publisher:
    """Publishes encoded CloudEvents to the ``progress`` exchange with confirms."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._declared = False
        self._producer: Producer | None = None
        self._confirms: _Confirms | None = None

    def _ensure(self) -> Producer:
        if not self._declared:
            self.conn.ensure_connection(max_retries=RETRY_POLICY["max_retries"])
            topology.declare(self.conn)
            self._declared = True
        if self._producer is None:
            self._producer = Producer(self.conn, exchange=topology.EXCHANGE, auto_declare=False)
        return self._producer

    def publish(self, body: bytes, routing_key: str, message_id: str, *, exchange=None) -> None:
        producer = self._ensure()
        producer.publish(
            body,
            exchange=exchange or topology.EXCHANGE,
            routing_key=routing_key,
            content_type=CONTENT_TYPE,
            content_encoding="utf-8",
            delivery_mode=2,
            message_id=message_id,
            retry=True,
            retry_policy=dict(RETRY_POLICY, errback=self._on_reconnect),
        )

    def publish_many(self, messages: Iterable[tuple[bytes, str, str]]) -> int:
        """Publish (body, routing_key, message_id) triples; each confirmed before return.

        On AMQP they are pipelined: all sent on a channel in confirm mode, then
        the broker's acks awaited together (one round trip for the batch, not
        one a message). A nack, a confirm that does not come in time, or a lost
        connection raises: the caller publishes them again (consumers are
        idempotent by event id)."""
        messages = list(messages)
        if len(messages) > 1 and getattr(self.conn.transport, "driver_type", "") == "amqp":
            try:
                return self._pipelined(messages)
            except Exception:
                self._drop_confirms()  # a new channel next time: this one's tags are unknown now
                self._declared = False
                raise
        for body, key, mid in messages:
            self.publish(body, key, mid)
        return len(messages)

    def _drop_confirms(self) -> None:
        stale, self._confirms = self._confirms, None
        if stale is not None:
            try:
                stale.channel.close()
            except Exception:  # the connection went with it
                pass

    def _pipelined(self, messages: list[tuple[bytes, str, str]]) -> int:
        self._ensure()
        confirms = self._confirms
        if confirms is None or not confirms.channel.is_open:
            confirms = self._confirms = _Confirms(self.conn.connection.channel())
        first = confirms.sent + 1
        for body, key, mid in messages:
            msg = amqp.Message(
                body,
                content_type=CONTENT_TYPE,
                content_encoding="utf-8",
                delivery_mode=2,
                priority=0,
                message_id=mid,
                application_headers={},
            )
            amqp.Channel.basic_publish(
                confirms.channel, msg, exchange=topology.EXCHANGE.name, routing_key=key
            )
            confirms.sent += 1
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while not confirms.settled(first, confirms.sent):
            left = deadline - time.monotonic()
            if left <= 0:
                raise PublishNotConfirmed(f"no confirm within {CONFIRM_TIMEOUT:.0f} s")
            try:
                self.conn.connection.drain_events(timeout=min(left, 1.0))
            except TimeoutError:
                continue
        return len(messages)

    def _on_reconnect(self, *_):
        # After a reconnect the topology may be gone (a new node, a wiped broker).
        self._declared = False
        self._drop_confirms()

    def close(self) -> None:
        self.conn.release()


CONFIRM_TIMEOUT = 30.0


class PublishNotConfirmed(Exception):
    """The broker refused a message (nack) or did not confirm it in time."""


class _Confirms:
    """A channel in confirm mode and the delivery tags the broker has acked
    (one by one, or all up to a tag with ``multiple``). After a nack the
    channel is given up (the batch is published again on a new one)."""

    def __init__(self, channel):
        self.channel = channel
        self.sent = 0
        self.acked_upto = 0
        self.acked: set[int] = set()
        self.refused = False
        channel.confirm_select()
        channel.events["basic_ack"].add(self._ack)
        channel.events["basic_nack"].add(self._nack)

    def _ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self.acked_upto = max(self.acked_upto, delivery_tag)
            self.acked = {t for t in self.acked if t > self.acked_upto}
        else:
            self.acked.add(delivery_tag)

    def _nack(self, delivery_tag: int, multiple: bool) -> None:
        self.refused = True

    def settled(self, first: int, last: int) -> bool:
        """All of first..last confirmed; raises if the broker refused one."""
        if self.refused:
            raise PublishNotConfirmed("the broker refused a message (nack)")
        if last <= self.acked_upto:
            return True
        return all(t <= self.acked_upto or t in self.acked for t in range(first, last + 1))


def ping(url: str | None = None, timeout: float = 2.0) -> bool:
    """Is the broker reachable? For /readyz."""
    url = url or config.broker_url()
    if config.broker_is_embedded(url):
        root = config.var_dir() / "broker" / "queues"
        return Path(root).is_dir() or _mk(root)
    conn = Connection(url, connect_timeout=timeout)
    try:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:
        return False
    finally:
        conn.release()


def _mk(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return True


def definitions_from_env() -> dict:
    """RabbitMQ definitions for this deployment (topology.definitions): each
    service's own user from ``<SERVICE>_BROKER_URL``, the operator's from
    ``BROKER_URL`` when it names another user. Raises ValueError, saying which
    variable is wrong, when a service has no user of its own."""
    from services import SERVICES

    users: dict[str, tuple[str, str]] = {}
    vhosts = set()
    for service in SERVICES:
        var = f"{service.upper()}_BROKER_URL"
        url = config.broker_url(service)
        if url == config.broker_url() or config.broker_is_embedded(url):
            raise ValueError(f"set {var}: an amqp:// URL with the {service} service's own user")
        conn = Connection(url)
        if conn.userid in {name for name, _ in users.values()}:
            raise ValueError(
                f"{var}: each service needs a user of its own, not {conn.userid!r} again"
            )
        users[service] = (conn.userid, conn.password)
        vhosts.add(conn.virtual_host)
    if len(vhosts) != 1:
        raise ValueError("every <SERVICE>_BROKER_URL must name the same vhost")
    admin = None
    if not config.broker_is_embedded():
        operator = Connection(config.broker_url())
        if operator.userid not in {name for name, _ in users.values()}:
            admin = (operator.userid, operator.password)
    return topology.definitions(vhosts.pop(), users, admin)
