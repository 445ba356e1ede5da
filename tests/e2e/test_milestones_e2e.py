"""Ninety days of a couple's journal, posted to the running journal, become the
expected milestones, each once and visible to the right partners."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone

import pytest
import requests

from tests.support import wait_until

PARIS = timezone(timedelta(hours=1))


def _at(day: date, hour: int) -> str:
    return datetime.combine(day, time(hour, 0), PARIS).isoformat()


def _partner(http: requests.Session, base: str, name: str, tz: str = "Europe/Paris") -> dict:
    email = f"{name}-{uuid.uuid4().hex[:6]}@example.com"
    r = http.post(
        base + "/v1/accounts",
        json={
            "email": email,
            "password": "correct horse battery",
            "display_name": name,
            "timezone": tz,
        },
    )
    assert r.status_code == 201, r.text
    token = http.post(
        base + "/v1/tokens", json={"email": email, "password": "correct horse battery"}
    ).json()
    return {"id": r.json()["id"], "headers": {"Authorization": f"Bearer {token['access_token']}"}}


@pytest.mark.e2e
def test_ninety_days_of_entries_become_milestones_for_the_right_partners(running):
    journal, milestones = running.urls["journal"], running.urls["milestones"]
    http = requests.Session()
    ana, ben = _partner(http, journal, "ana"), _partner(http, journal, "ben")
    code = http.post(journal + "/v1/couples", headers=ana["headers"]).json()["invite_code"]
    assert http.post(
        journal + "/v1/couples/join", headers=ben["headers"], json={"invite_code": code}
    ).ok

    today = datetime.now(PARIS).date()
    start = today - timedelta(days=90)
    posted = 0
    for i in range(90):
        day = start + timedelta(days=i)
        bodies = [
            (ana, {"kind": "daily_reflection", "occurred_at": _at(day, 21), "mood": 6}),
            (ben, {"kind": "daily_reflection", "occurred_at": _at(day, 22), "mood": 7}),
        ]
        if i < 30:  # Ana: two anxious moments a day for a month, then none for two months
            bodies += [
                (ana, {"kind": "anxious_episode", "occurred_at": _at(day, h), "intensity": 6})
                for h in (8, 15)
            ]
        if i % 7 == 0:  # a good-morning text, now and then, from each
            shared = {
                "kind": "ritual",
                "occurred_at": _at(day, 7),
                "ritual": "good_morning_text",
                "visibility": "shared",
            }
            bodies += [(ana, shared), (ben, shared)]
        for who, body in bodies:
            r = http.post(
                journal + "/v1/entries",
                headers=who["headers"],
                json={"id": str(uuid.uuid4()), **body},
            )
            assert r.status_code == 201, r.text
            posted += 1

    def seen(who) -> list[dict]:
        return http.get(milestones + "/v1/milestones?limit=200", headers=who["headers"]).json()[
            "items"
        ]

    wait_until(
        lambda: (
            any(m["type"] == "fewer_anxious_episodes" for m in seen(ana))
            and any(m["type"] == "rituals_kept" for m in seen(ana))
        ),
        timeout=120,
        what=f"Ana's milestones from {posted} entries",
    )
    mine, his = seen(ana), seen(ben)
    assert all(n == 1 for n in Counter((m["type"], m["level"]) for m in mine).values()), (
        "nothing twice"
    )
    fewer = [m for m in mine if m["type"] == "fewer_anxious_episodes"]
    assert all(m["partner_id"] == ana["id"] for m in fewer)
    assert not any(m["type"] == "fewer_anxious_episodes" for m in his), "Ana's own progress is hers"
    assert {m["id"] for m in mine if m["type"] == "rituals_kept"} == {
        m["id"] for m in his if m["type"] == "rituals_kept"
    }, "the couple's milestones are both partners'"
    one = http.get(f"{milestones}/v1/milestones/{fewer[0]['id']}", headers=ana["headers"]).json()
    assert one["evidence"] and one["headline"]
    series = http.get(
        milestones + "/v1/progress?metric=anxious_episodes&bucket=week", headers=ana["headers"]
    ).json()["points"]
    assert sum(p["value"] or 0 for p in series) == 60
