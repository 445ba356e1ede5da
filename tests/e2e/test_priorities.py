"""`tandem run` puts every process on the same cores: its web workers yield to
the event pipeline (WEB_NICE, 5 unless set), so a saturated machine delays a
request a little rather than let the relays and consumers fall behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.procs import _all_descendants


def _nice(pid: int) -> int:
    # /proc/<pid>/stat: the 19th field is the niceness; the command (2nd) is in parentheses, may hold spaces
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[16])


def _command(pid: int) -> list[str]:
    """Its words: a process `tandem run` forked shows its title (``tandem worker journal relay``)."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().split()


def test_the_web_workers_yield_to_the_relays_and_consumers(running):
    web, pipeline = [], []
    for pid in _all_descendants(running.proc.pid):
        try:
            words, parent = (
                _command(pid),
                int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1]),
            )
            (
                web
                if "gunicorn" in " ".join(words) and "gunicorn" in " ".join(_command(parent))
                else pipeline
                if "worker" in words
                else []
            ).append(_nice(pid))
        except (OSError, ValueError):
            continue  # a process that ended meanwhile
    assert len(web) >= 3 and set(web) == {5}, (
        web
    )  # every service's workers (the masters stay as they are)
    assert len(pipeline) >= 6 and set(pipeline) == {0}, (
        pipeline
    )  # relays, consumers, evaluator, delivery


def test_a_bad_web_nice_stops_the_web_server_with_its_name():
    env = dict(os.environ, WEB_NICE="high")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:shared.gunicorn_conf",
            "--check-config",
            "bench.anchor_app:app",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        out.returncode != 0
        and "WEB_NICE must be a whole number from 0 to 19, not 'high'" in out.stdout + out.stderr
    )
