"""The notify service's foundation: recipients from events, one notification
per milestone and recipient, the inbox, and preferences."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from services.notify.tables import notifications, outbox
from shared import events
from tests.conftest import make_couple, new_id
from tests.support import Pipeline, publish_events, wait_until


@pytest.fixture
def notify(backend):
    from services.notify.app import create_app

    app = create_app()
    app.testing = True
    return app.test_client()


def _inbox(client, who, query=""):
    r = client.get("/v1/notifications" + query, headers=who["headers"])
    assert r.status_code == 200, r.get_json()
    return r.get_json()["items"]


def _rituals(n: int) -> list[dict]:
    """`n` rituals at 08:00 (+01:00) on the days before today: never in the future, whatever the hour."""
    today = datetime.now(timezone(timedelta(hours=1))).date()
    return [
        {
            "id": new_id(),
            "kind": "ritual",
            "ritual": "good_morning_text",
            "visibility": "shared",
            "occurred_at": f"{today - timedelta(days=i + 1)}T08:00:00+01:00",
        }
        for i in range(n)
    ]


def test_a_couple_milestone_reaches_both_inboxes_once(backend, journal, notify):
    a, b, _ = make_couple(journal)
    with Pipeline():
        for body in _rituals(10):
            assert journal.post("/v1/entries", headers=a["headers"], json=body).status_code == 201
        wait_until(lambda: _inbox(notify, a) and _inbox(notify, b), timeout=30, what="both inboxes")
    mine, his = _inbox(notify, a), _inbox(notify, b)
    assert len(mine) == len(his) == 1
    assert mine[0]["milestone_id"] == his[0]["milestone_id"]
    assert mine[0]["title"] == "Something to celebrate together" and "10 rituals" in mine[0]["body"]
    assert mine[0]["deliveries"] == [
        {
            "channel": "in_app",
            "status": "delivered",
            "attempts": 1,
            "delivered_at": mine[0]["deliveries"][0]["delivered_at"],
        }
    ]


def _display_name(backend, partner_id):
    from services.notify.tables import recipients

    with backend.engine("notify").connect() as c:
        return c.execute(
            select(recipients.c.display_name).where(recipients.c.id == partner_id)
        ).scalar()


def _milestone_event(owner: str | None, audience: list[str], couple: str | None = None) -> dict:
    """A partner's own milestone (``owner``), or with ``couple`` the couple's."""
    return events.make_event(
        "milestones.milestone.achieved",
        source="/milestones",
        subject=owner or couple,
        data={
            "id": str(uuid.uuid4()),
            "type": "rituals_kept" if couple else "fewer_anxious_episodes",
            "level": 1,
            "couple_id": couple,
            "partner_id": owner,
            "achieved_at": datetime.now(UTC),
            "evidence": {"rituals": 10} if couple else {"p_value": 0.001},
            "headline": "You have kept 10 rituals together."
            if couple
            else "Days with anxious moments: from about 5 a week in October to about 2 a week now.",
            "audience": audience,
        },
    )


def test_the_same_milestone_event_three_times_makes_one_notification(backend, journal, notify):
    a, b, _ = make_couple(journal)
    ev = _milestone_event(a["id"], [a["id"]])
    with Pipeline():
        wait_until(
            lambda: notify.get("/v1/preferences", headers=a["headers"]).status_code == 200,
            what="notify to answer",
        )
        publish_events(ev, ev, dict(ev))
        wait_until(lambda: _inbox(notify, a), what="the notification")
        again = _milestone_event(
            a["id"], [a["id"]]
        )  # a later event, to know the first three were handled
        publish_events(again)
        wait_until(lambda: len(_inbox(notify, a)) == 2, what="the later notification")
    with backend.engine("notify").connect() as c:
        n = c.execute(
            select(func.count())
            .select_from(notifications)
            .where(notifications.c.milestone_id == ev["data"]["id"])
        ).scalar()
    assert n == 1
    assert _inbox(notify, b) == [], (
        "a partner's own milestone, not shared: the other partner is not told"
    )
    assert _inbox(notify, a)[0]["title"] == "Something to celebrate"


def test_a_couples_milestone_is_one_write_of_notes_one_of_events_and_none_when_replayed(backend):
    from sqlalchemy import event as sa_event

    from services.notify import handlers
    from services.notify.tables import deliveries
    from shared.db import make_session_factory, unit_of_work

    engine, couple = backend.engine("notify"), new_id()
    ana, ben = new_id(), new_id()
    ev = _milestone_event(None, [ana, ben], couple=couple)
    parsed = events.parse(json.dumps(ev, default=str))
    sessions = make_session_factory(engine)
    sent: list[str] = []

    def record(_conn, _cursor, sql, *_):
        sent.append(" ".join(sql.split()[:3]).replace('"', "").upper())

    def counts():
        with engine.connect() as c:
            return tuple(
                c.execute(select(func.count()).select_from(t)).scalar()
                for t in (notifications, outbox, deliveries)
            )

    with unit_of_work(sessions) as s:  # the recipients, as their registrations would make them
        handlers._recipients(s, [ana, ben])
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        with unit_of_work(sessions) as s:
            handlers.milestone_achieved(s, parsed)
        first, after_first = list(sent), counts()
        with unit_of_work(sessions) as s:
            handlers.milestone_achieved(s, parsed)
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    assert first.count("INSERT INTO NOTIFICATIONS") == 1  # both partners' notes in one statement
    assert first.count("INSERT INTO OUTBOX") == 1  # both in-app deliveries' events in one
    assert after_first[0] == 2 and after_first[1] == 2  # a note and an event for each partner
    if backend.name == "servers":
        assert len(first) == 7, first
    assert counts() == after_first, "a replay writes no note, no event, no delivery"


def test_reading_a_notification_and_the_unread_filter(backend, journal, notify):
    a, b, _ = make_couple(journal)
    with Pipeline():
        # Ana's name arrives with her registration; before it, the copy says "Your partner".
        wait_until(
            lambda: _display_name(backend, a["id"]) == "Ana",
            what="Ana's registration to reach notify",
        )
        publish_events(_milestone_event(a["id"], [a["id"], b["id"]]))
        wait_until(lambda: _inbox(notify, b), what="the shared milestone in the partner's inbox")
    note = _inbox(notify, b)[0]
    assert note["title"] == "Ana shared a milestone with you"
    assert (
        notify.post(f"/v1/notifications/{note['id']}/read", headers=a["headers"]).status_code == 404
    )
    r = notify.post(f"/v1/notifications/{note['id']}/read", headers=b["headers"])
    assert r.status_code == 200 and r.get_json()["read_at"]
    assert _inbox(notify, b, "?unread=true") == []
    bad = notify.get("/v1/notifications?cursor=not-a-cursor", headers=b["headers"])
    assert bad.status_code == 422 and "cursor" in bad.get_json()["errors"]


def test_preferences_patch_keeps_what_it_does_not_name_and_tells_the_milestones_service(
    backend, journal, notify
):
    a = make_couple(journal)[0]
    defaults = notify.get("/v1/preferences", headers=a["headers"]).get_json()
    assert defaults == {
        "channels": {"in_app": True, "email": True, "push": True},
        "quiet_hours": None,
        "share_milestones_with_partner": False,
    }
    r = notify.patch(
        "/v1/preferences",
        headers=a["headers"],
        json={"quiet_hours": {"start": "22:00", "end": "08:00"}},
    )
    assert r.status_code == 200
    r = notify.patch(
        "/v1/preferences",
        headers=a["headers"],
        json={"channels": {"email": False}, "share_milestones_with_partner": True},
    )
    assert r.get_json() == {
        "channels": {"in_app": True, "email": False, "push": True},
        "quiet_hours": {"start": "22:00", "end": "08:00"},
        "share_milestones_with_partner": True,
    }
    for bad, field in (
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours"),
        ({"share_milestones_with_partner": 1}, "share_milestones_with_partner"),
        ({"channels": {"fax": True}}, "channels"),
        ({"bogus": 1}, "bogus"),
    ):
        r = notify.patch("/v1/preferences", headers=a["headers"], json=bad)
        assert r.status_code == 422 and field in r.get_json()["errors"], (bad, r.get_json())
    with backend.engine("notify").connect() as c:
        sent = [
            json.loads(b)
            for b in c.execute(
                select(outbox.c.body).where(outbox.c.routing_key == "notify.preferences.changed")
            ).scalars()
        ]
    assert [e["data"]["share_milestones_with_partner"] for e in sent] == [False, True]
    assert all(e["data"]["partner_id"] == a["id"] for e in sent)


def test_notify_needs_a_token(notify):
    for method, path in (
        ("get", "/v1/notifications"),
        ("get", "/v1/preferences"),
        ("patch", "/v1/preferences"),
        ("post", f"/v1/notifications/{uuid.uuid4()}/read"),
    ):
        r = getattr(notify, method)(path, json={} if method == "patch" else None)
        assert r.status_code == 401 and r.mimetype == "application/problem+json"


def test_channels_are_added_listed_and_removed_with_private_targets_refused(
    backend, journal, monkeypatch
):
    from services.notify.app import create_app

    a, b, _ = make_couple(journal)
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_TARGETS", "0")  # as in production
    client = create_app().test_client()
    for url, kind in (
        ("http://127.0.0.1:9/hook", "webhook"),
        ("http://[::1]/hook", "webhook"),
        ("http://169.254.169.254/latest", "webhook"),
        ("http://2130706433/", "webhook"),
        ("json://10.0.0.5/notify", "apprise"),
        ("file:///etc/passwd", "webhook"),
    ):
        r = client.post("/v1/channels", headers=a["headers"], json={"type": kind, "url": url})
        assert r.status_code == 422 and "url" in r.get_json()["errors"], (url, r.get_json())
    r = client.post(
        "/v1/channels",
        headers=a["headers"],
        json={"type": "email", "address": "Ana.Other@Example.com"},
    )
    assert r.status_code == 201 and r.get_json()["address"] == "ana.other@example.com"
    email_id = r.get_json()["id"]
    for bad, field in (
        ({"type": "webhook"}, "url"),
        ({"type": "email", "url": "http://x"}, "address"),
        ({"type": "sms", "address": "a@b.co"}, "type"),
        ({"type": "email", "address": "nope"}, "address"),
    ):
        r = client.post("/v1/channels", headers=a["headers"], json=bad)
        assert r.status_code == 422 and field in r.get_json()["errors"], (bad, r.get_json())

    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_TARGETS", "1")  # a developer's machine, and tests
    dev = create_app().test_client()
    r = dev.post(
        "/v1/channels",
        headers=a["headers"],
        json={"type": "webhook", "url": "http://127.0.0.1:9/hook"},
    )
    assert r.status_code == 201 and len(r.get_json()["secret"]) == 64
    listed = dev.get("/v1/channels", headers=a["headers"]).get_json()["items"]
    assert [c["type"] for c in listed] == ["email", "webhook"] and all(
        "secret" not in c for c in listed
    )
    assert dev.get("/v1/channels", headers=b["headers"]).get_json()["items"] == []
    assert dev.delete(f"/v1/channels/{email_id}", headers=b["headers"]).status_code == 404
    assert dev.delete(f"/v1/channels/{email_id}", headers=a["headers"]).status_code == 204
    assert [
        c["type"] for c in dev.get("/v1/channels", headers=a["headers"]).get_json()["items"]
    ] == ["webhook"]


def test_an_account_has_at_most_ten_channels_and_one_more_changes_nothing(
    backend, journal, monkeypatch
):
    from concurrent.futures import ThreadPoolExecutor

    from services.notify.app import create_app

    a, b, _ = make_couple(journal)
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_TARGETS", "1")
    app = create_app()

    def add(who, i: int):
        return app.test_client().post(
            "/v1/channels",
            headers=who["headers"],
            json={"type": "webhook", "url": f"http://127.0.0.1:9/hook-{i}"},
        )

    assert [add(a, i).status_code for i in range(7)] == [201] * 7
    with ThreadPoolExecutor(5) as pool:  # five at once for the last three places
        statuses = sorted(r.status_code for r in pool.map(lambda i: add(a, i), range(7, 12)))
    assert statuses == [201, 201, 201, 409, 409]
    r = add(a, 12)
    assert r.status_code == 409 and r.get_json()["status"] == 409
    assert "at most 10 channels" in r.get_json()["detail"]
    client = app.test_client()
    mine = client.get("/v1/channels", headers=a["headers"]).get_json()["items"]
    assert len(mine) == 10 and len({c["url"] for c in mine}) == 10  # nothing stored was lost
    assert add(b, 0).status_code == 201  # per account: her partner's are his own
    assert client.delete(f"/v1/channels/{mine[0]['id']}", headers=a["headers"]).status_code == 204
    assert add(a, 13).status_code == 201  # a place freed is a place to take
