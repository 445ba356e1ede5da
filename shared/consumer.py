"""The idempotent event consumer.

Each event's id is recorded in the same transaction as its handler's changes,
so an event is applied once however often the broker delivers it; the message
is acked only after that transaction commits. On RabbitMQ the messages that
have arrived while one is in hand are applied together, in one transaction,
acked after its commit (fewer round trips to the database when a backlog
forms); should that transaction fail, each is applied alone. A handler that
fails is retried with backoff a bounded number of times, then the message
goes to the queue's dead-letter queue; a message that is not a valid event,
or not its producer's (``forged``), goes there at once. A database that is away is waited for (the message is
not the problem). The consumer reconnects by itself when the broker goes away.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Callable

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
LINGER = 0.001  # with messages in hand, how long to wait for one more before applying them


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
    def __init__(
        self,
        connection: Connection,
        queue_name: str,
        handlers: dict[str, Handler],
        session_factory: sessionmaker,
        processed: Table,
        *,
        prefetch: int = 20,
        max_attempts: int = 5,
        backoff: float = 0.2,
        transient_timeout: float = 60.0,
        broker_url: str | None = None,
        batch_size: int = 10,
    ):
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
        # Several a transaction only where the broker takes back what a killed consumer held
        # (RabbitMQ); the filesystem broker loses it, so there a consumer holds one message.
        amqp = connection is not None and connection.transport.driver_type == "amqp"
        self.batch_size = max(1, min(batch_size, prefetch)) if amqp else 1
        self._batch: list[tuple[events.Event, Handler, Message]] = []
        self.settled = 0  # messages acked or given back
        self._at: int | None = None

    # --- kombu wiring ---
    def get_consumers(self, Consumer, channel):
        queues = topology.declare(self.connection)
        consumer = Consumer(
            queues=[queues[self.queue_name]],
            on_message=self.on_message,
            prefetch_count=self.prefetch,
            auto_declare=False,
        )
        consumer.qos(
            prefetch_count=self.prefetch, apply_global=False
        )  # quorum queues refuse global QoS
        return [consumer]

    def on_connection_error(self, exc, interval):
        log.warning(
            "broker_connection_lost",
            queue=self.queue_name,
            retry_in=interval,
            error=type(exc).__name__,
        )

    def on_connection_revived(self):
        log.info("broker_connected", queue=self.queue_name)

    def consume(self, limit=None, timeout=None, safety_interval=1, **kwargs):
        """kombu's loop (``ConsumerMixin.consume``), but with messages in hand the
        next one is waited for only ``LINGER`` seconds: when none is there, those
        in hand are applied (``flush``). On stopping, they are applied first."""
        elapsed = 0
        try:
            with self.consumer_context(**kwargs) as (conn, _channel, _consumers):
                for _ in (limit and range(limit)) or itertools.count():
                    if self.should_stop:
                        break
                    self.on_iteration()
                    try:
                        conn.drain_events(timeout=LINGER if self._batch else safety_interval)
                    except TimeoutError:
                        conn.heartbeat_check()
                        if self._batch:
                            self.flush()
                            continue
                        elapsed += safety_interval
                        if timeout and elapsed >= timeout:
                            raise
                    except OSError:
                        if not self.should_stop:
                            raise
                    else:
                        yield
                        elapsed = 0
                self.flush()
        finally:
            self._batch.clear()  # the connection lost: the broker gives back what was not acked

    # --- one message ---
    def on_message(self, message: Message) -> None:
        try:
            event = events.parse(message.body)
        except events.BadEvent as e:
            self.dead_letter(message, reason="unparseable", detail=str(e))
            self.settle(message)
            return
        forged = self.forged(event, message)
        if forged:
            self.dead_letter(
                message, reason=forged, detail=f"{event.type} from {event.source}"[:300]
            )
            self.settle(message)
            return
        handler = self.handlers.get(event.type)
        if handler is None:
            self.settle(message)  # a type this service does not care about
            return
        self._batch.append((event, handler, message))
        if len(self._batch) >= self.batch_size:
            self.flush()

    def forged(self, event: events.Event, message: Message) -> str | None:
        """Why an event is not its producer's (never applied), or None. Its
        source must be its type's producer, and on the ``progress`` exchange its
        routing key its type: RabbitMQ lets each service's user publish only on
        its own routing keys, so the key vouches for the sender, and the body
        must not claim another type. (A dead letter replayed by the operator
        comes through the default exchange, keyed by the queue's name.)"""
        if event.source != events.PRODUCERS[event.type]:
            log.warning(
                "event_from_another_source",
                queue=self.queue_name,
                type=event.type,
                source=event.source[:64],
            )
            return "wrong_source"
        info = message.delivery_info or {}
        if info.get("exchange") == topology.EXCHANGE.name and info.get("routing_key") != event.type:
            log.warning(
                "event_under_another_routing_key",
                queue=self.queue_name,
                type=event.type,
                routing_key=info.get("routing_key"),
            )
            return "wrong_routing_key"
        return None

    def flush(self) -> None:
        """Apply the messages in hand, in order: together in one transaction, each acked
        after its commit; if that transaction fails, each alone (retried, dead-lettered)."""
        batch, self._batch = self._batch, []
        failed: tuple[int, Exception] | None = None
        if len(batch) > 1:
            self._at = None
            try:
                fresh = self._apply_batch([(event, handler) for event, handler, _ in batch])
            except Exception as e:
                # The event whose handler failed has had its first attempt; the others none.
                failed = None if self._at is None or is_transient(e) else (self._at, e)
                log.info(
                    "batch_failed_applying_one_by_one",
                    queue=self.queue_name,
                    events=len(batch),
                    error=type(e).__name__,
                )
            else:
                for (event, _, message), new in zip(batch, fresh):
                    (metrics.EVENTS_CONSUMED if new else metrics.EVENTS_DUPLICATE).labels(
                        self.queue_name, event.type
                    ).inc()
                    self.settle(message)
                return
        for i, (event, handler, message) in enumerate(batch):
            if self.apply(
                event, handler, message, failure=failed[1] if failed and failed[0] == i else None
            ):
                self.settle(message)

    def settle(self, message: Message, requeue: bool = False) -> None:
        """Done with a message: acked (or given back to the queue)."""
        if requeue:
            message.requeue()
        else:
            message.ack()
        self.settled += 1

    def apply(
        self,
        event: events.Event,
        handler: Handler,
        message: Message | None = None,
        failure: Exception | None = None,
    ) -> bool:
        """Apply once, retrying; True when the message may be acked. `failure`: how
        a first attempt already failed (in a transaction with other events)."""
        attempt = 0
        transient_since: float | None = None
        while True:
            try:
                if failure is not None:
                    failed, failure = failure, None
                    raise failed
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
                        log.warning(
                            "database_unavailable_requeue", queue=self.queue_name, event_id=event.id
                        )
                        if message is not None:
                            self.settle(message, requeue=True)
                        return False
                    time.sleep(min(5.0, 0.5 + random.random()))
                    continue
                attempt += 1
                metrics.EVENTS_FAILED.labels(self.queue_name, event.type).inc()
                log.warning(
                    "handler_failed",
                    queue=self.queue_name,
                    event_id=event.id,
                    type=event.type,
                    attempt=attempt,
                    error=type(e).__name__,
                )
                if attempt >= self.max_attempts:
                    if message is not None:
                        self.dead_letter(
                            message,
                            reason="handler_failed",
                            detail=f"{type(e).__name__}: {e}"[:300],
                        )
                    return True
                # Exponential backoff with full jitter.
                time.sleep(random.uniform(0, self.backoff * (2 ** (attempt - 1))))

    def _apply_once(self, event: events.Event, handler: Handler) -> None:
        if not self._apply_batch([(event, handler)])[0]:
            raise Duplicate()

    def _apply_batch(self, batch: list[tuple[events.Event, Handler]]) -> list[bool]:
        """Apply each event in one transaction; for each, whether it was new (else applied before)."""
        session = self.session_factory()
        fresh = []
        try:
            with session.begin():
                db = session.connection()
                record = insert_if_new(db, self.processed.c.event_id)
                for i, (event, handler) in enumerate(batch):
                    self._at = i  # whose statements run now (flush blames a failure on it)
                    # Recorded first, in one statement (no savepoint): nothing
                    # inserted means a consumer applied this event before, or a
                    # concurrent one just did (ON CONFLICT waits for its commit).
                    new = (
                        db.execute(
                            record,
                            {"event_id": event.id, "type": event.type, "processed_at": utcnow()},
                        ).first()
                        is not None
                    )
                    if new:
                        handler(session, event)
                    fresh.append(new)
                self._at = None  # committing: a failure now is nobody's
        finally:
            session.close()
        return fresh

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
        headers.update(
            {
                "x-tandem-reason": reason,
                "x-tandem-detail": detail,
                "x-tandem-queue": self.queue_name,
                "x-tandem-dead-at": utcnow().isoformat(),
            }
        )
        if self._dead_conn is None:
            # A connection of its own: waiting for a confirm on the consuming
            # connection could dispatch the next delivery re-entrantly.
            self._dead_conn = broker.connect(self.broker_url)
        producer = Producer(self._dead_conn, exchange=topology.DEAD_EXCHANGE, auto_declare=False)
        body = message.body if isinstance(message.body, (bytes, str)) else json.dumps(message.body)
        producer.publish(
            body,
            routing_key=self.queue_name,
            headers=headers,
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or "binary",
            delivery_mode=2,
            retry=True,
            retry_policy=broker.RETRY_POLICY,
        )
        metrics.EVENTS_DEAD_LETTERED.labels(self.queue_name, reason).inc()
        log.warning("event_dead_lettered", queue=self.queue_name, reason=reason)
