"""The journal's composition root: wires settings, database, hashing, tokens
and the outbox relay. ``create_app`` is what gunicorn serves."""
from __future__ import annotations

import signal

from argon2 import PasswordHasher, profiles

from shared import auth, broker, logs
from shared.config import Settings
from shared.db import make_engine, make_session_factory
from shared.outbox import Relay, install_local_waker
from shared.web import create_base_app

from . import http
from .tables import outbox

SERVICE = "journal"


def _hasher(profile: str) -> PasswordHasher:
    return PasswordHasher.from_parameters(getattr(profiles, profile))


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env(SERVICE)
    logs.configure(SERVICE)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    if engine.dialect.name == "sqlite":
        install_local_waker(sessions, settings.var_dir, SERVICE)
    app, api = create_base_app(
        settings, engine=engine, title="Tandem journal",
        description="Accounts, couples and the journal's entries. Every change is published as an event.",
    )
    app.extensions["journal"] = {
        "sessions": sessions,
        "hasher": _hasher(settings.argon2_profile),
        "issuer": auth.TokenIssuer(auth.private_key_pem(settings.var_dir), settings.token_ttl_seconds),
    }
    for bp in (http.accounts, http.couples, http.entries):
        api.register_blueprint(bp)
    return app


def make_relay(settings: Settings | None = None) -> Relay:
    settings = settings or Settings.from_env(SERVICE)
    engine = make_engine(settings.database_url)
    publisher = broker.Publisher(broker.connect(settings.broker_url))
    return Relay(engine, outbox, publisher, service=SERVICE, var_dir=settings.var_dir)


def run_relay() -> None:
    logs.configure(SERVICE)
    relay = make_relay()
    signal.signal(signal.SIGTERM, lambda *_: relay.stop())
    signal.signal(signal.SIGINT, lambda *_: relay.stop())
    relay.run()
