"""A partner's private entries reach nothing the other partner reads, through
the three services as processes: not the couple's milestones nor their
evidence, not the inbox, the live stream, the email or the webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from sqlalchemy import func, select

from services.milestones.tables import entries as milestones_entries
from tests.conftest import free_port
from tests.e2e.conftest import delivered_and_quiet
from tests.e2e.test_celebrations_e2e import _far_from_midnight, _texts
from tests.e2e.test_milestones_e2e import _partner
from tests.e2e.test_notify_stream import StreamClient
from tests.support import paris_today, rituals, wait_until

SECRET_TAG = "therapist_affair_session"
WAIT = 90.0


class Hooks(BaseHTTPRequestHandler):
    """A webhook receiver on 127.0.0.1: every body it is sent."""

    bodies: list[bytes] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):  # quiet: the suite's output is read for secrets
        pass


@pytest.fixture
def hooks():
    Hooks.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tandem", Hooks.bodies
    server.shutdown()
    server.server_close()


@pytest.mark.e2e
def test_bens_private_rituals_reach_nothing_ana_reads_while_shared_ones_count(
    backend, running, mail, hooks, outboxes
):
    hook_url, hook_bodies = hooks
    journal, milestones, notify = (running.urls[s] for s in ("journal", "milestones", "notify"))
    http = requests.Session()
    tz = _far_from_midnight()
    ana, ben = _partner(http, journal, "ana", tz), _partner(http, journal, "ben", tz)
    ana_email = http.get(journal + "/v1/export", headers=ana["headers"]).json()["account"]["email"]
    assert http.patch(
        notify + "/v1/preferences", headers=ana["headers"], json={"quiet_hours": None}
    ).ok
    r = http.post(
        notify + "/v1/channels", headers=ana["headers"], json={"type": "webhook", "url": hook_url}
    )
    assert r.status_code == 201, r.text
    code = http.post(journal + "/v1/couples", headers=ana["headers"]).json()["invite_code"]
    assert http.post(
        journal + "/v1/couples/join", headers=ben["headers"], json={"invite_code": code}
    ).ok
    stream = StreamClient(notify + "/v1/notifications/stream", ana["headers"])
    stream.until_live()

    today = paris_today()
    for body in rituals(today, 15, tag=SECRET_TAG, visibility="private"):
        assert (
            http.post(journal + "/v1/entries", headers=ben["headers"], json=body).status_code == 201
        )
    mengine = backend.engine("milestones")
    try:

        def applied(pid: str) -> int:
            with mengine.connect() as c:
                return c.execute(
                    select(func.count())
                    .select_from(milestones_entries)
                    .where(milestones_entries.c.partner_id == pid)
                ).scalar()

        wait_until(
            lambda: applied(ben["id"]) == 15,
            timeout=WAIT,
            what="Ben's private rituals in the milestones view",
        )
        # Ana's 10 shared rituals are the couple's 10th: level 1. Ben's 15 private ones, counted, would make 25.
        for body in rituals(today, 10):
            assert (
                http.post(journal + "/v1/entries", headers=ana["headers"], json=body).status_code
                == 201
            )

        def seen() -> list[dict]:
            r = http.get(milestones + "/v1/milestones?limit=200", headers=ana["headers"])
            assert r.status_code == 200, r.text
            return r.json()["items"]

        def inbox() -> list[dict]:
            r = http.get(notify + "/v1/notifications?limit=200", headers=ana["headers"])
            assert r.status_code == 200, r.text
            return r.json()["items"]

        wait_until(
            lambda: any(m["type"] == "rituals_kept" for m in seen()),
            timeout=WAIT,
            what="rituals_kept",
        )
        wait_until(
            lambda: inbox() and hook_bodies and mail.to(ana_email),
            timeout=WAIT,
            what="the celebration in her inbox, at her webhook and in her email",
        )
        events = [stream.next()]

        wait_until(
            lambda: delivered_and_quiet(outboxes), timeout=WAIT, what="the system to be quiet"
        )
        events += stream.pending()
    finally:
        stream.close()
        mengine.dispose()

    mine = seen()
    assert [(m["type"], m["level"], m["partner_id"]) for m in mine] == [
        ("rituals_kept", 1, None)
    ], "only the shared rituals count: 10, not 25"
    details = [
        http.get(f"{milestones}/v1/milestones/{m['id']}", headers=ana["headers"]).json()
        for m in mine
    ]
    notes = inbox()
    assert len(notes) == 1 and len(hook_bodies) == 1 and len(mail.to(ana_email)) == 1
    assert [e[0] for e in events] == ["event"] and len(events) == 1
    everything_ana_reads = [
        json.dumps(mine),
        json.dumps(details),
        json.dumps(notes),
        *(e[3] for e in events),
        *(b.decode() for b in hook_bodies),
        *(t for m in mail.to(ana_email) for t in _texts(m)),
    ]
    for text in everything_ana_reads:
        assert SECRET_TAG not in text and "therapist" not in text.lower()
    assert all("25" not in n["body"] for n in notes)
