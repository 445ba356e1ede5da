"""`make run` as a new user runs it: the README's walk-through, word for word,
against every service started as real processes (gunicorn and workers)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
TANDEM = [sys.executable, "-m", "services.cli"]


def walkthrough_script() -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- walkthrough -->\s*```sh\n(.*?)```", readme, re.S)
    assert block, "README.md has a walk-through block"
    return block.group(1)


class Running:
    """`tandem run` (what `make run` starts) in its own process group."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.proc = subprocess.Popen(TANDEM + ["run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)

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


@pytest.fixture
def running(backend):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL") and k != "BROKER_URL"}
    env.update(backend.env(), JOURNAL_PORT=str(port), PYTHONUNBUFFERED="1", WEB_CONCURRENCY="2")
    if backend.embedded:  # the real embedded default: nothing set but where ./var is
        env.pop("BROKER_URL")
        for svc in ("JOURNAL", "MILESTONES", "NOTIFY"):
            env.pop(f"{svc}_DATABASE_URL", None)
    run = Running(env)
    base = f"http://127.0.0.1:{port}"

    def ready():
        if run.proc.poll() is not None:
            raise AssertionError("tandem run exited:\n" + run.stop())
        try:
            return requests.get(base + "/readyz", timeout=1).status_code == 200
        except requests.RequestException:  # not listening yet, or workers still booting
            return False

    try:
        wait_until(ready, timeout=60, what="the journal to be ready")
    except BaseException:
        run.stop()
        raise
    try:
        yield run, base, env
    finally:
        output = run.stop()
    assert "journal.web stopped" in output and "journal.relay stopped" in output, output[-3000:]
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/healthz", timeout=1)


class LineReader:
    """Collects a pipe's lines from a thread, so waiting never blocks on a read."""

    def __init__(self, pipe):
        import threading

        self.lines: list[str] = []
        threading.Thread(target=lambda: [self.lines.append(line) for line in pipe], daemon=True).start()


@pytest.mark.e2e
def test_readme_walkthrough_works_word_for_word(running):
    run, base, env = running
    watcher = subprocess.Popen(TANDEM + ["watch"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        watched, said = LineReader(watcher.stdout), LineReader(watcher.stderr)
        wait_until(lambda: any("watching" in line for line in said.lines), what="the watcher to start")
        script = walkthrough_script().replace("http://127.0.0.1:8001", base)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert '"display_name": "Ben"' in out and '"display_name": "Ana"' in out  # step 3: both partners
        assert "\n200\n" in out  # step 6: the retried entry is the same entry
        assert '"status": 404' in out  # step 7: Ana's private moment is hidden from Ben
        assert '"intensity": [' in out and '"status": 422' in out  # step 8 names the field

        # What the walk-through claims, checked through the API itself.
        token = requests.post(base + "/v1/tokens", json={"email": "ben@example.com",
                                                         "password": "another passphrase"}).json()["access_token"]
        items = requests.get(base + "/v1/entries", headers={"Authorization": f"Bearer {token}"}).json()["items"]
        assert sorted(i["kind"] for i in items) == ["daily_reflection", "healing_conversation", "ritual"]

        def events():
            return [json.loads(line) for line in list(watched.lines)]

        def seen_all():
            types = [e["type"] for e in events()]
            return types.count("journal.entry.recorded") == 4 and types.count("journal.partner.registered") == 2 \
                and "journal.couple.partnered" in types

        wait_until(seen_all, timeout=30, what="the walk-through's events on the exchange")
        assert not any("note" in e["data"] for e in events())
        assert all("two hours" not in json.dumps(e) for e in events())
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
