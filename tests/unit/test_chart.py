"""The email's chart of a milestone's change (services/notify/chart.py): pure, no I/O.

Pictures are made from evidence hand-made in the rules' shapes (services/milestones/rules/),
and also taken from the real detectors, so the two cannot drift apart.
"""

from __future__ import annotations

import io
import json
import math
from datetime import date, timedelta

import pytest
from PIL import Image

from services.milestones import rules as det
from services.milestones.rules import REGISTRY, Detection, picture
from services.notify import chart

JAN, MAR = ("2026-01-05", "2026-02-01"), ("2026-03-02", "2026-03-29")


def _side(window: tuple[str, str], **numbers) -> dict:
    return {"start": window[0], "end": window[1], "logged_days": 28, **numbers}


def _rate_evidence(key: str, before: float, after: float) -> dict:
    return {
        "test": "a one-sided test",
        "measure": "per logged day",
        "baseline": _side(JAN, **{key: before}),
        "recent": _side(MAR, **{key: after}),
        "rate_ratio": 0.3,
        "p_value": 0.001,
        "as_of": "2026-03-29",
    }


def _fewer_evidence(before: float, after: float) -> dict:
    return {
        "before": _side(JAN, episodes_per_week=before),
        "after": _side(MAR, episodes_per_week=after),
        "rate_ratio": 0.3,
        "statistic": 4.2,
        "as_of": "2026-03-29",
    }


def _milestone(kind, evidence) -> dict:
    """The event's data as notify reads it: the picture the milestones service makes of the evidence
    (its dates loaded as dates, as the event catalog loads them); never the evidence itself."""
    shown = picture(Detection(kind, 1, "partner", evidence, "")) if kind in REGISTRY else None
    return {"type": kind, **({"picture": shown} if shown else {})}


def _couple_scan_evidence(before: tuple[str, str, float], after: tuple[str, str, float]) -> dict:
    """A couple scan's evidence: the periods before and after the change, the couple's mean in each."""

    def period(start: str, end: str, mean: float) -> dict:
        return {"start": start, "end": end, "mean": mean, "ratings": 24, "weeks": 4}

    return {
        "before": period(*before),
        "after": period(*after),
        "rise": round(after[2] - before[2], 2),
        "common_language_effect": 0.9,
        "statistic": 4.1,
        "threshold": 3.2,
    }


def _numbers(before: float, after: float, first=JAN, last=MAR) -> dict:
    return {
        "before": {"start": first[0], "end": first[1], "value": before},
        "after": {"start": last[0], "end": last[1], "value": after},
    }


# (type, evidence, the chart numbers, the words of the alt text)
HAND_MADE = [
    (
        "fewer_anxious_episodes",
        _fewer_evidence(5.25, 1.75),
        _numbers(5.25, 1.75),
        "Anxious moments a week: about 5 (Jan 5 \u2013 Feb 1), then about 1.8 (Mar 2 \u2013 Mar 29).",
    ),
    (
        "calmer_episodes",
        {
            "baseline": _side(JAN, episodes=20, mean_intensity=7.25),
            "recent": _side(MAR, episodes=12, mean_intensity=3.5),
            "weekly": {
                "baseline_weekly_means": [7.0, 7.5],
                "recent_weekly_means": [3.5],
                "p_value": 0.001,
            },
        },
        _numbers(7.25, 3.5),
        "Intensity of anxious moments, out of 10: about 7.2 (Jan 5 \u2013 Feb 1), "
        "then about 3.5 (Mar 2 \u2013 Mar 29).",
    ),
    (
        "more_independence",
        _rate_evidence("activities_per_week", 0, 2.5),
        _numbers(0.0, 2.5),
        "Activities of your own a week: none (Jan 5 \u2013 Feb 1), then about 2.5 (Mar 2 \u2013 Mar 29).",
    ),
    (
        "better_communication",
        _couple_scan_evidence(
            ("2026-01-05", "2026-01-20", 2.9), ("2026-03-10", "2026-03-29", 4.13)
        ),
        _numbers(2.9, 4.13, ("2026-01-05", "2026-01-20"), ("2026-03-10", "2026-03-29")),
        "Communication rating, out of 5: about 2.9 (Jan 5 \u2013 Jan 20), "
        "then about 4.1 (Mar 10 \u2013 Mar 29).",
    ),
    (
        "stronger_bond",
        _couple_scan_evidence((JAN[0], JAN[1], 2.5), ("2026-02-09", "2026-03-08", 4.12)),
        _numbers(2.5, 4.12, JAN, ("2026-02-09", "2026-03-08")),
        "Check-in rating, out of 5: about 2.5 (Jan 5 \u2013 Feb 1), "
        "then about 4.1 (Feb 9 \u2013 Mar 8).",
    ),
]


@pytest.mark.parametrize("kind, evidence, numbers, words", HAND_MADE, ids=[h[0] for h in HAND_MADE])
def test_each_type_with_two_windows_has_a_chart_of_its_windows_and_figures(
    kind, evidence, numbers, words
):
    data = chart.chart_data(_milestone(kind, evidence))
    assert data == {"type": kind, "unit": REGISTRY[kind].chart.unit, **numbers}
    assert chart.describe(data) == words
    png = chart.render(data)
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size, image.mode) == ("PNG", (480, 240), "RGB")
    colours = {c for _, c in image.getcolors(maxcolors=480 * 240)}
    assert (
        chart.BEFORE_BAR in colours and chart.AFTER_BAR in colours and chart.BACKGROUND in colours
    )


def test_the_bars_stand_for_the_figures():
    data = chart.chart_data(_milestone("fewer_anxious_episodes", _fewer_evidence(6.0, 2.0)))
    image = Image.open(io.BytesIO(chart.render(data)))

    def bar_height(x: int) -> int:
        return sum(
            1 for y in range(240) if image.getpixel((x, y)) in (chart.BEFORE_BAR, chart.AFTER_BAR)
        )

    before, after = bar_height(int(480 * 0.3)), bar_height(int(480 * 0.7))
    assert before == 100 and after == pytest.approx(before / 3, abs=1)


def test_rendering_is_deterministic():
    data = chart.chart_data(_milestone("fewer_anxious_episodes", HAND_MADE[0][1]))
    assert chart.render(data) == chart.render(
        json.loads(json.dumps(data))
    )  # as stored and read back
    other = dict(data, after={**data["after"], "value": 1.5})
    assert chart.render(other) != chart.render(data)


def test_only_the_chart_numbers_are_kept_never_any_text():
    evidence = _fewer_evidence(4.0, 1.0)
    evidence["before"]["note"] = "He did not answer for two hours."
    evidence["note"] = "He did not answer for two hours."
    data = chart.chart_data(
        {
            **_milestone("fewer_anxious_episodes", evidence),
            "evidence": evidence,
            "headline": "Anxious moments: ...",
        }
    )
    assert (
        set(data) == {"type", "unit", "before", "after"}
        and data["unit"] == "anxious moments a week"
    )
    assert set(data["before"]) == set(data["after"]) == {"start", "end", "value"}
    assert "answer" not in json.dumps(data) and "logged_days" not in json.dumps(data)


def test_what_is_kept_is_written_anew_from_the_checked_numbers():
    evidence = _rate_evidence("activities_per_week", 1.0, 3.004)
    evidence["baseline"]["start"] = "20260105"  # another ISO 8601 form: kept in the one form
    assert chart.chart_data(_milestone("more_independence", evidence)) == {
        "type": "more_independence",
        "unit": "activities of your own a week",
        **_numbers(1.0, 3.0),
    }
    # a difference that the kept rounding would erase is no chart (never two equal bars)
    same = _rate_evidence("activities_per_week", 3.001, 3.004)
    assert chart.chart_data(_milestone("more_independence", same)) is None


def test_labels_keep_a_real_difference_from_rounding_away():
    data = chart.chart_data(_milestone("fewer_anxious_episodes", _fewer_evidence(4.2, 3.8)))
    assert chart.describe(data).startswith(
        "Anxious moments a week: about 4.2 (Jan 5 \u2013 Feb 1), then about 3.8 (Mar 2"
    )
    none_now = chart.chart_data(_milestone("fewer_anxious_episodes", _fewer_evidence(3.0, 0)))
    assert "then none (Mar 2" in chart.describe(none_now)


@pytest.mark.parametrize("kind", ["rituals_kept", "check_in_rhythm", "worsening", None])
def test_types_without_two_comparable_windows_have_no_chart(kind):
    evidence = {
        "rituals": 10,
        "threshold": 10,
        "weeks": [{"start": "2026-01-05", "end": "2026-01-11", "check_in": True}],
    }
    assert chart.chart_data(_milestone(kind, evidence)) is None


@pytest.mark.parametrize("before, after", [(1.75, 5.25), (3.0, 3.0)])
def test_numbers_that_do_not_show_the_improvement_make_no_chart(before, after):
    for kind, key in (
        ("fewer_anxious_episodes", "episode_days_per_week"),
        ("more_independence", "activities_per_week"),
    ):
        b, a = (before, after) if kind.startswith("fewer") else (after, before)
        evidence = _fewer_evidence(b, a) if kind.startswith("fewer") else _rate_evidence(key, b, a)
        assert chart.chart_data(_milestone(kind, evidence)) is None
    declining = {"type": "better_communication", **_numbers(4.0, 3.0)}
    with pytest.raises(ValueError, match="improvement"):
        chart.render(declining)
    with pytest.raises(ValueError):
        chart.describe(declining)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda e: e.pop("after"),
        lambda e: e["after"].pop("episodes_per_week"),
        lambda e: e["after"].update(episodes_per_week="1.0"),
        lambda e: e["after"].update(episodes_per_week=math.nan),
        lambda e: e["after"].update(episodes_per_week=True),
        lambda e: e["after"].update(episodes_per_week=-1.0),
        lambda e: e["before"].update(start="January"),
        lambda e: e["before"].update(start="2026-02-02"),  # after its end
        lambda e: e.update(before=e["after"], after=e["before"]),  # windows the wrong way round
        lambda e: e.update(after=None),
    ],
)
def test_malformed_evidence_makes_no_chart(spoil):
    evidence = _fewer_evidence(5.25, 1.75)
    spoil(evidence)
    assert chart.chart_data(_milestone("fewer_anxious_episodes", evidence)) is None


def test_a_rating_above_its_scale_makes_no_chart():
    evidence = {
        "baseline": _side(JAN, mean_intensity=12.0),
        "recent": _side(MAR, mean_intensity=3.0),
    }
    assert chart.chart_data(_milestone("calmer_episodes", evidence)) is None
    assert chart.chart_data({"type": "calmer_episodes"}) is None
    assert chart.chart_data("not a milestone") is None  # type: ignore[arg-type]


# --- the real detectors' evidence ---

START = date(2026, 1, 5)


def _history(days: int, make) -> list[det.DayAggregate]:
    return [det.DayAggregate(START + timedelta(days=i), **make(i)) for i in range(days)]


def _partner_days(i: int) -> dict:
    early = i < 28
    episodes = 1 if (early and i % 4 != 3) or (not early and i % 7 == 0 and i > 50) else 0
    return {
        "episodes": episodes,
        "intensities": (8 if early else 3,) * episodes,
        "activities": 1 if not early and i % 2 == 0 else 0,
        "communication": (2,) if early else (4,),
    }


def _calm_days(i: int) -> dict:
    return {
        "episodes": 1,
        "intensities": ((8 if i % 2 else 7) if i < 28 else (2 if i % 2 else 3),),
        "connection": (min(5, 1 + i // 21),) if i % 7 == 0 else (),
    }


def _check_in_days(i: int) -> dict:
    """A weekly check-in, rated 2-3 for six weeks, then 4-5."""
    low = i < 42
    return (
        {
            "connection": ((2 if i % 14 else 3) if low else (4 if i % 14 else 5),),
            "understanding": (3 if low else 4,),
        }
        if i % 7 == 0
        else {}
    )


REAL = [
    (
        det.fewer_anxious_episodes.fewer_anxious_episodes,
        lambda h, d: det.fewer_anxious_episodes.fewer_anxious_episodes(h, d),
        _partner_days,
        84,
    ),
    (
        det.more_independence.more_independence,
        lambda h, d: det.more_independence.more_independence(h, d),
        _partner_days,
        84,
    ),
    (
        det.better_communication.better_communication,
        lambda h, d: det.better_communication.better_communication(h, h, d),
        _partner_days,
        84,
    ),
    (
        det.calmer_episodes.calmer_episodes,
        lambda h, d: det.calmer_episodes.calmer_episodes(h, d),
        _calm_days,
        112,
    ),
    (
        det.stronger_bond.stronger_bond,
        lambda h, d: det.stronger_bond.stronger_bond(h, h, d),
        _check_in_days,
        85,
    ),
]


@pytest.mark.parametrize("detector, detect, make, days", REAL, ids=[r[0].__name__ for r in REAL])
def test_the_real_detectors_evidence_makes_a_chart(detector, detect, make, days):
    detections = detect(_history(days, make), START + timedelta(days=days - 1))
    assert detections, "the hand-made journal should make this milestone"
    found = detections[0]
    data = chart.chart_data(_milestone(found.type, found.evidence))
    assert data is not None and data["type"] == found.type
    assert (
        data["before"]["start"] == START.isoformat()
        and data["after"]["end"] == (START + timedelta(days=days - 1)).isoformat()
    )
    assert Image.open(io.BytesIO(chart.render(data))).size == (chart.WIDTH, chart.HEIGHT)
