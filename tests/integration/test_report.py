"""The therapist's progress report (GET /v1/report): its numbers against a made-up history's own
aggregates, its PDF read back, and whose data it may hold, on the embedded backend and on PostgreSQL
with RabbitMQ."""

from __future__ import annotations

import io
import random
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from tests.conftest import make_couple, sign_up
from tests.support import Pipeline, milestones_client, post_all, preference_event, publish_events
from tests.support import wait_until as _wait_until

# The report's clock: a Wednesday in December, 8 weeks back reach October 19, so the window holds
# both daylight-saving changes (Paris on October 25, New York on November 1).
NOW = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)
WEEKS = 8
FIRST = date(2026, 10, 19)
STARTS = [FIRST + timedelta(weeks=i) for i in range(WEEKS)]
SILENT_WEEK = date(2026, 11, 9)  # Ana logs nothing that week
JSON = {"Accept": "application/json"}


def wait_until(predicate, what: str):
    return _wait_until(predicate, timeout=60, what=what)


@pytest.fixture
def milestones(backend, monkeypatch):
    from services.milestones import report

    monkeypatch.setattr(report, "utcnow", lambda: NOW)
    return milestones_client()


def _local(day: date, hour: int, tz: str) -> str:
    return datetime.combine(day, time(hour, 10), ZoneInfo(tz)).isoformat()


def _history(seed: int, tz: str, silent: date | None) -> list[dict]:
    """Some weeks of every kind of entry, private and shared, from a week before the report's first."""
    rng = random.Random(seed)
    out = []

    def add(kind, day, hour, visibility="private", **measures):
        out.append(
            {
                "id": str(uuid.uuid4()),
                "kind": kind,
                "occurred_at": _local(day, hour, tz),
                "visibility": visibility,
                **measures,
            }
        )

    day = FIRST - timedelta(days=7)
    while day <= date(2026, 12, 6):  # nothing in the last week either: never in the future
        if (
            silent is None or not silent <= day < silent + timedelta(days=7)
        ) and rng.random() < 0.7:
            for hour in range(rng.randint(0, 2)):
                add("anxious_episode", day, 8 + 5 * hour, intensity=rng.randint(2, 9))
            add(
                "daily_reflection",
                day,
                21,
                rng.choice(["shared", "private"]),
                communication=rng.randint(1, 5),
            )
            if rng.random() < 0.4:
                add("ritual", day, 7, "shared" if rng.random() < 0.7 else "private", ritual="walk")
            if rng.random() < 0.3:
                add("independence_activity", day, 17, activity="swim")
            if day.weekday() == 6:
                add(
                    "check_in",
                    day,
                    19,
                    "shared" if rng.random() < 0.8 else "private",
                    connection=rng.randint(1, 5),
                    understanding=rng.randint(1, 5),
                )
            if rng.random() < 0.2:
                occurred = datetime.fromisoformat(_local(day, 12, tz))
                repaired = rng.choice([None, timedelta(hours=3), timedelta(hours=30)])
                extra = {"repaired_at": (occurred + repaired).isoformat()} if repaired else {}
                add("conflict", day, 12, "shared", intensity=rng.randint(1, 8), **extra)
        day += timedelta(days=1)
    return out


# Late on the Sunday of each daylight-saving change, in UTC: a day a wrong offset would put in the next week.
DST_ANA = {"kind": "anxious_episode", "occurred_at": "2026-10-25T22:30:00+00:00", "intensity": 4}
DST_BEN = {"kind": "anxious_episode", "occurred_at": "2026-11-02T04:30:00+00:00", "intensity": 3}


# --- the aggregates, computed here from the entries themselves ---


def _days(entries: list[dict], tz: str) -> dict[date, list[dict]]:
    out = defaultdict(list)
    for e in entries:
        out[datetime.fromisoformat(e["occurred_at"]).astimezone(ZoneInfo(tz)).date()].append(e)
    return out


def _mean(xs):
    return round(sum(xs) / len(xs), 2) if xs else None


def _repaired(e) -> bool:
    if "repaired_at" not in e:
        return False
    gap = datetime.fromisoformat(e["repaired_at"]) - datetime.fromisoformat(e["occurred_at"])
    return gap <= timedelta(hours=24)


def _of(kind, entries, key=None):
    return [e[key] if key else e for e in entries if e["kind"] == kind and (not key or key in e)]


FIGURES = {
    "anxious_moments": lambda es, n: round(len(_of("anxious_episode", es)) / n, 2),
    "intensities": lambda es, n: _mean(_of("anxious_episode", es, "intensity")),
    "communication": lambda es, n: _mean(_of("daily_reflection", es, "communication")),
    "connection": lambda es, n: _mean(_of("check_in", es, "connection")),
    "understanding": lambda es, n: _mean(_of("check_in", es, "understanding")),
    "rituals": lambda es, n: len(_of("ritual", es)),
    "independence": lambda es, n: len(_of("independence_activity", es)),
    "conflicts": lambda es, n: len(_of("conflict", es)),
    "repaired": lambda es, n: sum(map(_repaired, _of("conflict", es))),
}


def expected(by_partner: list[tuple[list[dict], str]], metrics: tuple[str, ...]) -> dict:
    """{metric: [(week start, value, logged days)]} of the entries given (each partner's in their own zone)."""
    weeks = {s: ([], set()) for s in STARTS}
    for entries, tz in by_partner:
        for day, es in _days(entries, tz).items():
            start = day - timedelta(days=day.weekday())
            if start in weeks:
                weeks[start][0].extend(es)
                weeks[start][1].add(day)
    out = {}
    for m in metrics:
        series = []
        for start, (es, logged) in weeks.items():
            value = FIGURES[m](es, len(logged)) if logged else None
            series.append((start.isoformat(), value, len(logged)))
        if any(v for _, v, _ in series) or (m == "repaired" and out.get("conflicts")):
            out[m] = series
    return out


def _series(section: dict) -> dict:
    return {
        c["metric"]: [(p["start"], p["value"], p["logged_days"]) for p in c["points"]]
        for c in section["charts"]
    }


def _sections(body: dict) -> dict:
    return {s["whose"]: s for s in body["sections"]}


PERSONAL = ("anxious_moments", "intensities", "communication", "independence")
COUPLE = ("communication", "connection", "understanding", "rituals", "conflicts", "repaired")


def _visible(entries):
    return [e for e in entries if e.get("visibility") == "shared"]


@pytest.fixture
def couple_history(backend, journal, mdb):
    """Ana (Paris) and Ben (New York) in a couple, with some weeks of every kind of entry, through the
    journal and the events; Ben shares his milestones."""
    from services.milestones.tables import entries

    ana, ben, couple_id = make_couple(journal)
    ana_entries = _history(1, "Europe/Paris", SILENT_WEEK) + [{"id": str(uuid.uuid4()), **DST_ANA}]
    ben_entries = _history(2, "America/New_York", None) + [
        {"id": str(uuid.uuid4()), **DST_BEN, "visibility": "shared"}
    ]
    total = len(ana_entries) + len(ben_entries)
    with Pipeline():
        post_all(journal, ana["headers"], ana_entries)
        post_all(journal, ben["headers"], ben_entries)
        publish_events(preference_event(ben["id"], True))

        def projected():
            with mdb.connect() as db:
                return db.execute(select(func.count()).select_from(entries)).scalar() >= total

        wait_until(projected, what="every entry in the milestones service")
        wait_until(
            lambda: _shares(mdb, ben["id"]), what="Ben's preference in the milestones service"
        )
    return {
        "ana": ana,
        "ben": ben,
        "couple_id": couple_id,
        "ana_entries": ana_entries,
        "ben_entries": ben_entries,
    }


def _shares(mdb, partner_id: str) -> bool:
    from services.milestones.tables import partners

    with mdb.connect() as db:
        return bool(
            db.execute(
                select(partners.c.share_milestones_with_partner).where(partners.c.id == partner_id)
            ).scalar()
        )


def _report(milestones, who, weeks=WEEKS, **headers) -> dict:
    r = milestones.get(f"/v1/report?weeks={weeks}", headers={**who["headers"], **JSON, **headers})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    return r.get_json()


def test_the_json_equals_the_aggregates_of_the_history(couple_history, milestones):
    h = couple_history
    paris, new_york = "Europe/Paris", "America/New_York"
    body = _report(milestones, h["ana"])
    assert body["weeks"] == WEEKS and body["first_day"] == FIRST.isoformat()
    assert body["last_day"] == "2026-12-13" and body["timezone"] == paris
    sections = _sections(body)
    assert list(sections) == ["yours", "together", "partner"]

    mine = _series(sections["yours"])
    assert mine == expected([(h["ana_entries"], paris)], PERSONAL)
    assert set(mine) == set(PERSONAL)  # every personal metric has data
    # The week she logged nothing has no value (not zero) and no logged day, in every chart.
    silent = SILENT_WEEK.isoformat()
    assert all(p == (silent, None, 0) for s in mine.values() for p in s if p[0] == silent)
    # The moment late on the Sunday Paris's clocks went back counts in that week, not the next.
    week_of_change = dict((p[0], p) for p in mine["anxious_moments"])["2026-10-19"]
    assert week_of_change[2] >= 1

    shared = [(_visible(h["ana_entries"]), paris), (_visible(h["ben_entries"]), new_york)]
    together = _series(sections["together"])
    assert together == expected(shared, COUPLE)
    assert set(together) == set(COUPLE)

    # Ben's own, as he shared it (his private entries never), in his own zone.
    ben = _series(sections["partner"])
    assert ben == expected([(_visible(h["ben_entries"]), new_york)], PERSONAL)
    ben_all = expected([(h["ben_entries"], new_york)], PERSONAL)
    assert ben != ben_all  # the control: his private entries would have changed the figures

    # Ben's report, in his own zone: his own series, the couple's; Ana does not share, so not hers.
    ben_body = _report(milestones, h["ben"])
    assert ben_body["timezone"] == new_york
    assert [s["whose"] for s in ben_body["sections"]] == ["yours", "together"]
    assert _series(_sections(ben_body)["yours"]) == ben_all
    assert _series(_sections(ben_body)["together"]) == together
    assert not any(m["whose"] == "partner" for m in ben_body["milestones"])
    # ...and the late Sunday of New York's change is in its own week too.
    assert (
        dict((p[0], p) for p in _series(_sections(ben_body)["yours"])["anxious_moments"])[
            "2026-10-26"
        ]
        == ben_all["anxious_moments"][1]
    )


def test_the_milestones_are_those_the_caller_sees_in_the_weeks(couple_history, milestones):
    h = couple_history
    body = _report(milestones, h["ana"], weeks=52)
    seen = milestones.get("/v1/milestones?limit=200", headers=h["ana"]["headers"]).get_json()
    first = date.fromisoformat(body["first_day"])
    # Levels of one milestone reached on one look: one line, at the highest.
    highest = {}
    for m in seen["items"]:
        if m["as_of"] >= str(first):
            key = (m["type"], m["partner_id"] or m["couple_id"], m["as_of"])
            highest[key] = max(highest.get(key, 0), m["level"])
    want = sorted((as_of, kind, level) for (kind, _, as_of), level in highest.items())
    assert sorted((m["reached_on"], m["type"], m["level"]) for m in body["milestones"]) == want
    assert any(m["type"] == "rituals_kept" for m in body["milestones"]), "the history keeps rituals"
    for m in body["milestones"]:
        assert m["evidence"] and m["name"]


def test_the_pdf_holds_the_headings_milestones_and_coverage(couple_history, milestones):
    from pypdf import PdfReader

    h = couple_history
    r = milestones.get(f"/v1/report?weeks={WEEKS}", headers=h["ana"]["headers"])  # PDF: the default
    assert r.status_code == 200 and r.mimetype == "application/pdf"
    assert r.data.startswith(b"%PDF-")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(r.data)).pages)
    body = _report(milestones, h["ana"])
    for heading in (
        "Tandem progress report",
        "Your own entries",
        "Together: what both of you shared",
        "Your partner's own, as they shared it",
        "Anxious moments",
        "Conflicts repaired within a day",
        "About these figures",
        "self-reported",
        "not a diagnosis",
    ):
        assert heading in text, heading
    for m in body["milestones"]:
        assert m["name"] in text
    # Coverage beside every chart: the days logged of the whole span, and the silent week counted.
    charts = [c for s in body["sections"] for c in s["charts"]]
    begun = (NOW.date() - FIRST).days + 1  # the days of the weeks so far: the last one is under way
    for c in charts:
        logged = sum(p["logged_days"] for p in c["points"])
        assert f"Logged on {logged} of {begun} days" in text, c["metric"]
    assert (
        "1 week with nothing logged" in text
    )  # the week Ana logged nothing (the last is Ben's too)
    assert text.count("Logged on") == len(charts)
    # Asked for by name, the same PDF.
    assert (
        milestones.get(
            f"/v1/report?weeks={WEEKS}",
            headers={**h["ana"]["headers"], "Accept": "application/pdf"},
        ).data
        == r.data
    )


def test_a_partner_who_does_not_share_is_absent_from_the_report(couple_history, milestones, mdb):
    h = couple_history
    with Pipeline():
        publish_events(preference_event(h["ben"]["id"], False))
        wait_until(lambda: not _shares(mdb, h["ben"]["id"]), what="Ben to stop sharing")
    body = _report(milestones, h["ana"])
    assert [s["whose"] for s in body["sections"]] == ["yours", "together"]
    assert not any(m["whose"] == "partner" for m in body["milestones"])
    from pypdf import PdfReader

    pdf = milestones.get(f"/v1/report?weeks={WEEKS}", headers=h["ana"]["headers"]).data
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "Your partner's own" not in text and "your partner's" not in text


def test_another_couples_token_gets_nothing_of_theirs(couple_history, journal, milestones):
    from pypdf import PdfReader

    assert _report(milestones, couple_history["ana"])[
        "milestones"
    ]  # the control: there is something
    cleo, dan, _ = make_couple(journal)  # another couple, with nothing logged
    for stranger in (cleo, dan):
        body = _report(milestones, stranger)
        assert body["sections"] == [] and body["milestones"] == []
        pdf = milestones.get("/v1/report", headers=stranger["headers"])
        assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
        text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages)
        assert "Nothing was logged in these weeks." in text and "Milestones reached" not in text


def test_an_erased_account_gets_nothing(backend, journal):
    ana, ben, _ = make_couple(journal)
    milestones = milestones_client()
    with Pipeline():
        assert _report(milestones, ben)["sections"] == []
        assert journal.delete("/v1/accounts/me", headers=ben["headers"]).status_code == 204
        wait_until(
            lambda: milestones.get("/v1/report", headers=ben["headers"]).status_code == 401,
            what="the erasure to reach the milestones service",
        )
    for accept in ("application/json", "application/pdf"):
        r = milestones.get("/v1/report", headers={**ben["headers"], "Accept": accept})
        assert r.status_code == 401 and r.mimetype == "application/problem+json"


@pytest.mark.parametrize("weeks", ["3", "53", "0", "-4", "twelve", "12.5", ""])
def test_weeks_out_of_range_is_a_422_naming_the_field(backend, journal, weeks):
    ana = sign_up(journal)
    r = milestones_client().get(f"/v1/report?weeks={weeks}", headers=ana["headers"])
    assert r.status_code == 422 and r.mimetype == "application/problem+json", r.data
    assert "weeks" in r.get_json()["errors"]


def test_weeks_default_and_bounds(backend, journal):
    ana = sign_up(journal)
    client = milestones_client()
    for query, weeks in (("", 12), ("?weeks=4", 4), ("?weeks=52", 52)):
        r = client.get(f"/v1/report{query}", headers={**ana["headers"], **JSON})
        assert r.status_code == 200 and r.get_json()["weeks"] == weeks
    r = client.get("/v1/report", headers={**ana["headers"], "Accept": "text/html"})
    assert r.status_code == 406 and r.mimetype == "application/problem+json"
