"""The notify service's composition root: HTTP app, event consumer, outbox relay."""

from __future__ import annotations

from shared import logs, workers
from shared.config import Settings
from shared.outbox import Relay
from shared.web import create_base_app

from . import delivery, handlers, http, stream
from .tables import outbox, processed_events

SERVICE = "notify"
QUEUE = "notify.events"


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env(SERVICE)
    logs.configure(SERVICE)
    engine, sessions = workers.open_database(settings)
    app, api = create_base_app(
        settings,
        engine=engine,
        title="Tandem notify",
        description="Celebrations: the inbox, preferences, delivery channels and "
        "phones registered for push.",
    )
    app.extensions["notify"] = {
        "sessions": sessions,
        "settings": settings,
        "streams": stream.Slots(settings.streams_per_process, settings.streams_per_partner),
    }
    for bp in (http.inbox, http.prefs, http.targets, http.phones):
        api.register_blueprint(bp)
    return app


def make_consumer(settings: Settings | None = None):
    settings = settings or Settings.from_env(SERVICE)
    _, sessions = workers.open_database(settings, worker=True)
    return workers.make_consumer(
        settings, QUEUE, handlers.HANDLERS, processed_events, sessions=sessions
    )


def run_consumer() -> None:
    workers.run_consumer(Settings.from_env(SERVICE), QUEUE, handlers.HANDLERS, processed_events)


def make_relay(settings: Settings | None = None) -> Relay:
    return workers.make_relay(settings or Settings.from_env(SERVICE), outbox)


def run_relay() -> None:
    workers.run_relay(Settings.from_env(SERVICE), outbox)


def make_deliverer(settings: Settings | None = None) -> delivery.Deliverer:
    settings = settings or Settings.from_env(SERVICE)
    _, sessions = workers.open_database(settings, worker=True)
    return delivery.Deliverer(sessions, settings)


def run_delivery() -> None:
    settings = Settings.from_env(SERVICE)
    workers.run_periodic(settings, workers.Periodic("delivery", make_deliverer(settings).tick))
