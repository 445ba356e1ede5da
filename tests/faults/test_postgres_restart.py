"""PostgreSQL restarts, and goes away for a while, under load.

`tandem run` (every service and worker as a real process, on RabbitMQ) runs
against a PostgreSQL server of the test's own. Entries are posted without
pause while reads go to every service; the server is restarted (`pg_ctl
restart -m fast`), then stopped until the services have been seen answering
503, then started again. Nothing is restarted on Tandem's side.

- no answer is ever a 500: while the database is away a request gets 503 with
  `Retry-After` and an RFC 9457 problem, and /readyz says 503;
- every entry that was taken (201) exists afterwards and reached the
  milestones service exactly once (its row, its event id, the day aggregates);
- the relays and consumers carried on by themselves: `tandem run` is still
  running, every outbox drained, each service's /readyz is 200 again; every
  milestone reached was announced once and made one notification per recipient.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from services import SERVICES
from shared.outbox import NOTIFY_CHANNEL, _PgListen
from tests.conftest import Backend
from tests.faults.load import (
    Live,
    Load,
    check_nothing_lost_or_twice,
    couple,
    ready,
    stop_cleanly,
    tandem_on,
)
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]  # processes killed, servers stopped


@pytest.fixture
def stack(private_pg, rabbit_url, tmp_path):
    db_urls = {svc: private_pg.create_database(f"tandem_{svc}") for svc in SERVICES}
    backend = Backend("private-pg", rabbit_url, db_urls, tmp_path / "var")
    backend.var_dir.mkdir()
    with tandem_on(backend) as stack:
        yield stack


def _listening(engine) -> bool:
    """The service's relay is woken by LISTEN/NOTIFY again, not only polling: its wake-up
    connection is there and has run its LISTEN (its first statement; the relay's sleep lock
    and look for rows come after it)."""
    with engine.connect() as conn:
        return (
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = :app AND query <> '' "
                    "AND NOT (state = 'active' AND query = :listen)"
                ),
                {"app": _PgListen.APPLICATION_NAME, "listen": f"LISTEN {NOTIFY_CHANNEL}"},
            ).scalar()
            == 1
        )


def test_postgres_restarting_under_load_gives_503_never_500_and_loses_nothing(
    private_pg, rabbit_url, stack
):
    run, urls, db = stack
    a, b = couple(urls["journal"])
    live = Live(urls["notify"], a["headers"])

    with Load(urls, [a, b]) as load:
        wait_until(lambda: load.taken() >= 20, timeout=30, what="entries taken before the fault")

        # 1. A fast restart in the middle of the load: sessions are cut, the server comes back.
        private_pg.restart()
        after_restart = load.taken()
        wait_until(
            lambda: load.taken() >= after_restart + 20,
            timeout=60,
            what="entries taken again after the restart, with no service restarted",
        )

        # 2. Away for a while: every service answers 503, with Retry-After, until it is back.
        private_pg.stop()
        try:
            seen = dict(load.unavailable)
            enough = {
                "journal": 40,
                "milestones": 5,
                "notify": 5,
            }  # the journal is asked far more often
            wait_until(
                lambda: all(load.unavailable[s] > seen.get(s, 0) + n for s, n in enough.items()),
                timeout=30,
                what="every service to answer 503 while the database is away",
            )
            during = load.taken()
            assert set(ready(urls).values()) == {503}, "/readyz says the database is away"
            assert load.taken() == during, "nothing is taken while the database is away"
        finally:
            private_pg.start()
        wait_until(
            lambda: load.taken() >= during + 20,
            timeout=60,
            what="entries taken again after the outage",
        )
    assert load.bad == [], "\n".join(load.bad[:20])
    print(f"taken: {load.taken()} entries; 503 answers: {dict(load.unavailable)}")
    check_nothing_lost_or_twice(run, urls, db, load, a, b, live, rabbit_url)
    for svc in SERVICES:  # the relays listen again: a commit wakes them, as before the outage
        wait_until(lambda: _listening(db[svc]), timeout=30, what=f"the {svc} relay to LISTEN again")
    stop_cleanly(run)


def test_a_relay_that_could_not_listen_listens_again_once_the_database_is_back(
    rabbit_backend, monkeypatch
):
    """What the test above saw in about one run of four, made certain: the
    relay's LISTEN connection could not be made while the database was away,
    its next cycle found the database back, and it only polled from then on."""
    from services.journal import app as journal_app
    from shared import outbox as outbox_module

    monkeypatch.setattr(outbox_module, "LISTEN_RETRY", 0.2)
    relay = journal_app.make_relay()
    listen, tries = relay._wakeup, []

    def away_the_first_time():
        tries.append(1)
        return outbox_module._Sleep(relay.stop_event) if len(tries) == 1 else listen()

    relay._wakeup = away_the_first_time
    engine = rabbit_backend.engine("journal")
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: _listening(engine), timeout=15, what="the relay to LISTEN again")
    finally:
        relay.stop()
        thread.join(timeout=15)
        relay.publisher.close()
        relay.engine.dispose()
        engine.dispose()
    assert not thread.is_alive()
