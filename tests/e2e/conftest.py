"""Every service started as real processes by `tandem run` (what `make run` does).

One `tandem run` a backend serves every end-to-end test of that backend (starting
it takes 15-20 s): each test makes its own accounts, and starts once the stack is
quiet (every outbox published), so what an earlier test set going is not counted
by the next. Its SMTP settings point at one real SMTP server (``mail``) that
records every message; a test reads the messages sent to its own addresses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from services import SERVICES
from services.journal.tables import outbox as journal_outbox
from services.milestones.tables import outbox as milestones_outbox
from services.notify.tables import deliveries
from services.notify.tables import outbox as notify_outbox
from shared.db import utcnow
from tests.conftest import BACKENDS, _make_backend, free_port
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
TANDEM = [sys.executable, "-m", "services.cli"]


@dataclass
class Running:
    proc: subprocess.Popen
    urls: dict[str, str]
    env: dict[str, str]
    log: Path  # what every process printed (a file: a pipe nobody reads would fill and block them)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        """SIGTERM, wait, and what every process printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("tandem run did not stop on SIGTERM within 30 s") from None
        out = self.output()
        self.log.unlink(missing_ok=True)
        return out


def process_env(backend, **extra: str) -> dict[str, str]:
    """The environment of a Tandem process on `backend`: this process's, minus
    any service URL of its own, plus the backend's and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_DATABASE_URL", "BROKER_URL"))}
    env.update(backend.env(), PYTHONUNBUFFERED="1", **extra)
    return env


def start_tandem(env: dict[str, str]) -> Running:
    """`tandem run` with `env` and a free port for each service, once every service is ready."""
    env = dict(env)
    urls = {}
    for name in SERVICES:
        port = free_port()
        env[f"{name.upper()}_PORT"] = str(port)
        urls[name] = f"http://127.0.0.1:{port}"
    fd, log = tempfile.mkstemp(prefix="tandem-run-", suffix=".log")
    with os.fdopen(fd, "w") as out:
        proc = subprocess.Popen(
            TANDEM + ["run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run = Running(proc, urls, env, Path(log))

    def ready():
        if proc.poll() is not None:
            raise AssertionError("tandem run exited:\n" + run.stop())
        try:
            return all(
                requests.get(u + "/readyz", timeout=1).status_code == 200 for u in urls.values()
            )
        except requests.RequestException:  # not listening yet, or workers still booting
            return False

    try:
        wait_until(ready, timeout=90, what="every service to be ready")
    except BaseException:
        run.stop()
        raise
    return run


class MailSink:
    """An SMTP server's handler: every message as (envelope recipients, raw bytes)."""

    def __init__(self):
        self.received: list[tuple[list[str], bytes]] = []
        self.url = ""  # smtp://host:port, once its server listens

    async def handle_DATA(self, server, session, envelope):
        self.received.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"

    def raw_to(self, *addresses: str) -> list[tuple[list[str], bytes]]:
        """The messages sent to any of `addresses`, as received."""
        return [(rcpt, raw) for rcpt, raw in list(self.received) if set(addresses) & set(rcpt)]

    def to(self, address: str) -> list:
        """The messages sent to `address`, parsed."""
        return [message_from_bytes(raw, policy=policy.default) for _, raw in self.raw_to(address)]


@pytest.fixture(scope="package")
def mail():
    """A real SMTP server on 127.0.0.1 that every e2e `tandem run` sends its emails to."""
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    sink.url = f"smtp://127.0.0.1:{controller.port}"
    yield sink
    controller.stop()


@pytest.fixture(scope="package", params=BACKENDS)
def backend(request, tmp_path_factory):
    """The e2e tests' backend, clean when the first of them starts: one a backend, shared."""
    with pytest.MonkeyPatch.context() as mp:
        yield _make_backend(
            request.param, request, tmp_path_factory.mktemp(f"e2e-{request.param}"), mp
        )


OUTBOXES = {"journal": journal_outbox, "milestones": milestones_outbox, "notify": notify_outbox}


@pytest.fixture(scope="package")
def stack(backend, mail):
    """`tandem run` on `backend`, shared by the e2e tests; stopped, and checked stopped, after the last."""
    env = process_env(
        backend, WEB_CONCURRENCY="2", MILESTONES_SETTLE_SECONDS="1", SMTP_URL=mail.url
    )
    if backend.embedded:  # the real embedded default: nothing set but where ./var is
        env.pop("BROKER_URL")
        for name in SERVICES:
            env.pop(f"{name.upper()}_DATABASE_URL", None)
    run = start_tandem(env)
    try:
        yield run
    finally:
        output = run.stop()
        sys.stderr.write(
            output
        )  # captured with the last test: read for secrets like every test's output
    for name, spec in SERVICES.items():
        for process in ["web", *spec.workers]:
            assert f"{name}.{process} stopped" in output, output[-3000:]
    for url in run.urls.values():
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/healthz", timeout=1)


@pytest.fixture
def outboxes(backend):
    """Each service's database engine and outbox table, read to tell when the system is quiet."""
    out = {svc: (backend.engine(svc), table) for svc, table in OUTBOXES.items()}
    yield out
    for engine, _ in out.values():
        engine.dispose()


def delivered_and_quiet(outboxes: dict) -> bool:
    """Every outbox published, and no delivery being sent or due now (a later email is
    held for the recipient's next day)."""
    for engine, table in outboxes.values():
        with engine.connect() as c:
            if c.execute(select(func.count()).where(table.c.published_at.is_(None))).scalar():
                return False
    with outboxes["notify"][0].connect() as c:
        return not c.execute(
            select(func.count())
            .select_from(deliveries)
            .where(
                (deliveries.c.status == "sending")
                | ((deliveries.c.status == "pending") & (deliveries.c.due_at <= utcnow()))
            )
        ).scalar()


@pytest.fixture
def running(stack, backend):
    """The shared `tandem run`, once every outbox is published: what earlier tests sent is delivered."""
    engines = {svc: backend.engine(svc) for svc in OUTBOXES}

    def quiet() -> bool:
        if stack.proc.poll() is not None:
            raise AssertionError("tandem run exited:\n" + stack.output()[-3000:])
        for svc, table in OUTBOXES.items():
            with engines[svc].connect() as c:
                if c.execute(select(func.count()).where(table.c.published_at.is_(None))).scalar():
                    return False
        return True

    try:
        wait_until(quiet, timeout=90, what="every outbox published before the test")
    finally:
        for e in engines.values():
            e.dispose()
    return stack
