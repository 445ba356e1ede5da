"""The progress report's pure parts (services/milestones/report.py, report_pdf.py): the weekly figures
of day rows, the evidence in words, and the PDF read back. No database."""

from __future__ import annotations

import io
from datetime import date, timedelta
from types import SimpleNamespace

from pypdf import PdfReader

from services.milestones import report, report_pdf

MONDAY = date(2026, 10, 19)
STARTS = [MONDAY + timedelta(weeks=i) for i in range(4)]


def _day(day: date, episodes=0, intensities=(), communication=(), rituals=0, conflicts=0, **kw):
    return SimpleNamespace(
        partner_id="p",
        local_date=day,
        entries=max(1, episodes + len(communication) + rituals + conflicts),
        episodes=episodes,
        detail={
            "intensities": list(intensities),
            "communication": list(communication),
            "connection": [],
            "understanding": [],
            "rituals": ["walk"] * rituals,
        },
        ritual_count=rituals,
        activities=kw.get("activities", 0),
        conflicts=conflicts,
        conflicts_repaired_24h=kw.get("repaired", 0),
        weekly_check_ins=0,
    )


def _text(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)


def test_a_week_without_logging_has_no_value_and_rates_are_per_logged_day():
    rows = [
        _day(MONDAY, episodes=2, intensities=(4, 6)),
        _day(MONDAY + timedelta(days=1)),  # logged, calm: counts as a logged day
        # the second week: nothing logged
        _day(STARTS[2], episodes=1, intensities=(8,), communication=(3, 4)),
        _day(STARTS[3] - timedelta(days=1), conflicts=2, repaired=1),  # the Sunday ends week 3
    ]
    section = report._section(report.YOURS, "Yours", rows, report.PERSONAL, STARTS)
    charts = {c["metric"]: c["points"] for c in section["charts"]}
    assert set(charts) == {"anxious_moments", "intensities", "communication"}  # those with data
    assert [p["value"] for p in charts["anxious_moments"]] == [1.0, None, 0.5, None]
    assert [p["logged_days"] for p in charts["anxious_moments"]] == [2, 0, 2, 0]
    assert [p["value"] for p in charts["intensities"]] == [5.0, None, 8.0, None]
    assert [p["value"] for p in charts["communication"]] == [None, None, 3.5, None]
    couple = report._section(report.TOGETHER, "Together", rows, report.COUPLE, STARTS)
    counts = {c["metric"]: [p["value"] for p in c["points"]] for c in couple["charts"]}
    assert counts["conflicts"] == [0, None, 2, None] and counts["repaired"] == [0, None, 1, None]
    assert report._section(report.YOURS, "Yours", [], report.PERSONAL, STARTS) is None


def test_evidence_in_plain_words():
    words = report.evidence_words(
        "fewer_anxious_episodes",
        {
            "before": {"start": "2026-10-01", "end": "2026-10-31", "episodes_per_week": 5.2},
            "after": {"start": "2026-11-09", "end": "2026-12-06", "episodes_per_week": 1.6},
        },
    )
    assert (
        words == "Anxious moments a week: about 5 in October, about 1.6 in November and December."
    )
    assert report.evidence_words("rituals_kept", {"rituals": 25}).startswith("25 rituals kept")
    assert report.evidence_words("calmer_episodes", {}) == ""  # no periods, no words made up


def _report(values: list[float | None]) -> dict:
    points = [
        {"start": s.isoformat(), "value": v, "logged_days": 0 if v is None else 5}
        for s, v in zip(STARTS, values)
    ]
    chart = {"metric": "anxious_moments", "title": "Anxious moments", "unit": "per logged day"}
    return {
        "weeks": 4,
        "first_day": MONDAY.isoformat(),
        "last_day": (MONDAY + timedelta(days=27)).isoformat(),
        "today": (MONDAY + timedelta(days=27)).isoformat(),
        "timezone": "Europe/Paris",
        "sections": [
            {"whose": "yours", "title": "Your own entries", "charts": [chart | {"points": points}]}
        ],
        "milestones": [],
        "about": list(report.ABOUT),
    }


def test_a_worse_metric_is_a_chart_like_any_other_with_no_headline():
    better, worse = _report([2.0, 1.5, None, 1.0]), _report([1.0, 1.5, None, 2.0])
    a, b = _text(report_pdf.render(better)), _text(report_pdf.render(worse))
    for text in (a, b):
        assert "Anxious moments" in text and "Logged on 15 of 28 days" in text
        assert "1 week with nothing logged" in text and "not logged" in text
        assert "Milestones reached" not in text  # none reached: nothing said of any
    # The same words either way: only the figures differ, and no sentence says which way they went.
    words = lambda t: [w for w in t.split() if not any(c.isdigit() for c in w)]  # noqa: E731
    assert words(a) == words(b)
    for said in ("worse", "decline", "increase", "rise", "fell", "improve"):
        assert said not in b.lower()


def test_the_same_report_gives_the_same_pdf():
    r = _report([2.0, 1.5, None, 1.0])
    assert report_pdf.render(r) == report_pdf.render(r)
