"""The celebration email on a real SMTP server (aiosmtpd): text, and HTML with a
small chart of each change as an inline image referenced by its Content-ID."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime

from PIL import Image
from sqlalchemy import select

from services.milestones.rules import Detection, picture
from services.notify import app as notify_app
from services.notify.tables import deliveries, notifications
from shared import events
from shared.db import unit_of_work
from tests.integration.test_delivery import _apply, _partner, notify_db, smtp  # noqa: F401 (fixtures)
from tests.support import wait_until

FEWER = (
    "fewer_anxious_episodes",
    "Anxious moments: from about 5 a week in January to about 2 a week now.",
    {
        "test": "change-point scan",
        "before": {
            "start": "2026-01-05",
            "end": "2026-02-01",
            "logged_days": 28,
            "episodes_per_week": 5.25,
        },
        "after": {
            "start": "2026-03-02",
            "end": "2026-03-29",
            "logged_days": 28,
            "episodes_per_week": 1.75,
        },
        "rate_ratio": 0.333,
        "statistic": 4.2,
    },
)
CALMER = (
    "calmer_episodes",
    "Anxious moments feel gentler: average intensity from 7.2 out of 10 in January to 3.5 now.",
    {
        "baseline": {
            "start": "2026-01-05",
            "end": "2026-02-01",
            "episodes": 20,
            "mean_intensity": 7.25,
        },
        "recent": {
            "start": "2026-03-02",
            "end": "2026-03-29",
            "episodes": 12,
            "mean_intensity": 3.5,
        },
        "common_language_effect": 0.91,
        "p_value": 0.0001,
    },
)
RITUALS = ("rituals_kept", "You have kept 10 rituals together.", {"rituals": 10, "threshold": 10})


def _achieved(sessions, pid: str, milestone: tuple[str, str, dict]) -> str:
    kind, headline, evidence = milestone
    # the picture the milestones service makes of the evidence: what the chart is drawn from
    shown = picture(Detection(kind, 1, "partner", evidence, headline))
    ev = events.make_event(
        "milestones.milestone.achieved",
        source="/milestones",
        subject=pid,
        data={
            "id": str(uuid.uuid4()),
            "type": kind,
            "level": 1,
            "couple_id": None,
            "partner_id": pid,
            "achieved_at": datetime.now(UTC),
            "headline": headline,
            "evidence": evidence,
            "audience": [pid],
            **({"picture": shown} if shown else {}),
        },
    )
    _apply(sessions, ev)
    return ev["data"]["id"]


def _emails_delivered(sessions, n: int) -> bool:
    with unit_of_work(sessions) as s:
        rows = (
            s.execute(select(deliveries.c.status).where(deliveries.c.channel == "email"))
            .scalars()
            .all()
        )
    return len(rows) == n and set(rows) == {"delivered"}


def _send_all(sessions, smtp, n: int):
    """Run the delivery worker until the n email deliveries are done; the one message the server got."""
    deliverer = notify_app.make_deliverer()
    wait_until(
        lambda: deliverer.tick() is not None and _emails_delivered(sessions, n), what="the email"
    )
    deliverer.tick()
    assert len(smtp.messages) == 1
    return smtp.messages[0]


def _structure(msg) -> tuple[str, str, list]:
    """(text, html, [image parts]) of a multipart/alternative text + multipart/related HTML message."""
    assert msg.get_content_type() == "multipart/alternative"
    plain, related = msg.get_payload()
    assert plain.get_content_type() == "text/plain"
    if related.get_content_type() == "text/html":
        return (
            plain.get_payload(decode=True).decode(),
            related.get_payload(decode=True).decode(),
            [],
        )
    assert related.get_content_type() == "multipart/related"
    html, *images = related.get_payload()
    assert html.get_content_type() == "text/html"
    return plain.get_payload(decode=True).decode(), html.get_payload(decode=True).decode(), images


def _cid_and_alt(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<img src="cid:([^"]+)" alt="([^"]+)"', html)


def _decoded(image) -> Image.Image:
    assert image.get_content_type() == "image/png" and image.get_content_disposition() == "inline"
    picture = Image.open(io.BytesIO(image.get_payload(decode=True)))
    picture.load()
    return picture


def test_the_email_shows_a_chart_of_the_change_inline(notify_db, smtp):
    pid = _partner(notify_db)
    _achieved(notify_db, pid, FEWER)
    with unit_of_work(notify_db) as s:  # the notification keeps only the chart's numbers
        stored = s.execute(select(notifications.c.chart)).scalar_one()
    assert stored == {
        "type": "fewer_anxious_episodes",
        "unit": "anxious moments a week",
        "before": {"start": "2026-01-05", "end": "2026-02-01", "value": 5.25},
        "after": {"start": "2026-03-02", "end": "2026-03-29", "value": 1.75},
    }

    msg = _send_all(notify_db, smtp, 1)
    text, html, images = _structure(msg)
    assert FEWER[1] in text and "cid:" not in text
    assert len(images) == 1
    ((cid, alt),) = _cid_and_alt(html)
    assert images[0]["Content-ID"] == f"<{cid}>"
    assert (
        alt
        == "Anxious moments a week: about 5 (Jan 5 \u2013 Feb 1), then about 1.8 (Mar 2 \u2013 Mar 29)."
    )
    picture = _decoded(images[0])
    assert (picture.format, picture.size) == ("PNG", (480, 240))


def test_a_folded_email_has_a_chart_for_each_milestone_that_has_one_in_order(notify_db, smtp):
    pid = _partner(notify_db)
    for milestone in (FEWER, RITUALS, CALMER):  # all due at once: one email folds them (one a day)
        _achieved(notify_db, pid, milestone)
    msg = _send_all(notify_db, smtp, 3)
    assert msg["Subject"] == "3 things to celebrate"
    text, html, images = _structure(msg)
    assert all(m[1] in text and m[1] in html for m in (FEWER, RITUALS, CALMER))
    referenced = _cid_and_alt(html)
    assert [f"<{cid}>" for cid, _ in referenced] == [i["Content-ID"] for i in images]
    assert len(set(i["Content-ID"] for i in images)) == 2
    assert referenced[0][1].startswith("Anxious moments a week") and referenced[1][1].startswith(
        "Intensity of"
    )
    assert all(_decoded(i).size == (480, 240) for i in images)


def test_a_milestone_without_two_windows_sends_text_and_html_only(notify_db, smtp):
    pid = _partner(notify_db)
    _achieved(notify_db, pid, RITUALS)
    spoiled = (
        FEWER[0],
        FEWER[1],
        {**FEWER[2], "after": {**FEWER[2]["after"], "episodes_per_week": 6.0}},
    )
    other = _partner(notify_db)
    _achieved(notify_db, other, spoiled)  # numbers that would show a decline: no chart, ever
    with unit_of_work(notify_db) as s:
        assert s.execute(select(notifications.c.chart)).scalars().all() == [None, None]
    deliverer = notify_app.make_deliverer()
    wait_until(
        lambda: deliverer.tick() is not None and _emails_delivered(notify_db, 2), what="the emails"
    )
    assert len(smtp.messages) == 2
    for msg in smtp.messages:
        _, html, images = _structure(msg)
        assert images == [] and "<img" not in html
