"""The live inbox (GET /v1/notifications/stream) behind gunicorn, on both
backends: each connected client of a partner gets each new notification once,
another partner's client gets only theirs, and a resume sends no duplicate."""

from __future__ import annotations

import json
import queue
import socket
import threading
import uuid
from datetime import datetime, time, timedelta, timezone

import pytest
import requests

from tests.support import wait_until

PARIS = timezone(timedelta(hours=1))
WAIT = 60.0  # the longest any single line may take to come


def _partner(http: requests.Session, base: str, name: str) -> dict:
    email = f"{name}-{uuid.uuid4().hex[:6]}@example.com"
    r = http.post(
        base + "/v1/accounts",
        json={
            "email": email,
            "password": "correct horse battery",
            "display_name": name,
            "timezone": "Europe/Paris",
        },
    )
    assert r.status_code == 201, r.text
    token = http.post(
        base + "/v1/tokens", json={"email": email, "password": "correct horse battery"}
    ).json()
    return {"id": r.json()["id"], "headers": {"Authorization": f"Bearer {token['access_token']}"}}


class StreamClient:
    """One SSE connection read line by line in a thread; items go to a queue:
    ("live",) once caught up, ("event", id, type, data) per event."""

    def __init__(self, url: str, headers: dict, response: requests.Response | None = None):
        """Opens `url`, or reads `response` (a stream already answered 200)."""
        self.items: queue.Queue = queue.Queue()
        self.response = response or requests.get(
            url, headers=headers, stream=True, timeout=(5, WAIT)
        )
        assert self.response.status_code == 200, self.response.text
        assert self.response.headers["Content-Type"].startswith("text/event-stream")
        self.sock = self.response.raw.connection.sock
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line == ": live":
                    self.items.put(("live",))
                elif line.startswith(":"):
                    continue
                elif line == "":
                    if "data" in fields:
                        self.items.put(
                            ("event", fields.get("id"), fields.get("event"), fields["data"])
                        )
                    fields = {}
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
        except Exception as e:  # closed by close(), or the server went away
            self.items.put(("closed", type(e).__name__))
        else:
            self.items.put(("closed", "eof"))

    def next(self, timeout: float = WAIT):
        try:
            return self.items.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line from the stream within {timeout}s") from None

    def until_live(self) -> list:
        """Everything before ": live" (what a resume sends)."""
        before = []
        while (item := self.next())[0] != "live":
            assert item[0] != "closed", item
            before.append(item)
        return before

    def pending(self) -> list:
        out = []
        while True:
            try:
                out.append(self.items.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.response.close()
        self.thread.join(timeout=10)


@pytest.mark.e2e
def test_every_client_of_a_partner_gets_each_new_notification_once(running):
    journal, notify, milestones = (
        running.urls["journal"],
        running.urls["notify"],
        running.urls["milestones"],
    )
    http = requests.Session()
    ana, ben = _partner(http, journal, "ana"), _partner(http, journal, "ben")
    code = http.post(journal + "/v1/couples", headers=ana["headers"]).json()["invite_code"]
    assert http.post(
        journal + "/v1/couples/join", headers=ben["headers"], json={"invite_code": code}
    ).ok

    stream = notify + "/v1/notifications/stream"
    clients = [
        StreamClient(stream, ana["headers"]),
        StreamClient(stream, ana["headers"]),
        StreamClient(stream, ben["headers"]),
    ]
    try:
        for c in clients:
            assert c.until_live() == [], "nothing old on a fresh connection"

        today = datetime.now(PARIS).date()

        def rituals(numbers: range) -> None:
            for i in numbers:
                who = ana if i % 2 == 0 else ben
                day = today - timedelta(days=i // 2 + 1)
                r = http.post(
                    journal + "/v1/entries",
                    headers=who["headers"],
                    json={
                        "id": str(uuid.uuid4()),
                        "kind": "ritual",
                        "ritual": "good_morning_text",
                        "visibility": "shared",
                        "occurred_at": datetime.combine(day, time(7 + i % 2, 0), PARIS).isoformat(),
                    },
                )
                assert r.status_code == 201, r.text

        rituals(range(10))  # the couple's 10th ritual is a rituals_kept milestone for both

        def inbox_of(p) -> list[dict]:
            return http.get(notify + "/v1/notifications", headers=p["headers"]).json()["items"]

        wait_until(
            lambda: inbox_of(ana) and inbox_of(ben),
            timeout=90,
            what="the milestone in both inboxes",
        )
        got = [c.next() for c in clients]
        for item in got:
            assert item[0] == "event" and item[2] == "notification", item
        notes = [json.loads(item[3]) for item in got]
        for item, note in zip(got, notes):
            assert item[1] == note["id"], "the event id is the notification id"

        kept = [
            m
            for m in http.get(milestones + "/v1/milestones", headers=ana["headers"]).json()["items"]
            if m["type"] == "rituals_kept"
        ]
        assert len(kept) == 1, kept
        inbox = {"ana": inbox_of(ana), "ben": inbox_of(ben)}
        assert [n["milestone_id"] for n in inbox["ana"]] == [kept[0]["id"]]
        assert [n["milestone_id"] for n in inbox["ben"]] == [kept[0]["id"]]

        # Both of Ana's clients: her notification, as her inbox shows it.
        for note in notes[:2]:
            assert note["id"] == inbox["ana"][0]["id"]
            assert note["milestone_id"] == kept[0]["id"]
            assert note["title"] == inbox["ana"][0]["title"] and note["title"]
            assert note["body"] == inbox["ana"][0]["body"]
        # Ben's client: his own notification of the same milestone, never Ana's.
        assert notes[2]["id"] == inbox["ben"][0]["id"] != inbox["ana"][0]["id"]
        assert (
            notes[2]["milestone_id"] == kept[0]["id"]
            and notes[2]["title"] == inbox["ben"][0]["title"]
        )

        # Resuming after what was received sends nothing again, by header or by query.
        again = StreamClient(stream, {**ana["headers"], "Last-Event-ID": notes[0]["id"]})
        by_query = StreamClient(f"{stream}?since={notes[0]['id']}", ana["headers"])
        try:
            assert again.until_live() == [], "no duplicate after Last-Event-ID"
            assert by_query.until_live() == [], "no duplicate after ?since="
        finally:
            again.close()
            by_query.close()
        # And nothing more reached the first clients meanwhile.
        for c in clients:
            assert [i for i in c.pending() if i[0] == "event"] == [], "each notification once"

        # One of Ana's clients drops; the 25th ritual makes the next level while it is away.
        clients[1].close()
        rituals(range(10, 25))
        wait_until(
            lambda: len(inbox_of(ana)) == 2, timeout=90, what="the second milestone in Ana's inbox"
        )
        second = inbox_of(ana)[0]
        live = clients[0].next()
        assert live[0] == "event" and live[1] == second["id"] != notes[0]["id"], live
        assert json.loads(live[3])["title"] == second["title"]
        # Back with Last-Event-ID: what it missed, once, then live.
        back = StreamClient(stream, {**ana["headers"], "Last-Event-ID": notes[0]["id"]})
        try:
            missed = back.until_live()
            assert [(i[0], i[1], i[2]) for i in missed] == [("event", second["id"], "notification")]
            assert json.loads(missed[0][3]) == json.loads(live[3])
        finally:
            back.close()
    finally:
        for c in clients:
            c.close()

    # The server lets go of the closed streams (its threads are free for others).
    wait_until(
        lambda: http.get(notify + "/healthz", timeout=5).ok, timeout=10, what="notify to answer"
    )


@pytest.mark.e2e
def test_the_stream_needs_a_token(running):
    r = requests.get(running.urls["notify"] + "/v1/notifications/stream", timeout=10)
    assert r.status_code == 401
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["status"] == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    bad = requests.get(
        running.urls["notify"] + "/v1/notifications/stream",
        timeout=10,
        headers={"Authorization": "Bearer nope"},
    )
    assert bad.status_code == 401 and bad.json()["status"] == 401
