"""Push through Apprise to a real HTTP server on loopback (Apprise's JSON
plugin), by the real delivery worker; and the send-time address check."""
from __future__ import annotations

import json
import socket
import threading
import uuid
from datetime import datetime, timezone

from sqlalchemy import select

from services.notify import app as notify_app
from services.notify import targets
from services.notify.tables import channels, deliveries, outbox
from shared import events
from shared.db import unit_of_work, utcnow
from shared.workers import Periodic
from tests.conftest import sign_up
from tests.integration.test_delivery import _apply, _partner, notify_db, receiver  # noqa: F401 (fixtures)
from tests.support import wait_until

HEADLINE = "Days with anxious moments: from about 5 a week in January to about 2 a week now."


def _milestone(sessions, pid: str) -> str:
    ev = events.make_event("milestones.milestone.achieved", source="/milestones", subject=pid, data={
        "id": str(uuid.uuid4()), "type": "fewer_anxious_episodes", "level": 1, "couple_id": None,
        "partner_id": pid, "achieved_at": datetime.now(timezone.utc), "headline": HEADLINE,
        "evidence": {"rate_ratio": 0.33}, "audience": [pid]})
    _apply(sessions, ev)
    return ev["data"]["id"]


def _push(sessions):
    with unit_of_work(sessions) as s:
        return s.execute(select(deliveries).where(deliveries.c.channel.like("apprise:%"))).one()


def _outbox(sessions, type_: str) -> list[dict]:
    with unit_of_work(sessions) as s:
        return [json.loads(b)["data"] for b in
                s.execute(select(outbox.c.body).where(outbox.c.routing_key == type_)).scalars()]


def _apprise_url(receiver, host: str = "127.0.0.1") -> str:
    return f"json://{host}:{receiver.server.server_port}/push"


def test_an_apprise_target_on_loopback_receives_the_push(notify_db, receiver, journal, monkeypatch):
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_TARGETS", "1")  # as the contract allows on a developer's machine
    from services.notify.app import create_app

    ana = sign_up(journal, "Ana")
    r = create_app().test_client().post("/v1/channels", headers=ana["headers"],
                                        json={"type": "apprise", "url": _apprise_url(receiver)})
    assert r.status_code == 201, r.get_json()
    milestone_id = _milestone(notify_db, ana["id"])

    worker = Periodic("delivery", notify_app.make_deliverer().tick)  # the delivery worker, as `tandem` runs it
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
    assert [(d["milestone_id"], d["channel"]) for d in delivered] == [(milestone_id, "in_app"),
                                                                      (milestone_id, "apprise")]


def _public(host, port, *args, **kwargs):
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port or 0))]


def test_a_loopback_apprise_target_is_refused_at_send_time(notify_db, receiver, monkeypatch):
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_TARGETS", "0")  # as in production
    # When the channel was made, the name answered a public address; now it answers loopback.
    url = _apprise_url(receiver, host="localhost")
    assert targets.check_apprise_url(url, allow_private=False, resolve=_public) == url
    ana = _partner(notify_db)
    with unit_of_work(notify_db) as s:
        s.execute(channels.insert().values(id=str(uuid.uuid4()), partner_id=ana, type="apprise", target=url,
                                           created_at=utcnow()))
    milestone_id = _milestone(notify_db, ana)

    deliverer = notify_app.make_deliverer()
    wait_until(lambda: deliverer.tick() is not None and _push(notify_db).status == "failed",
               what="the push to fail")
    push = _push(notify_db)
    assert push.last_error.startswith("refused: The host localhost resolves to a loopback address")
    assert receiver.requests == []
    failed = _outbox(notify_db, "notify.notification.failed")
    assert [(f["milestone_id"], f["channel"]) for f in failed] == [(milestone_id, "apprise")]
    assert failed[0]["reason"].startswith("refused")
