"""A notification channel is one module and one line in the channels registry:
a channel made only for this test is offered by ``POST /v1/channels``, its
targets checked, deliveries planned on it and sent to it, and shown in the
inbox, with nothing else in the service changed."""

from __future__ import annotations

import json

from sqlalchemy import select

from services.notify import app as notify_app
from services.notify import channels, handlers
from services.notify.tables import deliveries, outbox
from shared import auth, events
from shared.db import make_session_factory, unit_of_work
from tests.channels import pigeon
from tests.conftest import new_id
from tests.support import own_milestone_event, wait_until


def _apply(db, ev: dict) -> None:
    with unit_of_work(db) as s:
        handlers.HANDLERS[ev["type"]](s, events.parse(ev))


def test_a_channel_registered_with_one_line_is_offered_planned_and_delivered(backend, monkeypatch):
    db = make_session_factory(backend.engine("notify"))
    client = notify_app.create_app().test_client()
    pid = new_id()
    token = auth.TokenIssuer(auth.private_key_pem(backend.var_dir), 600).issue(pid)
    headers = {"Authorization": f"Bearer {token}"}
    registered = {"partner_id": pid, "email": "ana@example.com", "display_name": "Ana"}
    _apply(
        db,
        events.make_event(
            "journal.partner.registered",
            source="/journal",
            subject=pid,
            data={**registered, "timezone": "UTC"},
        ),
    )
    loft = {"type": "pigeon", "url": "pigeon://the-old-mill"}
    unknown = client.post("/v1/channels", headers=headers, json=loft)
    assert unknown.status_code == 422 and "type" in unknown.get_json()["errors"]

    monkeypatch.setitem(channels.CHANNELS, "pigeon", "tests.channels.pigeon:Pigeon")  # the one line
    monkeypatch.setattr(pigeon, "FLOWN", [])

    refused = client.post(
        "/v1/channels", headers=headers, json={"type": "pigeon", "url": "https://example.com"}
    )
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {"url": ["A pigeon flies to a pigeon:// loft."]}
    wrong_field = client.post(
        "/v1/channels", headers=headers, json={"type": "pigeon", "address": "a@example.com"}
    )
    assert wrong_field.status_code == 422 and "url" in wrong_field.get_json()["errors"]
    made = client.post("/v1/channels", headers=headers, json=loft)
    assert made.status_code == 201, made.get_json()
    channel = made.get_json()
    assert channel["type"] == "pigeon" and channel["url"] == "pigeon://the-old-mill"
    assert "secret" not in channel

    milestone_id = new_id()
    _apply(db, own_milestone_event(pid, milestone_id))
    with unit_of_work(db) as s:
        planned = s.execute(select(deliveries).where(deliveries.c.kind == "pigeon")).one()
    assert planned.target_id == channel["id"] and planned.status == "pending"

    deliverer = notify_app.make_deliverer()

    def flown():
        deliverer.tick()
        return pigeon.FLOWN

    wait_until(flown, what="the pigeon to fly")
    [message] = pigeon.FLOWN
    assert message.target.address == "pigeon://the-old-mill"
    assert message.milestone_id == milestone_id and message.partner_id == pid
    assert message.title and message.body
    with unit_of_work(db) as s:
        assert s.execute(
            select(deliveries.c.status).where(deliveries.c.id == planned.id)
        ).scalar() == ("delivered")
        said = [
            json.loads(b)["data"]
            for b in s.execute(
                select(outbox.c.body).where(outbox.c.routing_key == "notify.notification.delivered")
            ).scalars()
        ]
    assert [d["channel"] for d in said] == ["in_app", "pigeon"]
    for _ in range(3):  # at most once
        deliverer.tick()
    assert len(pigeon.FLOWN) == 1

    [note] = client.get("/v1/notifications", headers=headers).get_json()["items"]
    assert {d["channel"]: d["status"] for d in note["deliveries"]} == {
        "in_app": "delivered",
        "pigeon": "delivered",
    }
    listed = client.get("/v1/channels", headers=headers).get_json()["items"]
    assert [(c["type"], c["url"]) for c in listed] == [("pigeon", "pigeon://the-old-mill")]
