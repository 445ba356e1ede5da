"""Fault injection: a PostgreSQL server of the test's own (so it can be
stopped and restarted without touching anyone else's), and Tandem's service
and worker processes started, and SIGKILLed, by the test.

The broker and the shared test databases come from the environment like in
the rest of the suite (``TEST_BROKER_URL``, ``TEST_<SERVICE>_DATABASE_URL``);
only the test that restarts PostgreSQL runs a server of its own.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import DEFAULT_BROKER, _require_rabbitmq, _reset_broker, free_port
from tests.e2e.conftest import ROOT, TANDEM


def _pg_bin() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        pytest.fail(
            "No PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)",
            pytrace=False,
        )
    return Path(found[-1]).parent


class PrivatePostgres:
    """A PostgreSQL server in a temporary directory, on a free port, trust auth:
    the test may stop, restart or kill it at will."""

    def __init__(self):
        self.bin = _pg_bin()
        self.port = free_port()
        # Not under pytest's tmp_path: its parents are private to root, and the
        # server must not run as root.
        self.root = Path(tempfile.mkdtemp(prefix="tandem-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 200\n"
                "fsync = off\nfull_page_writes = off\nshared_buffers = 32MB\n"
            )

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}\n{self.log_tail()}"
            )
        return out

    def log_tail(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except OSError:
            return ""

    def ctl(self, action: str, *args: str) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", action, *args
        )

    def start(self) -> None:
        self.ctl("start")

    def stop(self) -> None:
        self.ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self.ctl("restart", "-m", "fast")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine

        admin = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url(name)

    def destroy(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "stop", "-m", "immediate")
        except AssertionError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg():
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def rabbit_url() -> str:
    """The test broker (a vhost of the tests' own, emptied)."""
    url = os.environ.get("TEST_BROKER_URL", DEFAULT_BROKER)
    _require_rabbitmq(url)
    _reset_broker(url)
    return url


@dataclass
class Worker:
    """One worker process (`tandem worker SERVICE NAME`, or `code` of the test's
    own around a real worker), killed at the test's will."""

    service: str
    name: str
    env: dict[str, str]
    log: Path
    code: str | None = None
    proc: subprocess.Popen | None = None
    exits: list[int] = field(default_factory=list)

    def start(self) -> Worker:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        command = (
            [sys.executable, "-c", self.code]
            if self.code
            else TANDEM + ["worker", self.service, self.name]
        )
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no handler, no cleanup, no goodbye to the broker or the database."""
        self.proc.send_signal(signal.SIGKILL)
        self.exits.append(self.proc.wait(timeout=30))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.exits.append(self.proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"{self.service} {self.name} did not stop on SIGTERM:\n{self.output()}"
                ) from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self, tail: int | None = 3000) -> str:
        content = self.log.read_text() if self.log.exists() else ""
        return content[-tail:] if tail else content


@pytest.fixture
def workers(tmp_path):
    """Make worker processes: `workers(env, service, name, code=None)`; all stopped afterwards."""
    made: list[Worker] = []

    def make(env: dict[str, str], service: str, name: str, code: str | None = None) -> Worker:
        w = Worker(service, name, env, tmp_path / f"{service}-{name}-{len(made)}.log", code)
        made.append(w)
        return w

    yield make
    stuck = []
    for w in made:
        try:
            w.stop()
        except AssertionError as e:
            stuck.append(str(e))
    for w in made:  # read for secrets like every test's output (tests/conftest.py)
        sys.stderr.write(w.output(tail=None))
    assert not stuck, "\n".join(stuck)
