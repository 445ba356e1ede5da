"""The notify delivery worker SIGKILLed in the middle of sending an email.

A real SMTP server (aiosmtpd) takes the message's DATA for one recipient and
then holds its answer until the test has killed the worker: whether that email
went out is unknown to Tandem. Started again, the worker marks that delivery
failed once its lease (`NOTIFY_DELIVERY_LEASE_SECONDS`, 3 s here) has run out,
never sends it a second time, publishes `notify.notification.failed`, and
delivers the other recipients' emails, claimed before the kill and never
begun, exactly once each.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from kombu import Queue
from sqlalchemy import select, update

from services.notify import app as notify_app
from services.notify import handlers
from services.notify.tables import deliveries, notifications, outbox
from shared import broker, events, topology
from shared.db import make_session_factory, unit_of_work
from tests.conftest import free_port
from tests.e2e.conftest import process_env
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]  # processes killed, servers stopped

LEASE_SECONDS = 3


class HoldingMailbox:
    """Takes every message; for `hold`, keeps the client waiting for the answer
    to its DATA until `release` is set."""

    def __init__(self, hold: str):
        self.hold = hold
        self.received: list[
            tuple[str, str]
        ] = []  # (recipient, Message-ID): what reached the server
        self.holding = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        message_id = next(
            (
                line.split(":", 1)[1].strip()
                for line in envelope.content.decode().splitlines()
                if line.lower().startswith("message-id:")
            ),
            None,
        )
        self.received.extend((rcpt, message_id) for rcpt in envelope.rcpt_tos)
        if self.hold in envelope.rcpt_tos:
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)
        return "250 OK"


def _apply(sessions, ev: dict) -> None:
    with unit_of_work(sessions) as s:
        handlers.HANDLERS[ev["type"]](s, events.parse(ev))


def _celebrated(sessions, email: str) -> str:
    """A partner with `email`, and a milestone of theirs; returns the partner id."""
    pid = str(uuid.uuid4())
    _apply(
        sessions,
        events.make_event(
            "journal.partner.registered",
            source="/journal",
            subject=pid,
            data={
                "partner_id": pid,
                "email": email,
                "display_name": email.split("@")[0],
                "timezone": "Europe/Paris",
            },
        ),
    )
    _apply(
        sessions,
        events.make_event(
            "milestones.milestone.achieved",
            source="/milestones",
            subject=pid,
            data={
                "id": str(uuid.uuid4()),
                "type": "rituals_kept",
                "level": 1,
                "couple_id": None,
                "partner_id": pid,
                "achieved_at": datetime.now(UTC),
                "headline": "You have kept 10 rituals together.",
                "evidence": {"rituals": 10},
                "audience": [pid],
            },
        ),
    )
    return pid


def _emails(sessions) -> dict[str, object]:
    """Each partner's email delivery row."""
    with unit_of_work(sessions) as s:
        return {
            r.partner_id: r
            for r in s.execute(
                select(deliveries, notifications.c.partner_id, notifications.c.milestone_id)
                .join(notifications, notifications.c.id == deliveries.c.notification_id)
                .where(deliveries.c.channel == "email")
            )
        }


def test_a_delivery_worker_killed_mid_send_never_sends_twice_and_delivers_the_rest_once(
    backend, workers, monkeypatch
):
    box = HoldingMailbox(hold="held@example.com")
    smtp = Controller(box, hostname="127.0.0.1", port=free_port())
    smtp.start()
    monkeypatch.setenv("SMTP_URL", f"smtp://127.0.0.1:{smtp.port}")
    sessions = make_session_factory(backend.engine("notify"))
    try:
        held = _celebrated(sessions, "held@example.com")
        others = [_celebrated(sessions, f"other{i}@example.com") for i in range(3)]
        with unit_of_work(sessions) as s:  # the held email is the first one the worker sends
            s.execute(
                update(deliveries)
                .where(deliveries.c.id == _emails(sessions)[held].id)
                .values(due_at=datetime.now(UTC) - timedelta(minutes=1))
            )

        env = process_env(
            backend,
            SMTP_URL=f"smtp://127.0.0.1:{smtp.port}",
            NOTIFY_DELIVERY_LEASE_SECONDS=str(LEASE_SECONDS),
        )
        worker = workers(env, "notify", "delivery").start()
        assert box.holding.wait(60), worker.output()
        worker.kill()  # while the SMTP server holds its answer to the DATA
        box.release.set()
        assert _emails(sessions)[held].status == "sending"

        worker.start()
        wait_until(
            lambda: (
                {p: d.status for p, d in _emails(sessions).items()}
                == {held: "failed", **{p: "delivered" for p in others}}
                or not worker.alive()
            ),
            timeout=60,
            what="the lost send to fail after its lease and the others to be delivered",
        )
        worker.stop()
        assert worker.exits == [-9, 0], worker.output()

        rows = _emails(sessions)
        assert "not repeated" in rows[held].last_error and rows[held].attempts == 1
        assert all(rows[p].attempts == 1 for p in others)
        sent = sorted(rcpt for rcpt, _ in box.received)
        assert sent == ["held@example.com"] + [f"other{i}@example.com" for i in range(3)], (
            "each email once"
        )
        assert len({mid for _, mid in box.received}) == 4

        # The failure is announced: in the outbox, and on the exchange once the relay has run.
        with broker.connect() as conn:
            topology.declare(conn)
            tap = Queue(
                f"test.tap.{uuid.uuid4().hex[:8]}",
                exchange=topology.EXCHANGE,
                routing_key="notify.notification.*",
                durable=False,
            )
            tap(conn.default_channel).declare()
            relay = notify_app.make_relay()
            try:
                wait_until(lambda: relay.relay_once() == 0, what="the notify outbox to be relayed")
            finally:
                relay.publisher.close()
                relay.engine.dispose()
            got, q = [], tap(conn.default_channel)
            wait_until(
                lambda: (
                    got.extend(iter(lambda: q.get(no_ack=True), None))
                    or sum(1 for m in got if json.loads(m.body)["data"]["channel"] == "email") == 4
                ),
                what="the email outcomes on the exchange",
            )
            q.delete()
        outcomes = sorted(
            (json.loads(m.body)["type"], json.loads(m.body)["data"]["partner_id"])
            for m in got
            if json.loads(m.body)["data"]["channel"] == "email"
        )
        assert outcomes == sorted(
            [("notify.notification.failed", held)]
            + [("notify.notification.delivered", p) for p in others]
        )
        with unit_of_work(sessions) as s:
            failed = [
                json.loads(b)["data"]
                for b in s.execute(
                    select(outbox.c.body).where(
                        outbox.c.routing_key == "notify.notification.failed"
                    )
                ).scalars()
            ]
        assert [(f["partner_id"], f["milestone_id"]) for f in failed] == [
            (held, rows[held].milestone_id)
        ]
    finally:
        box.release.set()
        smtp.stop()
        sessions.kw["bind"].dispose()
