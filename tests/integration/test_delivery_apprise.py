"""Push through Apprise to a real HTTP server on loopback (Apprise's JSON
plugin), by the real delivery worker; and the checks at send and connect time:
a name that rebinds, a redirect, a scheme that hides its host. No test reaches
beyond this machine: a connection to any other address is refused before it
is made (and recorded)."""

from __future__ import annotations

import ipaddress
import itertools
import json
import socket
import threading
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from services.notify import app as notify_app
from services.notify import targets
from services.notify.tables import channels, deliveries, outbox
from shared import events
from shared.db import unit_of_work, utcnow
from shared.workers import Periodic
from tests.conftest import sign_up
from tests.integration.test_delivery import Receiver, _apply, _partner, notify_db, receiver  # noqa: F401 (fixtures)
from tests.support import wait_until

HEADLINE = "Days with anxious moments: from about 5 a week in January to about 2 a week now."


def _milestone(sessions, pid: str) -> str:
    ev = events.make_event(
        "milestones.milestone.achieved",
        source="/milestones",
        subject=pid,
        data={
            "id": str(uuid.uuid4()),
            "type": "fewer_anxious_episodes",
            "level": 1,
            "couple_id": None,
            "partner_id": pid,
            "achieved_at": datetime.now(UTC),
            "headline": HEADLINE,
            "evidence": {"rate_ratio": 0.33},
            "audience": [pid],
        },
    )
    _apply(sessions, ev)
    return ev["data"]["id"]


def _push(sessions):
    with unit_of_work(sessions) as s:
        return s.execute(select(deliveries).where(deliveries.c.channel.like("apprise:%"))).one()


def _outbox(sessions, type_: str) -> list[dict]:
    with unit_of_work(sessions) as s:
        return [
            json.loads(b)["data"]
            for b in s.execute(select(outbox.c.body).where(outbox.c.routing_key == type_)).scalars()
        ]


def _apprise_url(receiver, host: str = "127.0.0.1") -> str:
    return f"json://{host}:{receiver.server.server_port}/push"


def _stored_push(sessions, url: str) -> str:
    """A partner with an Apprise channel stored as it stands (made before today's checks)."""
    pid = _partner(sessions)
    with unit_of_work(sessions) as s:
        s.execute(
            channels.insert().values(
                id=str(uuid.uuid4()),
                partner_id=pid,
                type="apprise",
                target=url,
                created_at=utcnow(),
            )
        )
    return pid


def _until_failed(sessions):
    deliverer = notify_app.make_deliverer()
    wait_until(
        lambda: deliverer.tick() is not None and _push(sessions).status == "failed",
        what="the push to fail",
    )
    return _push(sessions)


@pytest.fixture
def connections(monkeypatch) -> list[str]:
    """Every address a socket of this process connects to; only loopback is really reached."""
    reached: list[str] = []
    connect = socket.socket.connect

    def recorded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            reached.append(address[0])
            if not ipaddress.ip_address(address[0]).is_loopback:
                raise ConnectionRefusedError(111, "a test reaches nothing beyond this machine")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", recorded)
    return reached


def test_an_apprise_target_on_loopback_receives_the_push(notify_db, receiver, journal, monkeypatch):
    monkeypatch.setenv(
        "NOTIFY_ALLOW_PRIVATE_TARGETS", "1"
    )  # as the contract allows on a developer's machine
    from services.notify.app import create_app

    ana = sign_up(journal, "Ana")
    r = (
        create_app()
        .test_client()
        .post(
            "/v1/channels",
            headers=ana["headers"],
            json={"type": "apprise", "url": _apprise_url(receiver)},
        )
    )
    assert r.status_code == 201, r.get_json()
    milestone_id = _milestone(notify_db, ana["id"])

    worker = Periodic(
        "delivery", notify_app.make_deliverer().tick
    )  # the delivery worker, as `tandem` runs it
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: _push(notify_db).status == "delivered", what="the push to be delivered")
    finally:
        worker.stop()
        thread.join(timeout=15)

    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    sent = json.loads(body)
    assert headers["Content-Type"].startswith("application/json")
    assert sent["title"] == "Something to celebrate" and sent["message"] == HEADLINE
    assert "note" not in sent
    delivered = _outbox(notify_db, "notify.notification.delivered")
    assert [(d["milestone_id"], d["channel"]) for d in delivered] == [
        (milestone_id, "in_app"),
        (milestone_id, "apprise"),
    ]


def _public(host, port, *args, **kwargs):
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port or 0))]


def test_a_loopback_apprise_target_is_refused_at_send_time(notify_db, receiver, monkeypatch):
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_TARGETS", "0")  # as in production
    # When the channel was made, the name answered a public address; now it answers loopback.
    url = _apprise_url(receiver, host="localhost")
    assert targets.check_apprise_url(url, allow_private=False, resolve=_public) == url
    ana = _stored_push(notify_db, url)
    milestone_id = _milestone(notify_db, ana)

    deliverer = notify_app.make_deliverer()
    wait_until(
        lambda: deliverer.tick() is not None and _push(notify_db).status == "failed",
        what="the push to fail",
    )
    push = _push(notify_db)
    assert push.last_error.startswith("refused: The host localhost resolves to a loopback address")
    assert receiver.requests == []
    failed = _outbox(notify_db, "notify.notification.failed")
    assert [(f["milestone_id"], f["channel"]) for f in failed] == [(milestone_id, "apprise")]
    assert failed[0]["reason"].startswith("refused")


@pytest.mark.parametrize(
    "private, kind", [("127.0.0.1", "a loopback"), ("169.254.169.254", "a link-local")]
)
def test_a_push_target_whose_name_rebinds_to_a_private_address_after_the_check_is_never_reached(
    notify_db, receiver, connections, monkeypatch, private, kind
):
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_TARGETS", "0")  # as in production
    resolve = socket.getaddrinfo
    answers = itertools.cycle(
        ["93.184.216.34", private]
    )  # public to the check, private to the connection

    def rebinding(host, port, *args, **kwargs):
        if host != "push.example.com":
            return resolve(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    ana = _stored_push(notify_db, _apprise_url(receiver, host="push.example.com"))
    milestone_id = _milestone(notify_db, ana)

    push = _until_failed(notify_db)
    assert push.attempts == 5
    assert push.last_error.startswith(
        f"refused: The host push.example.com resolves to {kind} address"
    )
    assert private not in connections
    assert receiver.requests == []
    failed = _outbox(notify_db, "notify.notification.failed")
    assert [(f["milestone_id"], f["channel"]) for f in failed] == [(milestone_id, "apprise")]


def test_a_push_target_redirecting_to_a_private_address_is_not_followed(
    notify_db, receiver, monkeypatch
):
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_TARGETS", "0")
    # 127.0.0.2 stands for a public service here: the only kind of address a test may reach
    stand_in, refusal = ipaddress.ip_address("127.0.0.2"), targets.address_refusal
    monkeypatch.setattr(
        targets, "address_refusal", lambda ip: None if ip == stand_in else refusal(ip)
    )
    public = Receiver(host="127.0.0.2")
    public.statuses, public.location = (
        [307] * 5,
        receiver.url,
    )  # 307: followed, it would stay a POST
    try:
        ana = _stored_push(notify_db, _apprise_url(public, host="127.0.0.2"))
        _milestone(notify_db, ana)
        push = _until_failed(notify_db)
    finally:
        public.server.shutdown()
    assert push.last_error == "apprise: not delivered"
    assert len(public.requests) == 5  # each try asked once, and took the 307 for a no
    assert receiver.requests == []


# Schemes whose target is not the URL's host: Zulip's organisation names the
# server; a template= is fetched (or read from disk) when sending.
HIDDEN_HOSTS = [
    "zulip://bot@169.254.169.254/abcdefghijklmnopqrstuvwxyz123456",
    "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js?template=http%3A%2F%2F169.254.169.254%2Flatest",
    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ?template=http%3A%2F%2F169.254.169.254%2F",
]


@pytest.mark.parametrize("url", HIDDEN_HOSTS)
def test_a_push_target_that_hides_its_host_is_refused_when_the_channel_is_made(
    notify_db, journal, monkeypatch, url
):
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_TARGETS", "0")
    from services.notify.app import create_app

    ana = sign_up(journal, "Ana")
    client = create_app().test_client()
    r = client.post("/v1/channels", headers=ana["headers"], json={"type": "apprise", "url": url})
    assert r.status_code == 422, r.get_json()
    assert list(r.get_json()["errors"]) == ["url"]
    assert "abcdefghijklmnopqrstuvwxyz" not in r.get_data(
        as_text=True
    )  # the URL's secrets are not echoed
    assert client.get("/v1/channels", headers=ana["headers"]).get_json()["items"] == []


@pytest.mark.parametrize("url", HIDDEN_HOSTS)
def test_a_stored_push_target_that_hides_its_host_fails_at_send_time_without_connecting(
    notify_db, connections, monkeypatch, url
):
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_TARGETS", "0")
    ana = _stored_push(notify_db, url)
    _milestone(notify_db, ana)
    push = _until_failed(notify_db)
    assert push.last_error.startswith("refused: ")
    assert connections == []
