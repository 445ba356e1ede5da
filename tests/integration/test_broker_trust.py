"""The broker as a trust boundary: an event is applied only if it comes from
its type's producer. Consumers refuse a body that claims another source or
another routing key (both backends); RabbitMQ itself refuses a service's user
publishing another service's events (its topic permissions)."""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from datetime import UTC, datetime

import amqp
import pytest
from click.testing import CliRunner
from kombu import Producer
from sqlalchemy import select

from services import SERVICES
from shared import broker, events, topology
from tests.conftest import make_couple
from tests.support import ConsumerThread, Pipeline, drain, publish_events, wait_until


def _milestone(owner: str, source: str = "/milestones") -> dict:
    return events.make_event(
        "milestones.milestone.achieved",
        source=source,
        subject=owner,
        data={
            "id": str(uuid.uuid4()),
            "type": "rituals_kept",
            "level": 1,
            "couple_id": None,
            "partner_id": owner,
            "achieved_at": datetime.now(UTC),
            "evidence": {},
            "headline": "Your account needs attention: sign in again at evil.example",
            "audience": [owner],
        },
    )


def _notified(backend, milestone_id: str) -> bool:
    from services.notify.tables import notifications

    with backend.engine("notify").connect() as c:
        return (
            c.execute(
                select(notifications.c.id).where(notifications.c.milestone_id == milestone_id)
            ).first()
            is not None
        )


def _dead(queue: str) -> dict[str, str]:
    """Event id -> why, of every dead letter of `queue` (taken off it)."""
    return {
        json.loads(m.body)["id"]: m.headers["x-tandem-reason"]
        for m in drain(topology.dead_letter_name(queue))
    }


def test_a_milestone_forged_by_another_source_never_reaches_an_inbox_and_is_dead_lettered(
    backend, journal
):
    a, _, _ = make_couple(journal)
    first, forged, later = (
        _milestone(a["id"]),
        _milestone(a["id"], source="/journal"),
        _milestone(a["id"]),
    )
    dead: dict[str, str] = {}
    with Pipeline():
        publish_events(first)
        wait_until(
            lambda: _notified(backend, first["data"]["id"]),
            timeout=30,
            what="a genuine milestone's notice",
        )
        publish_events(forged, later)
        wait_until(
            lambda: _notified(backend, later["data"]["id"]),
            timeout=30,
            what="the later genuine one",
        )
        # the embedded broker may hand over two messages published in the same millisecond in either order
        wait_until(
            lambda: dead.update(_dead("notify.events")) or dead,
            timeout=30,
            what="the forged one dead-lettered",
        )
    assert not _notified(backend, forged["data"]["id"]), "the forged headline reached an inbox"
    assert dead == {forged["id"]: "wrong_source"}


def _publish_raw(ev: dict, routing_key: str) -> None:
    with broker.connect() as conn:
        topology.declare(conn)
        Producer(conn, exchange=topology.EXCHANGE).publish(
            events.encode(ev),
            routing_key=routing_key,
            content_type=events.CONTENT_TYPE,
            content_encoding="utf-8",
            delivery_mode=2,
        )


def _partnered(source: str = "/journal") -> dict:
    couple = str(uuid.uuid4())
    return events.make_event(
        "journal.couple.partnered",
        source=source,
        subject=couple,
        data={"couple_id": couple, "partner_ids": [str(uuid.uuid4()), str(uuid.uuid4())]},
    )


def test_an_event_under_another_types_routing_key_is_never_applied_and_is_dead_lettered(backend):
    # The notify service may publish notify.* only: a journal event smuggled under its key is not the journal's.
    smuggled, genuine = _partnered(), _partnered()
    _publish_raw(smuggled, "notify.preferences.changed")
    _publish_raw(genuine, genuine["type"])
    with ConsumerThread(backend.db_urls["journal"]) as consumer:
        wait_until(lambda: consumer.settled == 2, what="both deliveries")
        assert consumer.times_applied() == {genuine["id"]: 1}
    assert _dead("milestones.events") == {smuggled["id"]: "wrong_routing_key"}


# --- RabbitMQ's own refusal: one user per service ---------------------------


def _rabbitmqctl(*args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        ["rabbitmqctl", "-q", *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def service_users(rabbit_backend, monkeypatch):
    """Each service's own user on the test vhost, made from `tandem broker-users`
    as an operator would; their URLs by service. Removed afterwards."""
    from services.cli import main

    base = rabbit_backend.broker_url
    prefix, _, rest = base.partition("://")
    hostpart = rest.rpartition("@")[2]
    tag = uuid.uuid4().hex[:8]
    urls = {}
    for service in SERVICES:
        url = f"{prefix}://tandem_test_{service}_{tag}:{secrets.token_urlsafe(16)}@{hostpart}"
        urls[service] = url
        monkeypatch.setenv(f"{service.upper()}_BROKER_URL", url)
    monkeypatch.delenv("BROKER_URL")  # no operator's user in them: the suite's own is left as it is
    result = CliRunner().invoke(main, ["broker-users"])
    monkeypatch.setenv("BROKER_URL", base)
    assert result.exit_code == 0, result.output
    _rabbitmqctl("import_definitions", "--format", "json", stdin=result.output)
    try:
        yield urls
    finally:
        for service in SERVICES:
            _rabbitmqctl("delete_user", f"tandem_test_{service}_{tag}")


def test_rabbitmq_refuses_the_notify_user_publishing_a_journal_event_and_nothing_reaches_a_queue(
    rabbit_backend, service_users, monkeypatch
):
    forged = _partnered()
    notify = broker.Publisher(broker.connect(service_users["notify"]))
    try:
        with pytest.raises(amqp.exceptions.AccessRefused) as refused:
            notify.publish(events.encode(forged), forged["type"], forged["id"])
        assert refused.value.reply_code == 403
    finally:
        notify.close()
    # Nor through the pipelined path the relay takes with a batch.
    notify = broker.Publisher(broker.connect(service_users["notify"]))
    try:
        with pytest.raises(amqp.exceptions.AccessRefused):
            notify.publish_many([(events.encode(forged), forged["type"], forged["id"])] * 2)
    finally:
        notify.close()

    entry = events.make_event(
        "journal.entry.deleted",
        source="/journal",
        subject=str(uuid.uuid4()),
        data={"entry_id": str(uuid.uuid4()), "couple_id": None, "partner_id": str(uuid.uuid4())},
    )
    journal = broker.Publisher(broker.connect(service_users["journal"]))
    try:
        journal.publish(
            events.encode(entry), entry["type"], entry["id"]
        )  # confirmed: it is in the queues now
    finally:
        journal.close()

    # The milestones consumer, on its own user (which may configure nothing), applies the journal's event only.
    monkeypatch.setenv("BROKER_URL", service_users["milestones"])
    with ConsumerThread(rabbit_backend.db_urls["journal"]) as consumer:
        wait_until(lambda: consumer.settled >= 1, what="the journal's event")
        assert consumer.times_applied() == {entry["id"]: 1}
        assert consumer.settled == 1, "only the journal's own event reached the milestones queue"
