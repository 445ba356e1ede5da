"""Every service started as real processes by `tandem run` (what `make run` does)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from services import SERVICES
from tests.conftest import free_port
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
TANDEM = [sys.executable, "-m", "services.cli"]


@dataclass
class Running:
    proc: subprocess.Popen
    urls: dict[str, str]
    env: dict[str, str]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
            raise AssertionError("tandem run did not stop on SIGTERM within 30 s")
        return out


def process_env(backend, **extra: str) -> dict[str, str]:
    """The environment of a Tandem process on `backend`: this process's, minus
    any service URL of its own, plus the backend's and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL") and k != "BROKER_URL"}
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
    proc = subprocess.Popen(TANDEM + ["run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run = Running(proc, urls, env)

    def ready():
        if proc.poll() is not None:
            raise AssertionError("tandem run exited:\n" + run.stop())
        try:
            return all(requests.get(u + "/readyz", timeout=1).status_code == 200 for u in urls.values())
        except requests.RequestException:  # not listening yet, or workers still booting
            return False

    try:
        wait_until(ready, timeout=90, what="every service to be ready")
    except BaseException:
        run.stop()
        raise
    return run


@pytest.fixture
def running(backend):
    env = process_env(backend, WEB_CONCURRENCY="2", MILESTONES_SETTLE_SECONDS="1")
    if backend.embedded:  # the real embedded default: nothing set but where ./var is
        env.pop("BROKER_URL")
        for name in SERVICES:
            env.pop(f"{name.upper()}_DATABASE_URL", None)
    run = start_tandem(env)
    try:
        yield run
    finally:
        output = run.stop()
        sys.stderr.write(output)  # captured with the test: read for secrets like every test's output (tests/conftest.py)
    for name, spec in SERVICES.items():
        for process in ["web", *spec.workers]:
            assert f"{name}.{process} stopped" in output, output[-3000:]
    for url in run.urls.values():
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/healthz", timeout=1)
