"""`tandem run` as `make run` starts it, on the embedded default: one supervisor
and the processes it forks (no process of its own for each), every one stopped
cleanly on Ctrl-C, and all of them stopped when one of them ends."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from bench.procs import _all_descendants
from services import SERVICES
from tests.e2e.conftest import start_tandem
from tests.support import wait_until


def _embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_DATABASE_URL", "BROKER_URL", "TANDEM_VAR_DIR"))
    }
    return dict(env, TANDEM_VAR_DIR=str(tmp_path / "var"), WEB_CONCURRENCY="2")


def _title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def _running(pid: int) -> bool:
    """Not ended (a zombie has ended: whoever adopted it may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.e2e
def test_ctrl_c_stops_every_process_cleanly_and_exits_0(tmp_path):
    run = start_tandem(_embedded_env(tmp_path))
    try:
        supervised = _children(run.proc.pid)
        titles = sorted(_title(p) for p in supervised)
        expected = sorted(
            [f"gunicorn: master [tandem-{name}]" for name in SERVICES]
            + [f"tandem worker {name} {w}" for name, spec in SERVICES.items() for w in spec.workers]
        )
        assert titles == expected  # the supervisor's own children: no wrapper process between
        web_workers = [p for p in _all_descendants(run.proc.pid) if p not in supervised]
        assert len(web_workers) == 2 * len(SERVICES), [_title(p) for p in web_workers]
    finally:
        run.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the supervisor
        code = run.proc.wait(timeout=30)
        out = run.stop()
    assert code == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    for name, spec in SERVICES.items():
        for process in ["web", *spec.workers]:
            assert f"{name}.{process} stopped (rc=0)" in out, out[-3000:]
    for pid in supervised + web_workers:
        assert not _running(pid), pid


@pytest.mark.e2e
def test_when_one_process_ends_the_others_are_stopped(tmp_path):
    run = start_tandem(_embedded_env(tmp_path))
    try:
        relay = next(
            p for p in _children(run.proc.pid) if _title(p) == "tandem worker journal relay"
        )
        os.kill(relay, signal.SIGKILL)
        wait_until(lambda: run.proc.poll() is not None, timeout=30, what="tandem run to stop")
    finally:
        out = run.stop()
    assert run.proc.returncode == 128 + signal.SIGKILL, out[-3000:]  # the first to end: its code
    assert "journal.web stopped (rc=0)" in out and "notify.consumer stopped (rc=0)" in out


@pytest.mark.e2e
def test_a_killed_supervisor_takes_its_processes_with_it(tmp_path):
    run = start_tandem(_embedded_env(tmp_path))
    try:
        started = _all_descendants(run.proc.pid)
        run.proc.kill()  # SIGKILL: it can stop nothing itself
        run.proc.wait(timeout=10)
        wait_until(
            lambda: not any(_running(p) for p in started),
            timeout=30,
            what="every process of the killed tandem run to stop",
        )
    finally:
        run.stop()
