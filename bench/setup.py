"""Where the benchmarks run: RabbitMQ and PostgreSQL, never the embedded default.

``BENCH_BROKER_URL`` (default: the ``tandem_bench`` vhost on 127.0.0.1, made
with rabbitmqctl when it is missing) and ``BENCH_<SERVICE>_DATABASE_URL``
(default: ``tandem_bench_<service>`` on 127.0.0.1, created when missing) are
put in this process's environment as ``BROKER_URL`` and
``<SERVICE>_DATABASE_URL``, so the services' own code reads them.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from sqlalchemy import create_engine, text

from services import SERVICES

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/tandem_bench"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


def _vhost(url: str) -> None:
    if url != DEFAULT_BROKER or not shutil.which("rabbitmqctl"):
        return
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, timeout=60
    )
    if "tandem_bench" not in listed.stdout.split():
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", "tandem_bench"], check=True, timeout=60)
        subprocess.run(
            [
                "rabbitmqctl",
                "-q",
                "set_permissions",
                "-p",
                "tandem_bench",
                "guest",
                ".*",
                ".*",
                ".*",
            ],
            check=True,
            timeout=60,
        )


def _database(url: str) -> None:
    base, _, name = url.rpartition("/")
    admin = create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if not conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first():
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


def servers() -> dict[str, str]:
    """Set the environment for RabbitMQ and PostgreSQL; migrate; return it."""
    from shared import migrate

    env = {"BROKER_URL": os.environ.get("BENCH_BROKER_URL", DEFAULT_BROKER)}
    _vhost(env["BROKER_URL"])
    for name in SERVICES:
        url = os.environ.get(f"BENCH_{name.upper()}_DATABASE_URL", f"{PG}/tandem_bench_{name}")
        _database(url)
        migrate.upgrade(name, url)
        vacuum(url)
        env[f"{name.upper()}_DATABASE_URL"] = url
    os.environ.update(env)
    return env


def vacuum(url: str) -> None:
    """``VACUUM ANALYZE``: dead rows gone and the planner's statistics made, as autovacuum keeps a
    service's database. A benchmark measures a maintained database, also on a server run with
    autovacuum off (this machine's is): without statistics the planner guessed, one couple's
    partners read through a bitmap of every live partner (1.2 ms where 0.1 ms does)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


def empty(url: str) -> None:
    """Every table of a bench database emptied (its schema kept): a benchmark that
    runs the whole pipeline starts without the partners, entries and due
    evaluations other benchmarks left."""
    from sqlalchemy import inspect

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            names = [n for n in inspect(conn).get_table_names() if n != "alembic_version"]
            if names:
                conn.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names)))
    finally:
        engine.dispose()
