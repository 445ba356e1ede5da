"""Processes a benchmark starts, waits for, measures (resident memory) and stops."""

from __future__ import annotations

import http.client
import json as _json
import os
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TANDEM = [sys.executable, "-m", "services.cli"]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_tandem(env: dict[str, str], tmp: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    """`tandem run` with `env` (every service on a free port, its log in `tmp`), once every
    service answers ready; (the process, each service's base URL by name)."""
    import requests

    from services import SERVICES

    env, urls = dict(env), {}
    for name in SERVICES:
        port = free_port()
        env[f"{name.upper()}_PORT"] = str(port)
        urls[name] = f"http://127.0.0.1:{port}"
    proc = start(TANDEM + ["run"], env, tmp / "tandem.log")
    deadline = time.monotonic() + 90
    while True:
        try:
            if all(
                requests.get(u + "/readyz", timeout=1).status_code == 200 for u in urls.values()
            ):
                return proc, urls
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            stop(proc)
            raise RuntimeError(
                "tandem run did not become ready:\n" + (tmp / "tandem.log").read_text()[-3000:]
            )
        time.sleep(0.2)


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _tree_kib(pid: int, file: str, field: str) -> int:
    """The sum of one kB field of a /proc/PID file over a process and all its descendants."""
    total = 0
    for p in [pid] + _all_descendants(pid):
        try:
            for line in Path(f"/proc/{p}/{file}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB (Linux /proc)."""
    return round(_tree_kib(pid, "status", "VmRSS:") / 1024, 1)


def pss_mib(pid: int) -> float:
    """Proportional set size of a process and all its descendants, in MiB: each
    page counted once over the tree, a shared page divided among the processes
    that map it (Linux /proc/PID/smaps_rollup). What the tree costs the machine,
    where resident sizes count every shared page once a process."""
    return round(_tree_kib(pid, "smaps_rollup", "Pss:") / 1024, 1)


def _all_descendants(pid: int) -> list[int]:
    out, todo = [], _children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class HttpSession:
    """A keep-alive HTTP client for load generators: ``post(url, json=..., headers=...)``
    like requests', on ``http.client``, which costs a fraction of requests' CPU a call
    (the load generator shares the machine with what it measures)."""

    def __init__(self):
        self._conns: dict[tuple[str, int], http.client.HTTPConnection] = {}

    def post(self, url: str, *, json=None, data=None, headers=None, timeout: float = 30):
        u = urllib.parse.urlsplit(url)
        body = data if json is None else _json.dumps(json)
        body = body.encode() if isinstance(body, str) else body
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more on a new one
            conn = self._conns.get((u.hostname, u.port))
            if conn is None:
                conn = self._conns[(u.hostname, u.port)] = http.client.HTTPConnection(
                    u.hostname, u.port, timeout=timeout
                )
            try:
                conn.request(
                    "POST", u.path + (f"?{u.query}" if u.query else ""), body=body, headers=hdrs
                )
                resp = conn.getresponse()
                return types.SimpleNamespace(status_code=resp.status, content=resp.read())
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                del self._conns[(u.hostname, u.port)]
                if attempt == 2:
                    raise


def open_loop(rate: float, count: int, send, workers: int = 32) -> list[float]:
    """``send(i, due, session)`` for i in 0..count-1, each when it is due (i / rate
    seconds after the start, whatever the answers before it), from ``workers``
    threads with an ``HttpSession`` each. Returns how late each was sent (s):
    a load generator that could not keep to its schedule shows here."""
    import threading

    start = time.perf_counter() + 0.2
    lock = threading.Lock()
    nxt = [0]
    late: list[float] = []

    def worker():
        session = HttpSession()
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= count:
                return
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            with lock:
                late.append(max(0.0, -delay))
            send(i, due, session)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return late


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and all its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in [pid] + _all_descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (Linux /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL server process on this machine."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total
