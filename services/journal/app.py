"""The journal's composition root: wires settings, database, hashing, tokens
and the outbox relay. ``create_app`` is what gunicorn serves."""

from __future__ import annotations

from argon2 import PasswordHasher, profiles
from werkzeug.middleware.proxy_fix import ProxyFix

from shared import auth, logs, workers
from shared.config import Settings, trusted_proxy_hops
from shared.outbox import Relay
from shared.web import create_base_app

from . import http
from .tables import outbox

SERVICE = "journal"


def _hasher(profile: str) -> PasswordHasher:
    return PasswordHasher.from_parameters(getattr(profiles, profile))


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env(SERVICE)
    logs.configure(SERVICE)
    engine, sessions = workers.open_database(settings)
    app, api = create_base_app(
        settings,
        engine=engine,
        title="Tandem journal",
        description="Accounts, couples and the journal's entries. Every change is published as an event.",
    )
    app.extensions["journal"] = {
        "sessions": sessions,
        "engine": engine,
        "hasher": _hasher(settings.argon2_profile),
        "issuer": auth.TokenIssuer(
            auth.private_key_pem(settings.var_dir), settings.token_ttl_seconds
        ),
    }
    for bp in (http.accounts, http.couples, http.entries):
        api.register_blueprint(bp)
    hops = trusted_proxy_hops()
    if (
        hops
    ):  # the client address (throttling) from that many proxies' X-Forwarded-For entries, no more
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=0, x_host=0, x_port=0, x_prefix=0)
    return app


def make_relay(settings: Settings | None = None) -> Relay:
    return workers.make_relay(settings or Settings.from_env(SERVICE), outbox)


def run_relay() -> None:
    workers.run_relay(Settings.from_env(SERVICE), outbox)
