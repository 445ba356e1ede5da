"""Ingest: ``POST /v1/entries`` under gunicorn, against a bare Flask anchor.

The journal service (`tandem serve journal`: authenticated, validated, the
entry and its outbox row in one transaction), the anchor
(`bench/anchor_app.py`: bare Flask, one INSERT and COMMIT) and a second
anchor, the journal's framework around that one INSERT
(`bench/framework_app.py`: the token, the body's schema, the answer's schema,
no entry work), run side by side under the same gunicorn settings (``shared.gunicorn_conf``, ``WEB_CONCURRENCY`` workers x
``WEB_THREADS`` threads) on the same PostgreSQL. wrk drives each in turn
(``bench/post_entries.lua``: a new entry id every request, a real token),
rounds alternating, medians compared: the journal against the bare anchor
(the goal), the framework anchor against the bare one (how close any journal
can come on this stack), the journal against the framework anchor (what the
entry's own work costs). Then each is driven open-loop at half
the journal's peak rate (requests sent on a fixed schedule, latency counted
from when each was due, so a stall is not hidden) for p50 and p99. All of it
with the shipped default (2 workers x 8 threads, or ``WEB_CONCURRENCY`` and
``WEB_THREADS`` as set), then the peaks again with two workers a core x 4
threads: a journal request is mostly Python, and a worker process runs
Python on one core at a time (the GIL).

Usage: python -m bench.ingest [--seconds S] [--rounds R] [--connections C]  (needs wrk; prints JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import requests

from bench import procs, setup

ENTRY = {"kind": "anxious_episode", "intensity": 5, "occurred_at": "2026-11-20T07:30:00+01:00"}


def wrk(url: str, seconds: int, connections: int, token: str) -> float:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(procs.ROOT / "bench" / "post_entries.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, BENCH_TOKEN=token),
        timeout=seconds + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr or out.stdout)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if bad or "Socket errors" in out.stdout:
        raise RuntimeError(f"not every request was a success:\n{out.stdout}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))


def open_loop(url: str, rate: float, seconds: float, token: str) -> dict:
    """Requests due every 1/rate s; latency from when each was due to its answer."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    failures = [0]

    def send(i, due, session):
        r = session.post(
            url + "/v1/entries",
            data=json.dumps({"id": str(uuid.uuid4()), **ENTRY}),
            headers=headers,
            timeout=30,
        )
        latencies.append(time.perf_counter() - due)
        failures[0] += r.status_code != 201

    total = int(rate * seconds)
    late = procs.open_loop(rate, total, send, workers=48)
    latencies.sort()
    return {
        "rate": round(rate),
        "requests": total,
        "failures": failures[0],
        "sent_late_p99_ms": round(sorted(late)[int(len(late) * 0.99)] * 1000, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
    }


def _measure(args, url: str, tmp: Path, workers: str, threads: str, latency: bool) -> dict:
    """Both apps under gunicorn with these settings: peaks (rounds alternating), then latency at half the
    journal's peak if asked, and memory."""
    common = dict(
        os.environ,
        WEB_CONCURRENCY=workers,
        WEB_THREADS=threads,
        TANDEM_VAR_DIR=str(tmp / "var"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp / f"prometheus-{workers}x{threads}"),
    )
    Path(common["PROMETHEUS_MULTIPROC_DIR"]).mkdir()
    ports = {
        "anchor": procs.free_port(),
        "framework": procs.free_port(),
        "journal": procs.free_port(),
    }
    started = {
        name: procs.start(
            [
                procs.GUNICORN,
                "-c",
                "python:shared.gunicorn_conf",
                "-b",
                f"127.0.0.1:{ports[name]}",
                f"bench.{name}_app:app",
            ],
            dict(common, ANCHOR_DATABASE_URL=url),
            tmp / f"{name}.log",
        )
        for name in ("anchor", "framework")
    } | {
        "journal": procs.start(
            procs.TANDEM + ["serve", "journal"],
            dict(common, JOURNAL_PORT=str(ports["journal"])),
            tmp / "journal.log",
        ),
    }
    try:
        for name, proc in started.items():
            procs.wait_listening(ports[name], proc)
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        requests.post(
            urls["journal"] + "/v1/accounts",
            json={
                "email": email,
                "password": "correct horse battery",
                "display_name": "Bench",
                "timezone": "Europe/Paris",
            },
            timeout=30,
        ).raise_for_status()
        token = requests.post(
            urls["journal"] + "/v1/tokens",
            json={"email": email, "password": "correct horse battery"},
            timeout=30,
        ).json()["access_token"]
        peaks: dict[str, list[float]] = {"anchor": [], "framework": [], "journal": []}
        for name in peaks:  # warm up: imports, pools, prepared statements
            wrk(urls[name], 2, args.connections, token)
        for _ in range(args.rounds):
            for name in peaks:
                peaks[name].append(wrk(urls[name], args.seconds, args.connections, token))
        peak = {name: statistics.median(v) for name, v in peaks.items()}
        out = {
            "workers": workers,
            "threads": threads,
            "anchor_rps": round(peak["anchor"]),
            "journal_rps": round(peak["journal"]),
            "ratio": round(peak["journal"] / peak["anchor"], 2),
            "framework_rps": round(peak["framework"]),
            "framework_ratio": round(peak["framework"] / peak["anchor"], 2),
            "journal_to_framework": round(peak["journal"] / peak["framework"], 2),
            "rounds_rps": {k: [round(x) for x in v] for k, v in peaks.items()},
        }
        if latency:
            half = peak["journal"] / 2
            out["latency_at_half_journal_peak"] = {
                name: open_loop(urls[name], half, args.seconds, token)
                for name in ("anchor", "journal")
            }
        out["rss_mib"] = {name: procs.rss_mib(proc.pid) for name, proc in started.items()}
        return out
    finally:
        for proc in started.values():
            procs.stop(proc)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("the ingest benchmark needs wrk (Debian/Ubuntu: apt-get install wrk)")
    env = setup.servers()
    url = env["JOURNAL_DATABASE_URL"]
    from sqlalchemy import text

    from shared.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS anchor_entries (id varchar(36) PRIMARY KEY, body text NOT NULL)"
            )
        )
    tmp = Path(tempfile.mkdtemp(prefix="tandem-bench-"))
    # The shipped default (WEB_CONCURRENCY, WEB_THREADS unset: 2 x 8, or as set), then two processes a core:
    # the journal's requests are CPU in Python, one core a process at most (the GIL).
    default = (os.environ.get("WEB_CONCURRENCY", "2"), os.environ.get("WEB_THREADS", "8"))
    per_core = (str(2 * (os.cpu_count() or 1)), "4")
    try:
        result = _measure(args, url, tmp, *default, latency=True)
        if per_core != default:
            result["two_processes_a_core"] = _measure(args, url, tmp, *per_core, latency=False)
    finally:
        with engine.begin() as conn:  # the bench's own database: nothing of this run left to relay
            conn.execute(text("DROP TABLE IF EXISTS anchor_entries"))
            conn.execute(text("TRUNCATE entries, outbox"))
        engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "seconds": args.seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        **result,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
