"""The milestones service's composition root: HTTP app, event consumer,
evaluator and outbox relay.

Only the consumer and the evaluator run the rules, and only they load
``evaluation`` (and with it numpy and scipy, some 50 MiB a process): the HTTP
app and the relay never import them (tests/unit/test_imports.py)."""

from __future__ import annotations

from datetime import timedelta

from shared import config, logs, workers
from shared.config import Settings
from shared.db import unit_of_work, utcnow
from shared.events import Event
from shared.outbox import Relay
from shared.web import create_base_app

from . import http, projection
from .tables import outbox, processed_events

SERVICE = "milestones"
QUEUE = "milestones.events"
COUNT_KINDS = {"ritual", "check_in"}


def settle_delay() -> timedelta:
    """How long a partner's events must be quiet before a statistical evaluation:
    a late sync arrives as a burst, and is judged whole, never half-way."""
    return timedelta(seconds=config.settle_seconds())


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env(SERVICE)
    logs.configure(SERVICE)
    engine, sessions = workers.open_database(settings)
    app, api = create_base_app(
        settings,
        engine=engine,
        title="Tandem milestones",
        description="Milestones detected from the journal's events, and progress series.",
    )
    app.extensions["milestones"] = {"sessions": sessions}
    api.register_blueprint(http.blp)
    return app


def _count_milestones_too(handler):
    """Rituals kept are counts: announced as soon as the count is reached."""
    from . import evaluation, rules

    def handle(s, ev: Event) -> None:
        partner = handler(s, ev)  # None: the event changed nothing, so no count did
        kind = ev.data.get("kind")
        if partner is not None and kind in COUNT_KINDS:
            check_in = kind == "check_in" or ev.data.get("ritual") == rules.CHECK_IN_RITUAL_TAG
            evaluation.evaluate_counts(
                s, partner.id, ev.data["local_date"], owner=partner, check_in=check_in
            )

    return handle


def handlers() -> dict:
    h = dict(projection.HANDLERS)
    for t in ("journal.entry.recorded", "journal.entry.revised"):
        h[t] = _count_milestones_too(h[t])
    return h


def make_consumer(settings: Settings | None = None):
    settings = settings or Settings.from_env(SERVICE)
    _, sessions = workers.open_database(settings, worker=True)
    return workers.make_consumer(settings, QUEUE, handlers(), processed_events, sessions=sessions)


def run_consumer() -> None:
    workers.run_consumer(Settings.from_env(SERVICE), QUEUE, handlers(), processed_events)


class Evaluator:
    """Evaluates partners whose events have settled, and each partner daily."""

    def __init__(self, sessions, settle: timedelta | None = None):
        self.sessions = sessions
        self.settle = settle if settle is not None else settle_delay()

    def tick(self) -> float:
        """Evaluate every partner now due, one transaction each; seconds to wait."""
        from . import evaluation

        now = utcnow()
        with unit_of_work(self.sessions) as s:
            evaluation.schedule_new_partners(s, now)
            evaluation.forget_stale_batches(s, now)
        done = 0
        while True:
            with unit_of_work(self.sessions) as s:
                due = evaluation.due_partners(s, utcnow(), self.settle, limit=1)
                if not due:
                    break
                evaluation.evaluate_due(s, due[0], utcnow())
                done += 1
        return 0.2 if done else 0.5


def make_evaluator(settings: Settings | None = None) -> Evaluator:
    _, sessions = workers.open_database(settings or Settings.from_env(SERVICE), worker=True)
    return Evaluator(sessions)


def run_evaluator() -> None:
    settings = Settings.from_env(SERVICE)
    workers.run_periodic(settings, workers.Periodic("evaluator", make_evaluator(settings).tick))


def make_relay(settings: Settings | None = None) -> Relay:
    return workers.make_relay(settings or Settings.from_env(SERVICE), outbox)


def run_relay() -> None:
    workers.run_relay(Settings.from_env(SERVICE), outbox)
