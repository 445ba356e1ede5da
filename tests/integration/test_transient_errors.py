"""Which database errors mean "try again" (503 with Retry-After, a consumer
that waits and retries) and which mean "this is wrong" (a bug or bad input):
each one made for real on PostgreSQL and on SQLite, and classified by the
driver's own codes (`shared.db.is_transient`)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import text

from shared.db import is_transient, make_engine
from tests.conftest import free_port


def _error(engine, *statements: str) -> BaseException:
    with pytest.raises(Exception) as caught:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    return caught.value


@pytest.fixture
def pg(rabbit_backend):
    """The servers backend's journal database, with a scratch table."""
    engine = make_engine(rabbit_backend.db_urls["journal"])
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS transient_probe"))
        conn.execute(
            text("CREATE TABLE transient_probe (id int PRIMARY KEY, n int NOT NULL CHECK (n >= 0))")
        )
        conn.execute(text("INSERT INTO transient_probe VALUES (1, 0), (2, 0)"))
    yield engine
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE transient_probe"))
    engine.dispose()


def _two_at_once(engine, openings: list[str], closings: list[str]) -> list[BaseException]:
    """Two transactions at once: each runs its opening statement, waits for
    the other to have run its own, then runs its closing one; the errors."""
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def run(opening: str, closing: str):
        try:
            with engine.begin() as conn:
                conn.execute(text(opening))
                barrier.wait()
                conn.execute(text(closing))
        except Exception as e:  # noqa: BLE001 - the error is what the test is about
            errors.append(e)

    threads = [threading.Thread(target=run, args=(openings[i], closings[i])) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


class TestPostgreSQL:
    def test_a_deadlock_victim_is_told_to_retry(self, pg):
        errors = _two_at_once(
            pg,
            [
                "UPDATE transient_probe SET n = 1 WHERE id = 1",
                "UPDATE transient_probe SET n = 1 WHERE id = 2",
            ],
            [
                "UPDATE transient_probe SET n = 2 WHERE id = 2",
                "UPDATE transient_probe SET n = 2 WHERE id = 1",
            ],
        )
        assert len(errors) == 1 and errors[0].orig.sqlstate == "40P01"
        assert is_transient(errors[0])

    def test_a_serialization_failure_is_told_to_retry(self, pg):
        snapshot = pg.execution_options(isolation_level="REPEATABLE READ")
        errors = _two_at_once(
            snapshot,
            ["SELECT n FROM transient_probe"] * 2,
            ["UPDATE transient_probe SET n = n + 1 WHERE id = 1"] * 2,
        )
        assert len(errors) == 1 and errors[0].orig.sqlstate == "40001"
        assert is_transient(errors[0])

    def test_a_lock_wait_or_a_statement_that_timed_out_is_told_to_retry(self, pg):
        with pg.begin() as holder:
            holder.execute(text("SELECT * FROM transient_probe WHERE id = 1 FOR UPDATE"))
            lock = _error(
                pg,
                "SET LOCAL lock_timeout = '50ms'",
                "UPDATE transient_probe SET n = 3 WHERE id = 1",
            )
        assert lock.orig.sqlstate == "55P03" and is_transient(lock)
        slow = _error(pg, "SET LOCAL statement_timeout = '50ms'", "SELECT pg_sleep(2)")
        assert slow.orig.sqlstate == "57014" and is_transient(slow)

    def test_a_server_that_is_not_there_or_a_pool_with_no_connection_is_told_to_retry(
        self, pg, rabbit_backend
    ):
        nowhere = make_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x", pool_pre_ping=False
        )
        try:
            assert is_transient(_error(nowhere, "SELECT 1"))
        finally:
            nowhere.dispose()
        small = make_engine(
            rabbit_backend.db_urls["journal"], pool_size=1, max_overflow=0, pool_timeout=0.1
        )
        try:
            with small.connect():
                with pytest.raises(sa.exc.TimeoutError) as caught:
                    small.connect()
            assert is_transient(caught.value)
        finally:
            small.dispose()

    def test_a_connection_its_server_ended_is_told_to_retry(self, pg):
        with pg.connect() as victim:
            pid = victim.execute(text("SELECT pg_backend_pid()")).scalar()
            with pg.begin() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(sa.exc.DBAPIError) as caught:
                victim.execute(text("SELECT 1"))
        assert is_transient(caught.value)

    @pytest.mark.parametrize(
        "statement, sqlstate",
        [
            ("INSERT INTO transient_probe VALUES (1, 0)", "23505"),  # unique violation
            ("UPDATE transient_probe SET n = -1", "23514"),  # check violation
            ("SELECT 'x'::int", "22P02"),  # invalid input
            ("SELEC 1", "42601"),  # a bug: syntax
            ("SELECT * FROM no_such_table", "42P01"),
        ],
    )
    def test_wrong_input_or_a_bug_is_not_retried(self, pg, statement, sqlstate):
        e = _error(pg, statement)
        assert e.orig.sqlstate == sqlstate
        assert not is_transient(e)


class TestSQLite:
    def test_a_busy_database_is_told_to_retry_and_a_constraint_is_not(self, tmp_path):
        url = f"sqlite:///{tmp_path}/probe.sqlite3"
        engine = make_engine(url)
        impatient = sa.create_engine(url, connect_args={"timeout": 0})  # waits for no lock
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE probe (id int PRIMARY KEY)"))
                conn.execute(text("INSERT INTO probe VALUES (1)"))
            with engine.begin() as writer:  # BEGIN IMMEDIATE: the write lock, held
                writer.execute(text("INSERT INTO probe VALUES (2)"))
                with impatient.connect() as conn:
                    with pytest.raises(sa.exc.OperationalError) as caught:
                        conn.execute(text("INSERT INTO probe VALUES (3)"))
            assert is_transient(caught.value)
            assert not is_transient(_error(engine, "INSERT INTO probe VALUES (1)"))
            assert not is_transient(_error(engine, "SELEC 1"))
        finally:
            engine.dispose()
            impatient.dispose()


def test_a_request_that_gets_no_pooled_connection_in_time_is_503_with_retry_after(rabbit_backend):
    from services.journal.app import create_app
    from tests.conftest import sign_up

    app = create_app()
    client = app.test_client()
    a = sign_up(client)
    engine = app.extensions["tandem"]["engine"]
    engine.pool._timeout = 0.1  # the pool's wait for a connection (30 s by default)
    held = []
    try:
        while True:  # every connection the pool may give, taken
            try:
                held.append(engine.connect())
            except sa.exc.TimeoutError:
                break
        r = client.get("/v1/entries", headers=a["headers"])
    finally:
        for conn in held:
            conn.close()
        engine.dispose()
    assert r.status_code == 503 and r.headers["Retry-After"].isdigit()
    assert r.mimetype == "application/problem+json"
    assert len(held) == engine.pool.size() + engine.pool._max_overflow
