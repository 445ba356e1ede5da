"""The idempotent event consumer.

Each event's id is recorded in the same transaction as its handler's changes,
so an event is applied once however often the broker delivers it; the message
is acked only after that transaction commits. A handler that fails is retried
with backoff a bounded number of times, then the message goes to the queue's
dead-letter queue; a message that is not a valid event goes there at once. A
database that is away is waited for (the message is not the problem). The
consumer reconnects by itself when the broker goes away.
"""
from __future__ import annotations

import json
import random
import time
from typing import Callable

import structlog
from kombu import Connection, Message, Producer
from kombu.mixins import ConsumerMixin
from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.orm import Session, sessionmaker

from shared import broker, events, metrics, topology
from shared.db import UTCDateTime, insert_if_new, is_transient, utcnow

log = structlog.get_logger("consumer")

Handler = Callable[[Session, events.Event], None]
DEAD_LETTER_DEPTH_EVERY = 30.0  # seconds between two looks at the dead-letter queue's depth


def processed_events_table(metadata: MetaData) -> Table:
    return Table(
        "processed_events",
        metadata,
        Column("event_id", String(36), primary_key=True),
        Column("type", String(120), nullable=False),
        Column("processed_at", UTCDateTime(), nullable=False),
    )


class Duplicate(Exception):
    pass


class EventConsumer(ConsumerMixin):
    def __init__(self, connection: Connection, queue_name: str, handlers: dict[str, Handler],
                 session_factory: sessionmaker, processed: Table, *, prefetch: int = 20,
                 max_attempts: int = 5, backoff: float = 0.2, transient_timeout: float = 60.0,
                 broker_url: str | None = None):
        self.connection = connection
        self.broker_url = broker_url
        self.queue_name = queue_name
        self.handlers = handlers
        self.session_factory = session_factory
        self.processed = processed
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.transient_timeout = transient_timeout
        self._dead_conn: Connection | None = None
        self._depth_measured = 0.0

    # --- kombu wiring ---
    def get_consumers(self, Consumer, channel):
        queues = topology.declare(self.connection)
        consumer = Consumer(queues=[queues[self.queue_name]], on_message=self.on_message,
                            prefetch_count=self.prefetch, auto_declare=False)
        consumer.qos(prefetch_count=self.prefetch, apply_global=False)  # quorum queues refuse global QoS
        return [consumer]

    def on_connection_error(self, exc, interval):
        log.warning("broker_connection_lost", queue=self.queue_name, retry_in=interval, error=type(exc).__name__)

    def on_connection_revived(self):
        log.info("broker_connected", queue=self.queue_name)

    # --- one message ---
    def on_message(self, message: Message) -> None:
        try:
            event = events.parse(message.body)
        except events.BadEvent as e:
            self.dead_letter(message, reason="unparseable", detail=str(e))
            message.ack()
            return
        handler = self.handlers.get(event.type)
        if handler is None:
            message.ack()  # a type this service does not care about
            return
        if self.apply(event, handler, message):
            message.ack()

    def apply(self, event: events.Event, handler: Handler, message: Message | None = None) -> bool:
        """Apply once, retrying; True when the message may be acked."""
        attempt = 0
        transient_since: float | None = None
        while True:
            try:
                self._apply_once(event, handler)
                metrics.EVENTS_CONSUMED.labels(self.queue_name, event.type).inc()
                return True
            except Duplicate:
                metrics.EVENTS_DUPLICATE.labels(self.queue_name, event.type).inc()
                return True
            except Exception as e:
                if is_transient(e):
                    transient_since = transient_since or time.monotonic()
                    if time.monotonic() - transient_since > self.transient_timeout:
                        log.warning("database_unavailable_requeue", queue=self.queue_name, event_id=event.id)
                        if message is not None:
                            message.requeue()
                        return False
                    time.sleep(min(5.0, 0.5 + random.random()))
                    continue
                attempt += 1
                metrics.EVENTS_FAILED.labels(self.queue_name, event.type).inc()
                log.warning("handler_failed", queue=self.queue_name, event_id=event.id, type=event.type,
                            attempt=attempt, error=type(e).__name__)
                if attempt >= self.max_attempts:
                    if message is not None:
                        self.dead_letter(message, reason="handler_failed", detail=f"{type(e).__name__}: {e}"[:300])
                    return True
                # Exponential backoff with full jitter.
                time.sleep(random.uniform(0, self.backoff * (2 ** (attempt - 1))))

    def _apply_once(self, event: events.Event, handler: Handler) -> None:
        session = self.session_factory()
        try:
            with session.begin():
                # Recorded first, in one statement (no savepoint): nothing
                # inserted means a consumer applied this event before, or a
                # concurrent one just did (ON CONFLICT waits for its commit).
                db = session.connection()
                if db.execute(insert_if_new(db.dialect.name, self.processed.c.event_id),
                              {"event_id": event.id, "type": event.type, "processed_at": utcnow()}).first() is None:
                    raise Duplicate()
                handler(session, event)
        finally:
            session.close()

    # --- dead letters ---
    def on_iteration(self) -> None:
        """Kombu calls this about once a second: the dead-letter queue's depth,
        every ``DEAD_LETTER_DEPTH_EVERY`` seconds, for /metrics."""
        now = time.monotonic()
        if now - self._depth_measured >= DEAD_LETTER_DEPTH_EVERY:
            self._depth_measured = now
            self.measure_dead_letters()

    def measure_dead_letters(self) -> int | None:
        dead = f"{self.queue_name}.dead"
        try:
            if self._dead_conn is None:
                self._dead_conn = broker.connect(self.broker_url)
            queue = topology.queues_for(self._dead_conn)[dead]
            depth = queue(self._dead_conn.default_channel).queue_declare(passive=True).message_count
        except Exception as e:  # the broker away: the last figure stands
            log.debug("dead_letter_depth_unknown", queue=dead, error=type(e).__name__)
            return None
        metrics.DEAD_LETTER_DEPTH.labels(dead).set(depth)
        return depth

    def dead_letter(self, message: Message, *, reason: str, detail: str) -> None:
        """Publish the message as it came to ``<queue>.dead``, confirmed, with why."""
        headers = dict(message.headers or {})
        headers.update({"x-tandem-reason": reason, "x-tandem-detail": detail,
                        "x-tandem-queue": self.queue_name, "x-tandem-dead-at": utcnow().isoformat()})
        if self._dead_conn is None:
            # A connection of its own: waiting for a confirm on the consuming
            # connection could dispatch the next delivery re-entrantly.
            self._dead_conn = broker.connect(self.broker_url)
        producer = Producer(self._dead_conn, exchange=topology.DEAD_EXCHANGE, auto_declare=False)
        body = message.body if isinstance(message.body, (bytes, str)) else json.dumps(message.body)
        producer.publish(body, routing_key=self.queue_name, headers=headers,
                         content_type=message.content_type or "application/octet-stream",
                         content_encoding=message.content_encoding or "binary",
                         delivery_mode=2, retry=True, retry_policy=broker.RETRY_POLICY)
        metrics.EVENTS_DEAD_LETTERED.labels(self.queue_name, reason).inc()
        log.warning("event_dead_lettered", queue=self.queue_name, reason=reason)
