"""What the login throttle's table costs a login, beside the password check it guards (the anchor, in the
same run): the statements of a failed login (check, count on two keys) and of a good one (check, reset),
each in its own transaction, on SQLite and on PostgreSQL.

Usage: python -m bench.throttle [--n 2000]
(PostgreSQL from BENCH_JOURNAL_DATABASE_URL, else 127.0.0.1's tandem_bench_journal; made if missing.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from argon2 import PasswordHasher, profiles
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.journal import throttle
from services.journal.tables import metadata
from shared.db import make_engine, make_session_factory, unit_of_work, utcnow


def _pg_url() -> str:
    url = (
        os.environ.get("BENCH_JOURNAL_DATABASE_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/tandem_bench_journal"
    )
    u = make_url(url)
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        if not c.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": u.database}
        ).scalar():
            c.execute(text(f'CREATE DATABASE "{u.database}"'))
    admin.dispose()
    return url


def _timed(n: int, step) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        step(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _summary(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100)
    return f"p50 {statistics.median(ms):.2f} ms, p95 {q[94]:.2f} ms"


def measure(url: str, n: int) -> dict[str, list[float]]:
    engine = make_engine(url)
    metadata.drop_all(engine, tables=[metadata.tables["throttles"]])
    metadata.create_all(engine, tables=[metadata.tables["throttles"]])
    sessions = make_session_factory(engine)

    def failed(i: int) -> None:
        client = f"203.0.113.{i % 200}"
        pair = throttle.LOGIN.key(throttle.email_key(f"user{i % 500}@example.com"), client)
        with unit_of_work(sessions) as s:
            now = utcnow()
            try:
                throttle.check(s, [pair, throttle.LOGIN_ADDRESS.key(client)], now)
            except Exception:
                pass  # a throttled try costs the check alone; counted anyway, to time the worst case
            throttle.failed(
                s,
                [
                    (throttle.LOGIN, pair),
                    (throttle.LOGIN_ADDRESS, throttle.LOGIN_ADDRESS.key(client)),
                ],
                now,
            )

    def good(i: int) -> None:
        client = f"198.51.100.{i % 200}"
        pair = throttle.LOGIN.key(throttle.email_key(f"user{i % 500}@example.com"), client)
        with unit_of_work(sessions) as s:
            throttle.check(s, [pair, throttle.LOGIN_ADDRESS.key(client)], utcnow())
            throttle.succeeded(s, pair)

    out = {
        "failed login's statements": _timed(n, failed),
        "good login's statements": _timed(n, good),
    }
    engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    hasher = PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)
    stored = hasher.hash("correct horse battery")
    anchor = _timed(max(50, args.n // 20), lambda i: hasher.verify(stored, "correct horse battery"))
    print(f"anchor: argon2 check ({'RFC_9106_LOW_MEMORY'}): {_summary(anchor)}")
    with tempfile.TemporaryDirectory() as d:
        for name, url in (
            ("SQLite", f"sqlite:///{Path(d) / 'journal.sqlite3'}"),
            ("PostgreSQL", _pg_url()),
        ):
            for what, ms in measure(url, args.n).items():
                print(
                    f"{name}: {what}: {_summary(ms)} "
                    f"({statistics.median(ms) / statistics.median(anchor):.3f} of the anchor's p50)"
                )


if __name__ == "__main__":
    main()
