"""What a native push says, as FCM's HTTP v1 API takes it (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notify import fcm, pacing
from services.notify.celebrate import subject_for

TOKEN = "abc:APA91b" + "x" * 140


def test_each_platform_gets_its_own_block_and_nothing_else_rides_along():
    android = fcm.message(TOKEN, "fcm", "Something to celebrate", "You kept 10 rituals.")["message"]
    ios = fcm.message(TOKEN, "apns", "Something to celebrate", "You kept 10 rituals.")["message"]
    assert android == {
        "token": TOKEN,
        "notification": {"title": "Something to celebrate", "body": "You kept 10 rituals."},
        "data": {"kind": "celebration"},
        "android": {"priority": "normal"},
    }
    assert (
        ios["apns"]
        == {
            "headers": {"apns-priority": "5", "apns-push-type": "alert"},
            "payload": {"aps": {"sound": "default"}},
        }
        and "android" not in ios
    )


def test_a_shared_milestones_push_title_names_no_one():
    """A lock screen shows the title: the email's Subject, never the partner's name."""
    title = subject_for("Sam shared a milestone with you")
    assert (
        fcm.message(TOKEN, "fcm", title, "b")["message"]["notification"]["title"]
        == "Your partner shared a milestone with you"
    )


def test_a_long_folded_day_is_cut_at_a_line_and_fits_fcms_4_kib():
    items = [
        pacing.PendingItem(
            f"n{i}",
            "Something to celebrate",
            f"Celebration number {i}: " + "é" * 60,
            datetime(2026, 12, 1, tzinfo=UTC),
        )
        for i in range(60)
    ]
    folded = pacing.fold(items)
    body = fcm.fitted(folded.body)
    assert len(body) <= fcm.BODY_LIMIT and body.endswith("\n…")
    assert folded.body.startswith(body[:-2]) and body[:-2].endswith("é")  # whole lines kept
    assert len(fcm.encoded(fcm.message(TOKEN, "apns", folded.title, "😀" * 5000))) <= 4096
    assert fcm.fitted("short") == "short"
    assert fcm.fitted("x" * 5000) == "x" * (fcm.BODY_LIMIT - 2) + "…"  # no line to cut at
