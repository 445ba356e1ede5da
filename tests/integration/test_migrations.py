"""Each service's migrations build exactly the schema its tables declare."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services import SERVICES


@pytest.mark.parametrize("service", list(SERVICES))
def test_migrations_match_the_tables(backend, service):
    module, _, attr = SERVICES[service].metadata.partition(":")
    metadata = getattr(importlib.import_module(module), attr)
    engine = backend.engine(service)
    with engine.connect() as conn:
        # test_* tables are the consumer tests' probes (tests/support.py), not the service's
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, _parent: (
                    not (kind == "table" and name.startswith("test_"))
                ),
            },
        )
        diff = compare_metadata(ctx, metadata)
    assert diff == []


@pytest.fixture(params=["sqlite", "postgresql"])
def scratch_milestones_url(request, tmp_path):
    """An empty milestones database of its own, to migrate up and down. PostgreSQL: a schema of
    the milestones test database, first on the search path (a database of its own took up to a
    minute to drop: DROP DATABASE waits for a checkpoint of the whole server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/milestones.sqlite3"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.conftest import _ensure_pg_database, _pg_url

    schema = "migration_scratch"
    url = make_url(_pg_url("milestones"))
    _ensure_pg_database(url.render_as_string(hide_password=False))
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def test_packing_a_days_lists_keeps_every_value_both_ways(scratch_milestones_url):
    """0003 moves the five lists of each day into one column and back, losing nothing."""
    import json
    from datetime import date

    import sqlalchemy as sa
    from alembic import command

    from shared import migrate
    from shared.db import make_engine

    url = scratch_milestones_url
    migrate.upgrade("milestones", url, "0002")
    old = {
        "intensities": [3, 8],
        "communication": [4],
        "connection": [],
        "understanding": [2],
        "rituals": ["affection", "good_morning_text"],
    }
    counts = dict(
        entries=5,
        episodes=2,
        activities=0,
        conflicts=0,
        conflicts_repaired_24h=0,
        weekly_check_ins=1,
    )
    engine = make_engine(url)
    meta = sa.MetaData()
    with engine.begin() as conn:
        days = sa.Table("days", meta, autoload_with=conn)
        conn.execute(
            days.insert().values(
                partner_id="p", local_date=date(2026, 3, 1), ritual_count=2, **counts, **old
            )
        )
    migrate.upgrade("milestones", url)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT detail, ratings, episodes FROM days")).one()
    detail = row.detail if isinstance(row.detail, dict) else json.loads(row.detail)
    assert (detail, row.ratings, row.episodes) == (old, 1, 2)
    command.downgrade(migrate.alembic_config("milestones", url), "0002")
    with engine.connect() as conn:
        back = (
            conn.execute(sa.select(sa.Table("days", sa.MetaData(), autoload_with=conn)))
            .one()
            ._asdict()
        )
    engine.dispose()
    decoded = {k: back[k] if isinstance(back[k], list) else json.loads(back[k]) for k in old}
    assert decoded == old
