"""Fixtures: each integration test runs on both backends Tandem supports.

- ``embedded``: SQLite files and Kombu's ``filesystem://`` broker in a temp dir.
- ``servers``: a real PostgreSQL and a real RabbitMQ. URLs come from
  ``TEST_BROKER_URL`` and ``TEST_<SERVICE>_DATABASE_URL`` (``.ci/run`` sets
  them); otherwise 127.0.0.1 is used and the databases are made here. If the
  servers are not reachable the tests fail with a message: they never skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from services import SERVICES
from shared import broker, migrate, topology

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


@dataclass
class Backend:
    name: str
    broker_url: str
    db_urls: dict[str, str]
    var_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.name == "embedded"

    def env(self) -> dict[str, str]:
        """The environment a service process of this backend runs with."""
        env = {
            "TANDEM_VAR_DIR": str(self.var_dir),
            "BROKER_URL": self.broker_url,
            "ARGON2_PROFILE": "CHEAPEST",
            "NOTIFY_ALLOW_PRIVATE_TARGETS": "1",
        }
        for svc, url in self.db_urls.items():
            env[f"{svc.upper()}_DATABASE_URL"] = url
        env.update(self.extra_env)
        return env

    def engine(self, service: str):
        from shared.db import make_engine

        return make_engine(self.db_urls[service])


def _pg_url(service: str) -> str:
    return (
        os.environ.get(f"TEST_{service.upper()}_DATABASE_URL")
        or f"{DEFAULT_PG}/tandem_test_{service}"
    )


def _ensure_pg_database(url: str) -> None:
    u = make_url(url)
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": u.database}
            ).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{u.database}"'))
    except Exception as e:
        pytest.fail(
            f"PostgreSQL is not reachable at {u.host}:{u.port} ({type(e).__name__}). "
            "Start it, or set TEST_<SERVICE>_DATABASE_URL.",
            pytrace=False,
        )
    finally:
        admin.dispose()


def _require_rabbitmq(url: str) -> None:
    if not broker.ping(url, timeout=3):
        pytest.fail(
            f"RabbitMQ is not reachable at {make_url_safe(url)}. Start it (rabbitmq-server -detached), "
            "or set TEST_BROKER_URL.",
            pytrace=False,
        )


def make_url_safe(url: str) -> str:
    return url.split("@")[-1]


@pytest.fixture(scope="session")
def pg_databases() -> dict[str, str]:
    """The servers backend's databases, migrated once per run."""
    urls = {}
    for svc in SERVICES:
        url = _pg_url(svc)
        _ensure_pg_database(url)
        migrate.upgrade(svc, url)
        urls[svc] = url
    return urls


# Every table but alembic_version emptied and every sequence restarted, as a TRUNCATE of them all
# with RESTART IDENTITY would, in one round trip; but only the tables that hold a row are truncated:
# a TRUNCATE makes new files for each table it names, most of a second a test for all of them, and
# most tests write to a few. The tables are read each time: tests add their own (tests/support.py).
_EMPTY_EVERY_TABLE = """
DO $$
DECLARE
    t text;
    held boolean;
    dirty text[] := '{}';
BEGIN
    FOR t IN SELECT quote_ident(tablename) FROM pg_tables
             WHERE schemaname = current_schema() AND tablename <> 'alembic_version' LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', t) INTO held;
        IF held THEN
            dirty := dirty || t;
        END IF;
    END LOOP;
    IF cardinality(dirty) > 0 THEN
        EXECUTE 'TRUNCATE ' || array_to_string(dirty, ', ') || ' CASCADE';
    END IF;
    FOR t IN SELECT quote_ident(sequencename) FROM pg_sequences
             WHERE schemaname = current_schema() AND last_value IS NOT NULL LOOP
        EXECUTE format('ALTER SEQUENCE %s RESTART', t);
    END LOOP;
END $$
"""


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory) -> dict[str, Path]:
    """Each service's SQLite database, migrated once a run; every embedded backend starts from a
    copy (migrating three files again took about half a second a test)."""
    folder = tmp_path_factory.mktemp("sqlite-templates")
    made = {}
    for svc in SERVICES:
        made[svc] = folder / f"{svc}.sqlite3"
        migrate.upgrade(svc, f"sqlite:///{made[svc]}")
        assert not Path(f"{made[svc]}-wal").exists(), "the migration's writes are in the file"
    return made


def _truncate(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text(_EMPTY_EVERY_TABLE))
    finally:
        engine.dispose()


def _reset_broker(url: str) -> None:
    with broker.connect(url) as conn:
        channel = conn.channel()
        for name in topology.queues_for(conn):
            try:
                channel.queue_delete(name)
            except Exception:
                channel = conn.channel()
        topology.declare(conn)


BACKENDS = ["embedded", "servers"]


def _make_backend(kind: str, request, tmp_path: Path, monkeypatch) -> Backend:
    """A clean backend of `kind` with its var dir under `tmp_path`, set in this process's environment
    through `monkeypatch` (function-scoped, or a ``pytest.MonkeyPatch`` a wider fixture undoes)."""
    var = tmp_path / "var"
    var.mkdir(exist_ok=True)
    if kind == "embedded":
        b = Backend(
            "embedded", "filesystem://", {s: f"sqlite:///{var}/{s}.sqlite3" for s in SERVICES}, var
        )
        for svc, template in request.getfixturevalue("sqlite_templates").items():
            shutil.copyfile(template, var / f"{svc}.sqlite3")
    else:
        urls = request.getfixturevalue("pg_databases")
        burl = os.environ.get("TEST_BROKER_URL", DEFAULT_BROKER)
        _require_rabbitmq(burl)
        for url in urls.values():
            _truncate(url)
        b = Backend("servers", burl, dict(urls), var)
    for k, v in b.env().items():
        monkeypatch.setenv(k, v)
    for svc in SERVICES:  # a service's own broker user would take the place of the backend's
        monkeypatch.delenv(f"{svc.upper()}_BROKER_URL", raising=False)
    if not b.embedded:
        _reset_broker(b.broker_url)
    return b


def _end_what_a_test_left(b: Backend) -> None:
    """Ends every session of the backend's databases still in a transaction or in a statement once
    its test is over, then fails the test's teardown naming them: a transaction a test leaves open
    (a lock a thread of it waits on) would otherwise hold the next test's TRUNCATE for ever."""
    if b.embedded:
        return  # each test has its own SQLite files: nothing it leaves can hold the next one
    names = [make_url(url).database for url in b.db_urls.values()]
    engine = create_engine(b.db_urls["journal"], isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            left = conn.execute(
                text(
                    "SELECT pid, datname, state, left(query, 80) FROM pg_stat_activity "
                    "WHERE datname = ANY(:names) AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend' "
                    "AND (state LIKE 'idle in transaction%' OR state = 'active')"
                ),
                {"names": names},
            ).all()
            for row in left:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": row.pid})
    finally:
        engine.dispose()
    if left:
        pytest.fail(
            "the test left sessions open (now ended): "
            + "; ".join(f"{r.datname} {r.state}: {r[3]}" for r in left),
            pytrace=False,
        )


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path, monkeypatch) -> Backend:
    """A clean backend, set in this process's environment as a service would see it."""
    b = _make_backend(request.param, request, tmp_path, monkeypatch)
    yield b
    _end_what_a_test_left(b)


@pytest.fixture
def rabbit_backend(request, tmp_path, monkeypatch) -> Backend:
    """For behaviour only a networked broker has (a connection that drops)."""
    b = _make_backend("servers", request, tmp_path, monkeypatch)
    yield b
    _end_what_a_test_left(b)


@pytest.fixture
def embedded_backend(request, tmp_path, monkeypatch) -> Backend:
    """For behaviour only the filesystem broker has (its exchange table files)."""
    return _make_backend("embedded", request, tmp_path, monkeypatch)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def mdb(backend):
    """The milestones service's own database."""
    engine = backend.engine("milestones")
    yield engine
    engine.dispose()


# --- the journal API, in process ---


def _journal_client():
    from services.journal.app import create_app

    app = create_app()
    app.testing = True
    return app.test_client()


@pytest.fixture
def journal(backend):
    """A Flask test client of the journal on the current backend."""
    return _journal_client()


@pytest.fixture
def rabbit_journal(rabbit_backend):
    """The journal on RabbitMQ and PostgreSQL only."""
    return _journal_client()


def sign_up(client, name: str = "Ana", timezone: str = "Europe/Paris") -> dict:
    """Sign up and log in; returns {"id", "email", "headers"} for a fresh partner."""
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    r = client.post(
        "/v1/accounts",
        json={
            "email": email,
            "password": "correct horse battery",
            "display_name": name,
            "timezone": timezone,
        },
    )
    assert r.status_code == 201, r.get_json()
    t = client.post("/v1/tokens", json={"email": email, "password": "correct horse battery"})
    assert t.status_code == 201, t.get_json()
    return {
        "id": r.get_json()["id"],
        "email": email,
        "headers": {"Authorization": f"Bearer {t.get_json()['access_token']}"},
    }


def make_couple(client) -> tuple[dict, dict, str]:
    """Two partners in one couple: (a, b, couple_id)."""
    a, b = sign_up(client, "Ana"), sign_up(client, "Ben", "America/New_York")
    c = client.post("/v1/couples", headers=a["headers"])
    assert c.status_code == 201, c.get_json()
    j = client.post(
        "/v1/couples/join", headers=b["headers"], json={"invite_code": c.get_json()["invite_code"]}
    )
    assert j.status_code == 200, j.get_json()
    return a, b, c.get_json()["id"]


# In every note the tests write (unless a test sets its own): its words must
# never reach any output of the suite (see the log scan below).
NOTE_MARKER = "tandem-private-note"


def entry(kind: str = "anxious_episode", **fields) -> dict:
    body = {
        "id": new_id(),
        "kind": kind,
        "occurred_at": "2026-11-20T07:30:00+01:00",
        "note": f"{NOTE_MARKER}: the walk helped, then the message from him",
    }
    if kind == "anxious_episode":
        body["intensity"] = 5
    body.update(fields)
    return body


# --- no secret in any log line of the whole suite ---------------------------
#
# Every test's captured stderr and stdout (where the services' JSON logs go) are read after the test
# (passed ones too), and so is the output of every process the e2e tests start
# (tests/e2e/conftest.py writes it to stderr when the processes stop). Any email
# address, JWT or note found fails the run at its end. The patterns are this
# file's own, not shared.logs' (a line that went around the redaction must be
# found too). Notes: every note the tests write holds NOTE_MARKER (the entry()
# helper's default, the e2e and fault loads'); push tokens hold tests.fcm's
# TOKEN_MARKER; test_privacy_logs checks more.

_EMAIL = __import__("re").compile(
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_JWT = __import__("re").compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
_LEAKS: dict[
    str, None
] = {}  # ordered, each once (a report repeats the sections of the phases before it)


def _leaks_in(text: str) -> list[str]:
    from tests.fcm import TOKEN_MARKER  # in every push token the tests register

    found = []
    for pattern in (_EMAIL, _JWT):
        found += [m.group(0) for m in pattern.finditer(text)]
    for marker in (NOTE_MARKER, TOKEN_MARKER):
        if marker in text:
            found.append(text[text.index(marker) :][:40])
    return found


def pytest_runtest_logreport(report):
    for section, content in report.sections:
        if section.startswith("Captured log"):
            continue  # pytest's own copy of the raw records, formatted by pytest: not what the services write
        for leak in _leaks_in(content):
            _LEAKS[f"{report.nodeid} ({section}): {leak[:12]}..."] = None


def pytest_sessionfinish(session, exitstatus):
    if _LEAKS:
        print(
            "\nAn email address, a token or a note reached the output of the suite:\n  "
            + "\n  ".join(list(_LEAKS)[:50])
        )
        session.exitstatus = 1
