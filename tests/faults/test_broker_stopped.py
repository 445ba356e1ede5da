"""RabbitMQ stops (`rabbitmqctl stop_app`) while entries keep arriving.

`tandem run` (every service and worker as a real process) runs on RabbitMQ
and PostgreSQL. Two partners post entries without pause while reads go to
every service; the broker application is stopped until many more entries
have been taken, then started again. Nothing is restarted on Tandem's side.

- the journal keeps answering 201 (the outbox holds the events), and no
  service answers anything but 200/201 to the load;
- the relays catch up after `start_app`: every outbox drains;
- every consumer reconnects by itself: after the broker is back, a ritual
  level crossed goes journal relay -> milestones consumer -> milestones relay
  -> notify consumer -> both inboxes, and a sharing preference changed goes
  notify relay -> milestones consumer;
- nothing lost or twice: each entry taken applied once, each milestone once,
  one notification per recipient (tests/faults/load.py).

It stops the broker of the whole machine (the test vhost's node): run it
alone, as the suite does, not beside another suite on the same broker.
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select

from services.journal.tables import outbox as journal_outbox
from services.milestones.rules import RITUAL_LEVELS
from services.milestones.tables import milestones
from services.milestones.tables import partners as milestones_partners
from tests.faults.load import (
    Live,
    Load,
    check_nothing_lost_or_twice,
    couple,
    ready,
    scalar,
    stop_cleanly,
    tandem_on,
)
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]  # processes killed, servers stopped


def _rabbitmqctl(*args: str) -> None:
    out = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"rabbitmqctl {' '.join(args)}: {out.stderr}"


@pytest.fixture
def stack(rabbit_backend):
    with tandem_on(rabbit_backend) as stack:
        yield stack


def _post_rituals(journal: str, partner: dict, n: int) -> None:
    for _ in range(n):
        body = {
            "id": str(uuid.uuid4()),
            "kind": "ritual",
            "ritual": "weekly_check_in",
            "visibility": "shared",
            "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        }
        r = requests.post(
            f"{journal}/v1/entries", json=body, headers=partner["headers"], timeout=10
        )
        assert r.status_code == 201, r.text


def _couple_id(urls: dict[str, str], partner: dict) -> str:
    r = requests.get(f"{urls['journal']}/v1/couples/me", headers=partner["headers"], timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_broker_stopped_while_entries_arrive_loses_nothing_and_every_consumer_reconnects(
    rabbit_backend, stack
):
    run, urls, db = stack
    a, b = couple(urls["journal"])
    live = Live(urls["notify"], a["headers"])
    unpublished = (
        select(func.count())
        .select_from(journal_outbox)
        .where(journal_outbox.c.published_at.is_(None))
    )

    with Load(urls, [a, b]) as load:
        wait_until(lambda: load.taken() >= 15, timeout=30, what="entries taken before the fault")
        _rabbitmqctl("stop_app")
        try:
            before = load.taken()
            wait_until(
                lambda: load.taken() >= before + 200,
                timeout=60,
                what="the journal to keep taking entries while the broker is stopped",
            )
            held = scalar(db["journal"], unpublished)
            assert held > 0, "the outbox holds what could not be published"
            assert ready(urls)["journal"] == 503, "/readyz says the broker is away"
        finally:
            _rabbitmqctl("start_app")
            _rabbitmqctl("await_startup")
        after = load.taken()
        wait_until(
            lambda: load.taken() >= after + 15,
            timeout=60,
            what="entries taken after the broker is back",
        )
    assert load.bad == [], "\n".join(load.bad[:20])
    assert sum(load.unavailable.values()) == 0, (
        f"nothing depends on the broker to answer: {dict(load.unavailable)}"
    )
    print(
        f"taken: {load.taken()} entries, {held} of them held in the journal's outbox at one moment of the outage"
    )

    check_nothing_lost_or_twice(run, urls, db, load, a, b, live, rabbit_backend.broker_url)

    # Every link of the chain consumes again: a couple made after the outage
    # (journal relay -> both consumers) keeps its tenth ritual (milestones
    # consumer and relay -> notify consumer -> both inboxes), and a sharing
    # preference changed (notify relay -> milestones consumer) arrives.
    c, d = couple(urls["journal"])
    _post_rituals(urls["journal"], c, RITUAL_LEVELS[0][1])
    reached = select(milestones.c.id).where(
        milestones.c.type == "rituals_kept", milestones.c.owner_key == _couple_id(urls, c)
    )
    wait_until(
        lambda: scalar(db["milestones"], reached) is not None,
        timeout=60,
        what="the new couple's first ritual level",
    )
    milestone_id = scalar(db["milestones"], reached)

    def in_inbox(partner) -> bool:
        r = requests.get(
            f"{urls['notify']}/v1/notifications", headers=partner["headers"], timeout=10
        )
        assert r.status_code == 200, r.text
        return milestone_id in {n["milestone_id"] for n in r.json()["items"]}

    wait_until(
        lambda: in_inbox(c) and in_inbox(d),
        timeout=60,
        what="the new level in both partners' inboxes",
    )
    r = requests.patch(
        f"{urls['notify']}/v1/preferences",
        headers=d["headers"],
        json={"share_milestones_with_partner": True},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    shared = select(milestones_partners.c.share_milestones_with_partner).where(
        milestones_partners.c.id == d["id"]
    )
    wait_until(
        lambda: scalar(db["milestones"], shared) is True,
        timeout=30,
        what="a sharing preference changed after the outage to reach the milestones service",
    )
    stop_cleanly(run)
