"""Delivery on real parts: an SMTP server (aiosmtpd) and a local webhook
receiver that verifies the signature. Each channel delivers at most once."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from services.notify import app as notify_app
from services.notify import handlers
from services.notify.tables import channels, deliveries, notifications, outbox, recipients
from shared import events
from shared.db import make_session_factory, unit_of_work, utcnow
from tests.conftest import free_port
from tests.support import wait_until


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp(monkeypatch):
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("SMTP_URL", f"smtp://127.0.0.1:{port}")
    yield box
    controller.stop()


class Receiver:
    """A webhook receiver: answers the statuses queued, then 200; a 3xx points
    to ``location``."""

    def __init__(self, host: str = "127.0.0.1"):
        self.requests: list[tuple[dict, bytes]] = []
        self.statuses: list[int] = []
        self.location = ""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((dict(self.headers), body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", outer.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST  # a redirect followed as a GET is seen too

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def notify_db(backend, monkeypatch):
    monkeypatch.setenv("NOTIFY_RETRY_BASE_SECONDS", "0.01")
    return make_session_factory(backend.engine("notify"))


def _apply(sessions, ev: dict) -> None:
    with unit_of_work(sessions) as s:
        handlers.HANDLERS[ev["type"]](s, events.parse(ev))


def _partner(sessions) -> str:
    pid = str(uuid.uuid4())
    _apply(
        sessions,
        events.make_event(
            "journal.partner.registered",
            source="/journal",
            subject=pid,
            data={
                "partner_id": pid,
                "email": "ana@example.com",
                "display_name": "Ana",
                "timezone": "Europe/Paris",
            },
        ),
    )
    return pid


def _webhook(sessions, pid: str, url: str) -> tuple[str, str]:
    cid, secret = str(uuid.uuid4()), "s3cret" * 8
    with unit_of_work(sessions) as s:
        s.execute(
            channels.insert().values(
                id=cid,
                partner_id=pid,
                type="webhook",
                target=url,
                secret=secret,
                created_at=utcnow(),
            )
        )
    return cid, secret


def _milestone(sessions, pid: str, times: int = 1) -> dict:
    ev = events.make_event(
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
    )
    for _ in range(times):
        _apply(sessions, ev)
    return ev


def _deliveries(sessions) -> dict[str, object]:
    with unit_of_work(sessions) as s:
        return {r.channel.split(":")[0]: r for r in s.execute(select(deliveries))}


def _run_until(deliverer, sessions, done, what):
    wait_until(lambda: deliverer.tick() is not None and done(_deliveries(sessions)), what=what)


def _published(sessions, type_: str) -> list[dict]:
    with unit_of_work(sessions) as s:
        return [
            json.loads(b)["data"]
            for b in s.execute(select(outbox.c.body).where(outbox.c.routing_key == type_)).scalars()
        ]


def _delivered(channel: str, outcome: str = "delivered") -> float:
    from prometheus_client import REGISTRY

    return (
        REGISTRY.get_sample_value(
            "tandem_deliveries_total", {"channel": channel, "outcome": outcome}
        )
        or 0.0
    )


def test_an_email_with_text_and_html_reaches_a_real_smtp_server_once(notify_db, smtp):
    pid = _partner(notify_db)
    _milestone(notify_db, pid, times=3)  # redelivered: still one notification, one email
    deliverer = notify_app.make_deliverer()
    before = _delivered("email")
    _run_until(deliverer, notify_db, lambda d: d["email"].status == "delivered", "the email")
    for _ in range(3):
        deliverer.tick()
    assert len(smtp.messages) == 1
    assert _delivered("email") == before + 1, "/metrics counts the delivery, once"
    msg = smtp.messages[0]
    assert msg["To"] == "ana@example.com" and msg["Subject"] == "Something to celebrate"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in msg.walk()
        if not p.is_multipart()
    }
    assert "10 rituals" in parts["text/plain"] and "10 rituals" in parts["text/html"]
    assert [d["channel"] for d in _published(notify_db, "notify.notification.delivered")] == [
        "in_app",
        "email",
    ]


# RFC 2047 encoded words that decode to a line break, a Reply-To, a blank line and a body.
WRITES_HEADERS = "=?utf-8?q?=0D=0AReply-To:_ben@example.com=0D=0A=0D=0AWire_the_money_now?="


def test_a_name_made_of_encoded_words_writes_no_header_nor_body_into_the_partners_email(
    notify_db, smtp
):
    sam = str(uuid.uuid4())  # anyone on the broker could publish this
    _apply(
        notify_db,
        events.make_event(
            "journal.partner.registered",
            source="/journal",
            subject=sam,
            data={
                "partner_id": sam,
                "email": "ben@example.com",
                "display_name": WRITES_HEADERS,
                "timezone": "Europe/Paris",
            },
        ),
    )
    ana = _partner(notify_db)
    ev = events.make_event(
        "milestones.milestone.achieved",
        source="/milestones",
        subject=sam,
        data={
            "id": str(uuid.uuid4()),
            "type": "rituals_kept",
            "level": 1,
            "couple_id": None,
            "partner_id": sam,
            "achieved_at": datetime.now(UTC),
            "headline": "You have kept 10 rituals together.",
            "evidence": {"rituals": 10},
            "audience": [ana],
        },
    )  # Sam shares it with Ana
    _apply(notify_db, ev)
    _run_until(
        notify_app.make_deliverer(),
        notify_db,
        lambda d: d["email"].status == "delivered",
        "the email",
    )

    assert len(smtp.messages) == 1
    msg = smtp.messages[0]
    assert msg["Reply-To"] is None
    assert sorted(msg.keys()) == [
        "Content-Type",
        "From",
        "MIME-Version",
        "Message-ID",
        "Subject",
        "To",
    ]
    assert msg["To"] == "ana@example.com"
    assert msg["Subject"] == "Your partner shared a milestone with you"
    raw = msg.as_string()
    assert "Wire" not in raw and "=?" not in raw
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in msg.walk()
        if not p.is_multipart()
    }
    assert "10 rituals" in parts["text/plain"] and "10 rituals" in parts["text/html"]
    with unit_of_work(notify_db) as s:  # the inbox shows the news without that name
        assert s.execute(select(notifications.c.title)).scalars().all() == [
            "Your partner shared a milestone with you"
        ]
        assert (
            s.execute(select(recipients.c.display_name).where(recipients.c.id == sam)).scalar()
            is None
        )


def test_a_signed_webhook_reaches_a_real_receiver_once(notify_db, receiver):
    pid = _partner(notify_db)
    _, secret = _webhook(notify_db, pid, receiver.url)
    ev = _milestone(notify_db, pid, times=2)
    deliverer = notify_app.make_deliverer()
    _run_until(deliverer, notify_db, lambda d: d["webhook"].status == "delivered", "the webhook")
    deliverer.tick()
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Tandem-Signature"], f"sha256={expected}")
    sent = json.loads(body)
    assert sent["milestone_id"] == ev["data"]["id"] and "note" not in sent


def test_a_webhook_failing_twice_then_succeeding_is_delivered_once(notify_db, receiver):
    pid = _partner(notify_db)
    _webhook(notify_db, pid, receiver.url)
    receiver.statuses = [503, 500]
    _milestone(notify_db, pid)
    deliverer = notify_app.make_deliverer()
    _run_until(deliverer, notify_db, lambda d: d["webhook"].status == "delivered", "the third try")
    assert len(receiver.requests) == 3
    assert _deliveries(notify_db)["webhook"].attempts == 3


def test_a_webhook_failing_past_the_limit_ends_failed_and_says_so(notify_db, receiver):
    pid = _partner(notify_db)
    _webhook(notify_db, pid, receiver.url)
    receiver.statuses = [500] * 10
    ev = _milestone(notify_db, pid)
    deliverer = notify_app.make_deliverer()
    _run_until(
        deliverer, notify_db, lambda d: d["webhook"].status == "failed", "the delivery to fail"
    )
    assert len(receiver.requests) == 5 and _deliveries(notify_db)["webhook"].attempts == 5
    failed = _published(notify_db, "notify.notification.failed")
    assert [(f["milestone_id"], f["channel"]) for f in failed] == [(ev["data"]["id"], "webhook")]
    assert "500" in failed[0]["reason"]


def test_an_interrupted_send_is_never_repeated(notify_db, receiver):
    pid = _partner(notify_db)
    _webhook(notify_db, pid, receiver.url)
    _milestone(notify_db, pid)
    with unit_of_work(
        notify_db
    ) as s:  # a worker claimed it, then died before recording the outcome
        s.execute(
            update(deliveries)
            .where(deliveries.c.channel.like("webhook:%"))
            .values(status="sending", attempts=1, claimed_until=utcnow() - timedelta(seconds=1))
        )
    deliverer = notify_app.make_deliverer()
    _run_until(
        deliverer,
        notify_db,
        lambda d: d["webhook"].status == "failed",
        "the lost send to be settled",
    )
    assert receiver.requests == []
    assert "not repeated" in _deliveries(notify_db)["webhook"].last_error


class HeldMailbox(Mailbox):
    """Takes the message, then holds its answer until released; or answers
    the first message with a temporary rejection when `reject_first`."""

    def __init__(self, reject_first: bool = False):
        super().__init__()
        self.release = threading.Event()
        self.reject_first = reject_first

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        self.messages.append(message_from_bytes(envelope.content))
        if self.reject_first:
            if len(self.messages) == 1:
                return "451 4.3.0 Try again later"
            return "250 OK"
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        return "250 OK"


@pytest.fixture
def held_smtp(monkeypatch):
    def start(**kwargs) -> HeldMailbox:
        box = HeldMailbox(**kwargs)
        port = free_port()
        controller = Controller(box, hostname="127.0.0.1", port=port)
        controller.start()
        started.append((box, controller))
        monkeypatch.setenv("SMTP_URL", f"smtp://127.0.0.1:{port}")
        return box

    started: list = []
    yield start
    for box, controller in started:
        box.release.set()
        controller.stop()


def test_an_email_the_server_took_but_never_answered_is_not_sent_again(
    notify_db, held_smtp, monkeypatch
):
    """SMTP has no idempotency: once the whole message is out, a lost answer
    may hide a delivery. At most once: it is failed, and said so, not resent."""
    monkeypatch.setenv("NOTIFY_SEND_TIMEOUT_SECONDS", "0.5")
    box = held_smtp()
    pid = _partner(notify_db)
    _milestone(notify_db, pid)
    deliverer = notify_app.make_deliverer()
    failed_before = _delivered("email", "failed")
    _run_until(
        deliverer,
        notify_db,
        lambda d: d["email"].status == "failed",
        "the unanswered email to be settled",
    )
    assert _delivered("email", "failed") == failed_before + 1
    box.release.set()
    for _ in range(3):
        deliverer.tick()
    assert len(box.messages) == 1
    email = _deliveries(notify_db)["email"]
    assert email.attempts == 1 and "may have been delivered" in email.last_error
    assert [d["channel"] for d in _published(notify_db, "notify.notification.failed")] == ["email"]


def test_an_email_the_server_turned_down_for_now_is_sent_again_and_delivered_once(
    notify_db, held_smtp
):
    box = held_smtp(reject_first=True)
    pid = _partner(notify_db)
    _milestone(notify_db, pid)
    deliverer = notify_app.make_deliverer()
    _run_until(
        deliverer,
        notify_db,
        lambda d: d["email"].status == "delivered",
        "the email, on its second try",
    )
    for _ in range(3):
        deliverer.tick()
    assert len(box.messages) == 2  # turned down (451), then accepted
    assert _deliveries(notify_db)["email"].attempts == 2
    assert [d["channel"] for d in _published(notify_db, "notify.notification.delivered")] == [
        "in_app",
        "email",
    ]


def _set(sessions, table, where, **values):
    with unit_of_work(sessions) as s:
        s.execute(update(table).where(where).values(**values))


def test_quiet_hours_hold_the_email_back_while_the_inbox_has_it_at_once(notify_db, smtp):
    from zoneinfo import ZoneInfo

    from services.notify.tables import recipients

    pid = _partner(notify_db)
    here = datetime.now(ZoneInfo("Europe/Paris"))
    quiet = (
        (here - timedelta(hours=1)).strftime("%H:%M"),
        (here + timedelta(hours=1)).strftime("%H:%M"),
    )
    _set(notify_db, recipients, recipients.c.id == pid, quiet_start=quiet[0], quiet_end=quiet[1])
    _milestone(notify_db, pid)
    held = _deliveries(notify_db)
    assert held["in_app"].status == "delivered"
    assert held["email"].status == "pending"
    # due when the quiet hours end, an hour from now (to the minute the window was given in)
    assert utcnow() + timedelta(minutes=58) < held["email"].due_at <= utcnow() + timedelta(hours=1)
    notify_app.make_deliverer().tick()
    assert smtp.messages == [] and _deliveries(notify_db)["email"].status == "pending"


def test_more_celebrations_the_same_day_are_folded_into_one_email_the_next(notify_db, smtp):
    pid = _partner(notify_db)
    deliverer = notify_app.make_deliverer()
    _milestone(notify_db, pid)
    _run_until(
        deliverer, notify_db, lambda d: d["email"].status == "delivered", "the day's first email"
    )
    for _ in range(3):
        _milestone(notify_db, pid)
    deliverer.tick()
    with unit_of_work(notify_db) as s:
        emails = s.execute(select(deliveries).where(deliveries.c.channel == "email")).all()
    held = [d for d in emails if d.status == "pending"]
    assert len(smtp.messages) == 1 and len(held) == 3, "one email a day"
    assert all(d.due_at > utcnow() and d.attempts == 0 for d in held)

    # The next local day: yesterday's email was yesterday, and the held ones fall due.
    _set(
        notify_db,
        deliveries,
        deliveries.c.status == "delivered",
        delivered_at=utcnow() - timedelta(days=1),
    )
    _set(notify_db, deliveries, deliveries.c.status == "pending", due_at=utcnow())
    wait_until(
        lambda: deliverer.tick() is not None and len(smtp.messages) == 2, what="the folded email"
    )
    for _ in range(2):
        deliverer.tick()
    assert len(smtp.messages) == 2
    folded = smtp.messages[1]
    assert folded["Subject"] == "3 things to celebrate"
    text = next(
        p.get_payload(decode=True).decode()
        for p in folded.walk()
        if p.get_content_type() == "text/plain"
    )
    assert text.count("10 rituals") == 3
    with unit_of_work(notify_db) as s:
        assert {
            d.status for d in s.execute(select(deliveries).where(deliveries.c.channel == "email"))
        } == {"delivered"}
