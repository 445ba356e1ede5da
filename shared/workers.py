"""Running a service's worker processes: the outbox relay, the event consumer
and periodic jobs, each stopping cleanly on SIGTERM or Ctrl-C."""

from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Callable

import structlog
from sqlalchemy import Table
from sqlalchemy.orm import sessionmaker

from shared import broker, logs
from shared.config import Settings
from shared.consumer import EventConsumer, Handler
from shared.db import is_transient, make_engine, make_session_factory
from shared.outbox import Relay, wake_relay_on_commit

log = structlog.get_logger("worker")


def _on_stop(stop: Callable[[], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop())


def keep_startup_objects() -> None:
    """Called once a process has started, before its loop: what starting made
    (modules, tables, schemas, built statements: 138,000 objects in a milestones
    process, scipy's included) is moved where the garbage collector no longer
    walks it. A full collection of a milestones process took 90 ms, a stall of
    everything the process was doing, every few thousand events; after this it
    walks only what the loop made."""
    gc.collect()
    gc.freeze()


def open_database(settings: Settings, *, worker: bool = False):
    """(engine, session factory) of the service's own database; a commit that
    wrote an outbox row wakes the relay.

    A worker's engine (`worker`) does not ping a pooled connection before each
    transaction, a round trip each: its loop retries what fails, and the first
    error on a connection the server dropped makes SQLAlchemy discard the whole
    pool. A web request has no such retry (it would answer 503): it pings."""
    engine = make_engine(settings.database_url, **({"pool_pre_ping": False} if worker else {}))
    sessions = make_session_factory(engine)
    wake_relay_on_commit(sessions, engine, settings.var_dir, settings.service)
    return engine, sessions


def make_relay(settings: Settings, outbox: Table) -> Relay:
    publisher = broker.Publisher(broker.connect(settings.broker_url))
    engine = make_engine(
        settings.database_url, pool_pre_ping=False
    )  # as open_database(worker=True)
    return Relay(engine, outbox, publisher, service=settings.service, var_dir=settings.var_dir)


def run_relay(settings: Settings, outbox: Table) -> None:
    logs.configure(settings.service)
    relay = make_relay(settings, outbox)
    _on_stop(relay.stop)
    keep_startup_objects()
    relay.run()


def make_consumer(
    settings: Settings,
    queue: str,
    handlers: dict[str, Handler],
    processed: Table,
    sessions: sessionmaker | None = None,
) -> EventConsumer:
    if sessions is None:
        _, sessions = open_database(settings, worker=True)
    return EventConsumer(
        broker.connect(settings.broker_url, heartbeat=30),
        queue,
        handlers,
        sessions,
        processed,
        broker_url=settings.broker_url,
    )


def run_consumer(
    settings: Settings, queue: str, handlers: dict[str, Handler], processed: Table
) -> None:
    logs.configure(settings.service)
    consumer = make_consumer(settings, queue, handlers, processed)

    def stop():
        consumer.should_stop = True

    _on_stop(stop)
    log.info("consumer_started", queue=queue)
    keep_startup_objects()
    consumer.run()
    log.info("consumer_stopped", queue=queue)


class Periodic:
    """Calls `tick()` again and again; it returns how long to wait before the next call."""

    def __init__(self, name: str, tick: Callable[[], float]):
        self.name = name
        self.tick = tick
        self.stop_event = threading.Event()

    def run(self) -> None:
        log.info("periodic_started", job=self.name)
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                wait = self.tick()
                backoff = 0.5
            except Exception as e:
                log.warning(
                    "periodic_failed",
                    job=self.name,
                    error=type(e).__name__,
                    transient=is_transient(e),
                )
                wait, backoff = backoff, min(backoff * 2, 30)
            self.stop_event.wait(wait)
        log.info("periodic_stopped", job=self.name)

    def stop(self) -> None:
        self.stop_event.set()


def run_periodic(settings: Settings, job: Periodic) -> None:
    logs.configure(settings.service)
    _on_stop(job.stop)
    keep_startup_objects()
    job.run()
