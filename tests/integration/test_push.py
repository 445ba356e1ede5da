"""Native push: a phone registered under a login session, a celebration pushed
to it through FCM's HTTP v1 API (a local stand-in that checks each request as
FCM would receive it), paced and quiet-houred like email, stopped when the
session ends, and a token FCM no longer knows removed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from services.notify import app as notify_app
from services.notify import fcm as fcm_client
from services.notify import handlers
from services.notify.tables import (
    deliveries,
    devices,
    ended_sessions,
    notifications,
    outbox,
    recipients,
)
from shared import auth, events
from shared.db import make_session_factory, unit_of_work, utcnow
from tests.conftest import NOTE_MARKER, new_id
from tests.fcm import FcmStandIn, push_token
from tests.support import Pipeline, publish_events, wait_until


@pytest.fixture
def fcm(tmp_path, monkeypatch):
    standin = FcmStandIn(tmp_path)
    for name, value in standin.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NOTIFY_RETRY_BASE_SECONDS", "0.01")
    fcm_client.client.cache_clear()
    yield standin
    standin.close()
    assert not standin.problems, standin.problems


@pytest.fixture
def notify(backend):
    app = notify_app.create_app()
    app.testing = True
    return app.test_client()


@pytest.fixture
def db(backend):
    return make_session_factory(backend.engine("notify"))


def _signed_in(backend, partner_id: str, session_id: str | None = None) -> dict:
    """Headers of a token of ``partner_id``'s login session ``session_id`` (a new one if not given), as
    the journal issues them; with ``session_id=""``, a token of no session (issued before sessions)."""
    sid = None if session_id == "" else (session_id or new_id())
    token = auth.TokenIssuer(auth.private_key_pem(backend.var_dir), 600).issue(
        partner_id, session_id=sid
    )
    return {"Authorization": f"Bearer {token}", "sid": sid}


def _headers(who: dict) -> dict:
    return {"Authorization": who["Authorization"]}


def _register(notify, who: dict, token: str, platform: str = "fcm"):
    return notify.post(
        "/v1/devices", headers=_headers(who), json={"platform": platform, "token": token}
    )


def _event(type_: str, data: dict, subject: str) -> dict:
    source = "/" + type_.partition(".")[0]
    return events.make_event(type_, source=source, subject=subject, data=data)


def _registered(pid: str, name: str = "Ana") -> dict:
    return _event(
        "journal.partner.registered",
        {
            "partner_id": pid,
            "email": f"{name.lower()}@example.com",
            "display_name": name,
            "timezone": "Europe/Paris",
        },
        pid,
    )


def _milestone(
    owner: str | None,
    audience: list[str],
    couple_id: str | None = None,
    headline: str = "You have kept 10 rituals together.",
) -> dict:
    return _event(
        "milestones.milestone.achieved",
        {
            "id": new_id(),
            "type": "rituals_kept",
            "level": 1,
            "couple_id": couple_id,
            "partner_id": owner,
            "achieved_at": datetime.now(UTC),
            "headline": headline,
            "evidence": {"rituals": 10},
            "audience": audience,
        },
        owner or couple_id,
    )


def _session_ended(pid: str, sid: str, reason: str = "logout") -> dict:
    return _event(
        "journal.session.ended", {"partner_id": pid, "session_id": sid, "reason": reason}, pid
    )


def _apply(db, *evs: dict) -> None:
    for ev in evs:
        with unit_of_work(db) as s:
            handlers.HANDLERS[ev["type"]](s, events.parse(ev))


def _rows(db, table, *where) -> list:
    with unit_of_work(db) as s:
        return s.execute(select(table).where(*where)).all()


def _pushes(db, pid: str) -> list:
    with unit_of_work(db) as s:
        return s.execute(
            select(deliveries)
            .join(notifications, notifications.c.id == deliveries.c.notification_id)
            .where(notifications.c.partner_id == pid, deliveries.c.channel.like("push:%"))
        ).all()


def _counted(outcome: str) -> float:
    from prometheus_client import REGISTRY

    return (
        REGISTRY.get_sample_value(
            "tandem_deliveries_total", {"channel": "push", "outcome": outcome}
        )
        or 0.0
    )


# --- through the real consumer: events published as the journal and the milestones service would ---


def test_a_celebration_reaches_the_phones_of_its_audience_once_and_a_logout_stops_them(
    backend, fcm, notify, db
):
    ana, ben, stranger, couple = new_id(), new_id(), new_id(), new_id()
    ana_phone, ana_tablet, ben_phone, strangers = (
        push_token("ana"),
        push_token("tab"),
        push_token("ben"),
        push_token("str"),
    )
    with Pipeline():
        publish_events(
            _registered(ana),
            _registered(ben, "Ben"),
            _registered(stranger, "Sam"),
            _event(
                "journal.couple.partnered", {"couple_id": couple, "partner_ids": [ana, ben]}, couple
            ),
        )
        wait_until(
            lambda: (
                len(
                    _rows(
                        db,
                        recipients,
                        recipients.c.id.in_([ana, ben, stranger]),
                        recipients.c.display_name.is_not(None),
                    )
                )
                == 3
            ),
            what="the three partners",
        )
        on_phone, on_tablet = _signed_in(backend, ana), _signed_in(backend, ana)
        assert _register(notify, on_phone, ana_phone).status_code == 201
        r = _register(notify, on_tablet, ana_tablet, "apns")
        assert r.status_code == 201 and r.get_json()["token_hint"] == "…" + ana_tablet[-6:]
        assert ana_tablet not in r.get_data(as_text=True)
        assert _register(notify, _signed_in(backend, ben), ben_phone).status_code == 201
        assert _register(notify, _signed_in(backend, stranger), strangers).status_code == 201

        # Ana's own milestone, not shared: her phones alone, once each, whatever the broker redelivers
        own = _milestone(ana, [ana], headline="Fewer anxious moments: 2 a week, down from 5.")
        publish_events(own, own)
        wait_until(
            lambda: [p.status for p in _pushes(db, ana)] == ["delivered", "delivered"],
            timeout=30,
            what="Ana's two pushes delivered",
        )
        assert len(fcm.messages) == 2, fcm.messages
        phone, tablet = fcm.sent_to(ana_phone), fcm.sent_to(ana_tablet)
        assert len(phone) == len(tablet) == 1
        assert phone[0]["notification"] == {
            "title": "Something to celebrate",
            "body": "Fewer anxious moments: 2 a week, down from 5.",
        }
        assert phone[0]["android"] == {"priority": "normal"} and "apns" not in phone[0]
        assert (
            tablet[0]["apns"]["headers"]["apns-push-type"] == "alert" and "android" not in tablet[0]
        )
        assert fcm.sent_to(ben_phone) == [] and fcm.sent_to(strangers) == [], (
            "not Ben's, not a stranger's"
        )
        assert _pushes(db, ben) == [] and _pushes(db, stranger) == []

        # Ana signs out on her phone: that phone is removed, her tablet (another session) stays
        publish_events(_session_ended(ana, on_phone["sid"]))
        wait_until(
            lambda: (
                [
                    d["token_hint"]
                    for d in notify.get("/v1/devices", headers=_headers(on_tablet)).get_json()[
                        "items"
                    ]
                ]
                == ["…" + ana_tablet[-6:]]
            ),
            what="her phone removed",
        )
        r = _register(
            notify, on_phone, ana_phone
        )  # the ended session's token, still valid for minutes
        assert r.status_code == 401 and "ended" in r.get_json()["detail"]
        assert _rows(db, devices, devices.c.token == ana_phone) == []

        # The next celebration: no push for the phone signed out; the tablet's waits for tomorrow (one a day)
        publish_events(_milestone(None, [ana, ben], couple_id=couple))
        wait_until(
            lambda: len(_pushes(db, ana)) == 3 and len(_pushes(db, ben)) == 1,
            timeout=30,
            what="the couple's celebration planned",
        )
        channels = {p.channel for p in _pushes(db, ana) if p.status == "pending"}
        assert channels == {
            f"push:{d.id}" for d in _rows(db, devices, devices.c.token == ana_tablet)
        }
        wait_until(
            lambda: fcm.sent_to(ben_phone),
            timeout=30,
            what="Ben's push of the couple's celebration",
        )
        assert len(fcm.messages) == 3 and fcm.sent_to(ana_phone) == phone
        assert (
            fcm.sent_to(ben_phone)[0]["notification"]["title"] == "Something to celebrate together"
        )
    assert all(NOTE_MARKER not in json.dumps(m) and "@" not in json.dumps(m) for m in fcm.messages)


# --- the delivery worker on its own ---


def _partner(db) -> str:
    pid = new_id()
    _apply(db, _registered(pid))
    return pid


def _device(db, pid: str, token: str, platform: str = "fcm", session_id: str | None = None) -> str:
    did = new_id()
    with unit_of_work(db) as s:
        s.execute(
            devices.insert().values(
                id=did,
                partner_id=pid,
                session_id=session_id or new_id(),
                platform=platform,
                token=token,
                created_at=utcnow(),
            )
        )
    return did


def _run(deliverer, done, what: str) -> None:
    wait_until(lambda: deliverer.tick() is not None and done(), what=what)


def test_in_quiet_hours_the_push_waits_and_a_logout_meanwhile_means_it_never_goes(backend, fcm, db):
    from zoneinfo import ZoneInfo

    pid = _partner(db)
    sid, other = new_id(), new_id()
    phone, tablet = push_token("q1"), push_token("q2")
    _device(db, pid, phone, session_id=sid)
    _device(db, pid, tablet, "apns", session_id=other)
    here = datetime.now(ZoneInfo("Europe/Paris"))
    quiet = (
        (here - timedelta(hours=1)).strftime("%H:%M"),
        (here + timedelta(hours=1)).strftime("%H:%M"),
    )
    with unit_of_work(db) as s:
        s.execute(
            update(recipients)
            .where(recipients.c.id == pid)
            .values(quiet_start=quiet[0], quiet_end=quiet[1])
        )
    _apply(db, _milestone(pid, [pid]))
    held = _pushes(db, pid)
    assert [p.status for p in held] == ["pending", "pending"]
    assert all(
        utcnow() + timedelta(minutes=58) < p.due_at <= utcnow() + timedelta(hours=1) for p in held
    )
    deliverer = notify_app.make_deliverer()
    for _ in range(3):
        deliverer.tick()
    assert fcm.messages == [] and fcm.token_requests == 0, "nothing pushed in quiet hours"

    _apply(db, _session_ended(pid, sid, "password_changed"))  # signed out everywhere but the tablet
    assert _rows(db, devices, devices.c.token == phone) == []
    assert len(_pushes(db, pid)) == 1, "the phone's waiting push went with it"
    assert [
        r.session_id for r in _rows(db, ended_sessions, ended_sessions.c.partner_id == pid)
    ] == [sid]

    # The quiet hours end: the tablet's push goes, once; the phone's never
    with unit_of_work(db) as s:
        s.execute(
            update(deliveries).where(deliveries.c.status == "pending").values(due_at=utcnow())
        )
        s.execute(
            update(recipients)
            .where(recipients.c.id == pid)
            .values(quiet_start=None, quiet_end=None)
        )
    _run(deliverer, lambda: fcm.sent_to(tablet), "the tablet's push after quiet hours")
    for _ in range(3):
        deliverer.tick()
    assert len(fcm.messages) == 1 and fcm.sent_to(phone) == []
    assert [p.status for p in _pushes(db, pid)] == ["delivered"]


def test_a_token_fcm_no_longer_knows_is_removed_and_not_tried_again(backend, fcm, db):
    pid = _partner(db)
    gone, kept = push_token("gone"), push_token("kept")
    gone_id, _ = _device(db, pid, gone), _device(db, pid, kept)
    fcm.unregistered.add(gone)
    failed_before, delivered_before = _counted("failed"), _counted("delivered")
    _apply(db, _milestone(pid, [pid]))
    deliverer = notify_app.make_deliverer()
    _run(
        deliverer,
        lambda: {p.status for p in _pushes(db, pid)} == {"failed", "delivered"},
        "both settled",
    )
    for _ in range(3):
        deliverer.tick()
    assert _rows(db, devices, devices.c.id == gone_id) == [], "the unregistered token is removed"
    assert [r.token for r in _rows(db, devices, devices.c.partner_id == pid)] == [kept]
    failed = next(p for p in _pushes(db, pid) if p.status == "failed")
    assert (
        failed.attempts == 1
        and "UNREGISTERED" in failed.last_error
        and gone not in failed.last_error
    )
    assert len(fcm.sent_to(kept)) == 1 and fcm.sent_to(gone) == []
    assert _counted("failed") == failed_before + 1 and _counted("delivered") == delivered_before + 1
    with unit_of_work(db) as s:
        reported = [
            json.loads(b)["data"]
            for b in s.execute(
                select(outbox.c.body).where(outbox.c.routing_key == "notify.notification.failed")
            ).scalars()
        ]
    assert [r["channel"] for r in reported] == ["push"]


def test_fcm_answering_unavailable_is_tried_again_and_the_push_delivered_once(
    backend, fcm, db, monkeypatch
):
    pid = _partner(db)
    phone = push_token("retry")
    _device(db, pid, phone)
    answers = [503, 429]
    send = fcm._send

    def busy_then_fine(path, authorization, body):
        if answers:
            return answers.pop(0), {
                "error": {"code": 503, "status": "UNAVAILABLE", "message": "busy"}
            }
        return send(path, authorization, body)

    monkeypatch.setattr(fcm, "_send", busy_then_fine)
    _apply(db, _milestone(pid, [pid]))
    deliverer = notify_app.make_deliverer()
    _run(
        deliverer,
        lambda: [p.status for p in _pushes(db, pid)] == ["delivered"],
        "the push, third time",
    )
    assert _pushes(db, pid)[0].attempts == 3 and len(fcm.sent_to(phone)) == 1
    assert fcm.token_requests == 1, "the access token is kept between sends"


def test_without_fcm_configured_no_push_is_planned(backend, db, monkeypatch):
    monkeypatch.delenv("FCM_PROJECT_ID", raising=False)
    pid = _partner(db)
    _device(db, pid, push_token("off"))
    _apply(db, _milestone(pid, [pid]))
    assert _pushes(db, pid) == []


def test_push_off_in_the_preferences_plans_no_push(backend, fcm, db):
    pid = _partner(db)
    _device(db, pid, push_token("pref"))
    with unit_of_work(db) as s:
        s.execute(update(recipients).where(recipients.c.id == pid).values(push_on=False))
    _apply(db, _milestone(pid, [pid]))
    assert _pushes(db, pid) == []


# --- the API ---


def test_devices_are_the_callers_alone_and_tied_to_a_login_session(backend, fcm, notify, db):
    ana, ben, stranger = new_id(), new_id(), new_id()
    me, her_partner, someone = (
        _signed_in(backend, ana),
        _signed_in(backend, ben),
        _signed_in(backend, stranger),
    )
    token = push_token("api")
    r = _register(notify, me, token, "apns")
    assert r.status_code == 201, r.get_json()
    mine = r.get_json()
    assert set(mine) == {"id", "platform", "token_hint", "this_session", "created_at"}
    assert (
        mine["platform"] == "apns"
        and mine["this_session"] is True
        and token not in r.get_data(as_text=True)
    )

    listed = notify.get("/v1/devices", headers=_headers(me)).get_json()["items"]
    assert [d["id"] for d in listed] == [mine["id"]] and token not in json.dumps(listed)
    elsewhere = _signed_in(backend, ana)  # her other login session sees it, not as its own
    assert [
        d["this_session"]
        for d in notify.get("/v1/devices", headers=_headers(elsewhere)).get_json()["items"]
    ] == [False]
    for other in (her_partner, someone):
        assert notify.get("/v1/devices", headers=_headers(other)).get_json()["items"] == []
        r = notify.delete(f"/v1/devices/{mine['id']}", headers=_headers(other))
        assert r.status_code == 404 and r.get_json()["detail"] == "No such device."
    assert notify.delete(f"/v1/devices/{new_id()}", headers=_headers(me)).status_code == 404

    # the app starting again under another session: the same device, moved to it
    r = _register(notify, elsewhere, token, "apns")
    assert (
        r.status_code == 200
        and r.get_json()["id"] == mine["id"]
        and r.get_json()["this_session"] is True
    )
    assert [d.session_id for d in _rows(db, devices, devices.c.partner_id == ana)] == [
        elsewhere["sid"]
    ]

    # the phone handed to Ben, who signs in there: the token is his now, no longer hers
    r = _register(notify, her_partner, token)
    assert r.status_code == 201
    assert notify.get("/v1/devices", headers=_headers(me)).get_json()["items"] == []
    assert [d.partner_id for d in _rows(db, devices, devices.c.token == token)] == [ben]

    assert (
        notify.delete(
            f"/v1/devices/{r.get_json()['id']}", headers=_headers(her_partner)
        ).status_code
        == 204
    )
    assert _rows(db, devices, devices.c.token == token) == []

    # a token of no login session (issued before sessions existed) registers nothing
    r = _register(notify, _signed_in(backend, ana, ""), push_token("nosid"))
    assert r.status_code == 401 and "no login session" in r.get_json()["detail"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert _rows(db, devices, devices.c.partner_id == ana) == []


def test_bad_devices_are_refused_naming_the_field_and_never_echoing_the_token(
    backend, fcm, notify, db
):
    me = _signed_in(backend, new_id())
    secret = push_token("bad")
    for body, field in (
        ({"platform": "webpush", "token": secret}, "platform"),
        ({"platform": "fcm", "token": secret + " <script>"}, "token"),
        ({"platform": "fcm", "token": "short" + "1" * 10}, "token"),
        ({"platform": "fcm", "token": secret * 60}, "token"),
        ({"platform": "fcm"}, "token"),
        ({"token": secret}, "platform"),
        ({"platform": "fcm", "token": 12345}, "token"),
    ):
        r = notify.post("/v1/devices", headers=_headers(me), json=body)
        assert r.status_code == 422 and field in r.get_json()["errors"], (field, r.get_json())
        assert secret not in r.get_data(as_text=True)
    assert _rows(db, devices) == []


def test_an_account_has_at_most_ten_devices(backend, fcm, notify):
    from concurrent.futures import ThreadPoolExecutor

    ana, ben = new_id(), new_id()
    me = _signed_in(backend, ana)
    assert [_register(notify, me, push_token(f"d{i}")).status_code for i in range(8)] == [201] * 8
    app = notify.application
    with ThreadPoolExecutor(4) as pool:  # four at once for the last two places
        statuses = sorted(
            pool.map(
                lambda i: _register(app.test_client(), me, push_token(f"e{i}")).status_code,
                range(4),
            )
        )
    assert statuses == [201, 201, 409, 409]
    r = _register(notify, me, push_token("over"))
    assert r.status_code == 409 and "at most 10 devices" in r.get_json()["detail"]
    assert len(notify.get("/v1/devices", headers=_headers(me)).get_json()["items"]) == 10
    assert _register(notify, _signed_in(backend, ben), push_token("his")).status_code == 201


def test_an_erased_account_keeps_no_device_and_its_token_registers_none(backend, fcm, notify, db):
    pid = _partner(db)
    me = _signed_in(backend, pid)
    assert _register(notify, me, push_token("erase")).status_code == 201
    _apply(db, _session_ended(pid, new_id()))  # a session of hers ended before: remembered
    assert _rows(db, ended_sessions, ended_sessions.c.partner_id == pid)
    _apply(db, _milestone(pid, [pid]))
    _apply(db, _event("journal.partner.erased", {"partner_id": pid, "couple_id": None}, pid))
    assert _rows(db, devices, devices.c.partner_id == pid) == []
    assert _rows(db, ended_sessions, ended_sessions.c.partner_id == pid) == []
    assert _pushes(db, pid) == []
    r = _register(notify, me, push_token("after"))
    assert r.status_code == 401 and _rows(db, devices, devices.c.partner_id == pid) == []
    assert notify.get("/v1/devices", headers=_headers(me)).status_code == 401
    # a late session end of hers leaves nothing of her either
    _apply(db, _session_ended(pid, me["sid"]))
    assert _rows(db, ended_sessions, ended_sessions.c.partner_id == pid) == []


def _waiting_on_a_lock(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as c:
        return c.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        ).scalar()


def test_a_session_ending_while_its_phone_registers_leaves_no_phone_either_way(rabbit_backend, fcm):
    """The end of a session and a registration under it wait for each other (the account's row lock):
    whichever comes first, the other sees it, and no phone outlives its session (PostgreSQL)."""
    from concurrent.futures import ThreadPoolExecutor

    from services.notify import use_cases

    engine = rabbit_backend.engine("notify")
    db = make_session_factory(engine)
    notify = notify_app.create_app().test_client()
    pid = _partner(db)
    with ThreadPoolExecutor(1) as pool:
        # The end first, not yet committed: the registration waits for it, then is refused.
        first = _signed_in(rabbit_backend, pid)
        with unit_of_work(db) as s:
            handlers.session_ended(s, events.parse(_session_ended(pid, first["sid"])))
            registering = pool.submit(_register, notify, first, push_token("race1"))
            wait_until(
                lambda: _waiting_on_a_lock(engine) == 1, what="the registration waiting for the end"
            )
        assert registering.result(timeout=30).status_code == 401
        assert _rows(db, devices, devices.c.partner_id == pid) == []

        # The registration first, not yet committed: the end waits for it, then removes the phone.
        second = new_id()
        with unit_of_work(db) as s:
            _, status = use_cases.register_device(
                s, pid, second, {"platform": "fcm", "token": push_token("race2")}
            )
            assert status == 201
            ending = pool.submit(_apply, db, _session_ended(pid, second))
            wait_until(
                lambda: _waiting_on_a_lock(engine) == 1, what="the end waiting for the registration"
            )
        ending.result(timeout=30)
        assert _rows(db, devices, devices.c.partner_id == pid) == []
