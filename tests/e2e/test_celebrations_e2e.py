"""Entries posted to the running journal become milestones, then one
notification per milestone and recipient in the inboxes, and one email per
recipient in a real SMTP server (at most one a day, more folded into one),
on both backends, with nothing twice and no note in any email."""

from __future__ import annotations

import uuid
from collections import Counter
from email import message_from_bytes, policy

import pytest
import requests
from sqlalchemy import select

from services.milestones.tables import partners
from tests.conftest import NOTE_MARKER
from tests.e2e.conftest import delivered_and_quiet
from tests.e2e.test_milestones_e2e import _partner
from tests.support import improving_history, paris_today, rituals, wait_until

MARKER = f"{NOTE_MARKER}-{uuid.uuid4().hex}"  # in every entry's note; must never reach an email, nor any output
WAIT = 90.0


def _texts(msg) -> list[str]:
    """The headers and every decoded text part of a message."""
    out = [f"{k}: {v}" for k, v in msg.items()]
    out += [part.get_content() for part in msg.walk() if part.get_content_maintype() == "text"]
    return out


def _far_from_midnight() -> str:
    """A time zone whose local midnight is hours away: at most one email a day is
    sent, and a day that ended during the test would let the held ones out."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    def hours_to_midnight(tz: str) -> float:
        now = datetime.now(ZoneInfo(tz))
        return 24 - now.hour - now.minute / 60

    return max(
        ("Europe/Paris", "Asia/Tokyo", "America/New_York"),
        key=lambda tz: min(hours_to_midnight(tz), 24 - hours_to_midnight(tz)),
    )


@pytest.mark.e2e
def test_entries_become_one_notification_per_recipient_and_one_email_each(
    backend, running, mail, outboxes
):
    sink = mail  # every email of the shared `tandem run`: this test reads those to its own partners
    journal, milestones, notify = (running.urls[s] for s in ("journal", "milestones", "notify"))
    http = requests.Session()

    def sample(url: str, name: str, **labels: str) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(http.get(url + "/metrics").text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return None

    def emails_delivered() -> float:
        return sample(notify, "tandem_deliveries_total", channel="email", outcome="delivered") or 0

    # The stack is shared: the emails earlier tests sent are counted already. Once none is being sent or due,
    # what the counter gains is this test's.
    wait_until(
        lambda: delivered_and_quiet(outboxes), timeout=WAIT, what="the earlier tests' emails sent"
    )
    emails_before = emails_delivered()
    tz = _far_from_midnight()
    ana, ben = _partner(http, journal, "ana", tz), _partner(http, journal, "ben", tz)
    emails = {}
    for who in (ana, ben):
        emails[who["id"]] = http.get(journal + "/v1/export", headers=who["headers"]).json()[
            "account"
        ]["email"]
        prefs = {"quiet_hours": None, "share_milestones_with_partner": who is ana}
        r = http.patch(notify + "/v1/preferences", headers=who["headers"], json=prefs)
        assert r.status_code == 200 and r.json()["share_milestones_with_partner"] is (who is ana), (
            r.text
        )
    code = http.post(journal + "/v1/couples", headers=ana["headers"]).json()["invite_code"]
    assert http.post(
        journal + "/v1/couples/join", headers=ben["headers"], json={"invite_code": code}
    ).ok

    # The milestones service decides the audience when a milestone is achieved: it must
    # have heard Ana's preference (notify.preferences.changed) before her entries settle.
    mengine = outboxes["milestones"][0]

    def sharing_known():
        with mengine.connect() as c:
            return c.execute(
                select(partners.c.share_milestones_with_partner).where(partners.c.id == ana["id"])
            ).scalar()

    wait_until(
        sharing_known, timeout=WAIT, what="Ana's sharing preference in the milestones service"
    )

    def post(who, bodies) -> None:
        for body in bodies:
            r = http.post(
                journal + "/v1/entries",
                headers=who["headers"],
                json={**body, "note": f"{MARKER}: only {who['id']} may read this"},
            )
            assert r.status_code == 201, r.text

    today = paris_today()
    post(ana, rituals(today, 10))  # the couple's 10th ritual: rituals_kept, level 1
    post(ana, improving_history(today))  # a month of anxious moments, then two calm ones
    post(ben, improving_history(today))

    def seen(who) -> dict[str, dict]:
        r = http.get(milestones + "/v1/milestones?limit=200", headers=who["headers"])
        assert r.status_code == 200, r.text
        return {m["id"]: m for m in r.json()["items"]}

    def has(ms: dict, type_: str, owner: str | None, level: int = 1) -> bool:
        return any(
            m["type"] == type_ and m["partner_id"] == owner and m["level"] == level
            for m in ms.values()
        )

    wait_until(
        lambda: (
            has(seen(ana), "fewer_anxious_episodes", ana["id"])
            and has(seen(ana), "rituals_kept", None)
            and has(seen(ben), "fewer_anxious_episodes", ben["id"])
        ),
        timeout=WAIT,
        what="the milestones",
    )

    def inbox(who) -> list[dict]:
        r = http.get(notify + "/v1/notifications?limit=200", headers=who["headers"])
        assert r.status_code == 200, r.text
        return r.json()["items"]

    def expected() -> tuple[dict, Counter]:
        """Every milestone, and (milestone, recipient) for each notification it should make: one
        celebration per look, at the highest level of a milestone reached on it (the lower levels stored
        on that look make none); the couple's and Ana's (she shares) to both, Ben's own (he does not) to
        him alone."""
        mine, his = seen(ana), seen(ben)
        assert not any(m["partner_id"] == ben["id"] for m in mine.values()), (
            "Ben does not share his own"
        )
        everything = {**mine, **his}
        top: dict[tuple, dict] = {}
        for m in everything.values():
            key = (
                m["partner_id"],
                m["couple_id"],
                m["type"],
                m["as_of"],
                m["achieved_at"],
            )  # one look
            if key not in top or m["level"] > top[key]["level"]:
                top[key] = m
        return everything, Counter(
            (m["id"], pid)
            for m in top.values()
            for pid in ([ben["id"]] if m["partner_id"] == ben["id"] else [ana["id"], ben["id"]])
        )

    def received() -> Counter:
        return Counter((n["milestone_id"], who["id"]) for who in (ana, ben) for n in inbox(who))

    wait_until(
        lambda: received() == expected()[1],
        timeout=WAIT,
        what="one notification per milestone and recipient",
    )

    def email_status(note: dict) -> list[tuple[str, int]]:
        return [(d["status"], d["attempts"]) for d in note["deliveries"] if d["channel"] == "email"]

    wait_until(
        lambda: all(
            sink.to(emails[who["id"]])
            and any(email_status(n) == [("delivered", 1)] for n in inbox(who))
            for who in (ana, ben)
        ),
        timeout=WAIT,
        what="an email delivered to each partner",
    )

    def quiet() -> bool:
        return delivered_and_quiet(outboxes)

    def check(after: str) -> tuple[Counter, list]:
        """Each notification once, on the right inboxes, and one email per partner
        that is exactly what its delivered email deliveries say."""
        everything, want = expected()
        got = received()
        assert got == want, f"{after}: notifications, per (milestone, recipient)"
        assert set(got.values()) == {1}, f"{after}: nothing twice"
        for who in (ana, ben):
            notes = inbox(who)
            for n in notes:
                m = everything[n["milestone_id"]]
                assert n["body"] == m["headline"]
                if m["partner_id"] == ana["id"] and who is ben:
                    assert n["title"].endswith("shared a milestone with you"), n["title"]
                channels = Counter(d["channel"] for d in n["deliveries"])
                assert channels == {"in_app": 1, "email": 1}, n["deliveries"]
                assert email_status(n) in ([("delivered", 1)], [("pending", 0)]), (
                    f"{after}: an email is sent once or held for tomorrow, never failed: {n['deliveries']}"
                )
            sent = [n for n in notes if email_status(n) == [("delivered", 1)]]
            mails = sink.to(emails[who["id"]])
            assert len(mails) == 1, f"{after}: at most one email a day, more folded into one"
            mail = mails[0]
            assert mail["To"] == emails[who["id"]]
            text = mail.get_body(("plain",)).get_content()
            assert mail["Subject"] == (
                sent[0]["title"] if len(sent) == 1 else f"{len(sent)} things to celebrate"
            )
            for n in sent:
                assert n["body"] in text, f"{after}: the email tells of each celebration it folds"
        ours = sink.raw_to(*emails.values())
        assert len(ours) == 2, f"{after}: one email for each partner, none other"
        message_ids = [message_from_bytes(raw)["Message-ID"] for _, raw in ours]
        assert len(set(message_ids)) == len(message_ids), "no email twice"
        for _rcpt, raw in ours:
            assert MARKER.encode() not in raw
            parsed = message_from_bytes(raw, policy=policy.default)
            assert not any(MARKER in t for t in _texts(parsed)), "no note ever leaves the journal"
        return got, ours

    wait_until(quiet, timeout=WAIT, what="the system to be quiet")
    first, mail_before = check("first look")

    # A new state that proves the pipeline moved past everything before: Ben's 15
    # rituals make the couple's 25th (rituals_kept, level 2) in both inboxes.
    post(ben, rituals(today, 15))
    wait_until(
        lambda: has(seen(ben), "rituals_kept", None, level=2),
        timeout=WAIT,
        what="rituals_kept level 2",
    )
    level_2 = next(
        i for i, m in seen(ben).items() if m["type"] == "rituals_kept" and m["level"] == 2
    )
    wait_until(
        lambda: received()[(level_2, ana["id"])] and received()[(level_2, ben["id"])],
        timeout=WAIT,
        what="the second level in both inboxes",
    )
    wait_until(quiet, timeout=WAIT, what="the system to be quiet again")
    second, mail_after = check("second look")
    assert second - first == Counter({(level_2, ana["id"]): 1, (level_2, ben["id"]): 1}), (
        "only the new milestone"
    )
    assert mail_after == mail_before, "the held celebrations wait for tomorrow"
    series = http.get(
        milestones + "/v1/progress?metric=anxious_episodes&bucket=week", headers=ana["headers"]
    ).json()["points"]
    assert sum(p["value"] or 0 for p in series) == 60

    # What an operator watches, on each service's /metrics, from every process of it (web and workers).
    assert emails_delivered() - emails_before == 2, "this test's two emails, counted once each"
    assert (
        sample(
            notify,
            "tandem_events_consumed_total",
            queue="notify.events",
            type="milestones.milestone.achieved",
        )
        >= 2
    )
    assert (
        sample(
            milestones,
            "tandem_events_consumed_total",
            queue="milestones.events",
            type="journal.entry.recorded",
        )
        >= 60
    )
    assert (
        sample(
            journal,
            "tandem_http_request_seconds_count",
            service="journal",
            method="POST",
            route="/v1/entries",
            status="201",
        )
        >= 60
    )
    for url, queue in ((milestones, "milestones.events.dead"), (notify, "notify.events.dead")):
        assert sample(url, "tandem_dead_letter_depth", queue=queue) == 0, queue
    for url, service in ((journal, "journal"), (milestones, "milestones"), (notify, "notify")):
        wait_until(
            lambda: sample(url, "tandem_outbox_backlog", service=service) == 0,
            timeout=WAIT,
            what=f"the {service} relay to report an empty outbox",
        )
