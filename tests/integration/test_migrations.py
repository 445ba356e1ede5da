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
        ctx = MigrationContext.configure(conn, opts={
            "compare_type": True,
            "include_name": lambda name, kind, _parent: not (kind == "table" and name.startswith("test_"))})
        diff = compare_metadata(ctx, metadata)
    assert diff == []
