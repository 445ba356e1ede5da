"""The milestones service's HTTP API: auth, who sees which milestone, pagination
and the progress series, on the embedded backend and on PostgreSQL with RabbitMQ."""

from __future__ import annotations

import base64
import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tests.conftest import make_couple, new_id, sign_up
from tests.support import (
    Pipeline,
    at,
    ids_seen,
    improving_history,
    milestones_client,
    paris_today,
    post_all,
    preference_event,
    publish_events,
    rituals,
    types_seen,
    wait_until,
)

PROBLEM = "application/problem+json"


@pytest.fixture
def milestones(backend):
    return milestones_client()


def _problem(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    assert r.mimetype == PROBLEM, r.mimetype
    body = r.get_json()
    assert body["status"] == status and body["title"]
    return body


def _invalid(r, field: str) -> dict:
    body = _problem(r, 422)
    assert field in body.get("errors", {}), body
    return body


# --- auth ---


def _other_key_token(partner_id: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from shared import auth

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return auth.TokenIssuer(pem, 3600).issue(partner_id)


def _expired_token(backend, partner_id: str) -> str:
    from shared import auth

    return auth.TokenIssuer(auth.private_key_pem(backend.var_dir), -3600).issue(partner_id)


ENDPOINTS = [
    "/v1/milestones",
    "/v1/milestones?limit=0",
    f"/v1/milestones/{new_id()}",
    "/v1/progress?metric=anxious_episodes&bucket=week",
    "/v1/progress",
]


def test_every_endpoint_refuses_a_missing_or_bad_token(backend, journal, milestones):
    a = sign_up(journal)
    bad = {
        "no header": {},
        "garbage": {"Authorization": "Bearer garbage"},
        "empty bearer": {"Authorization": "Bearer "},
        "another scheme": {"Authorization": "Basic YW5hOnNlY3JldA=="},
        "a JWT signed with another key": {"Authorization": f"Bearer {_other_key_token(a['id'])}"},
        "an expired token": {"Authorization": f"Bearer {_expired_token(backend, a['id'])}"},
    }
    for path in ENDPOINTS:
        for why, headers in bad.items():
            r = milestones.get(path, headers=headers)
            body = _problem(
                r, 401
            )  # auth comes before input: /v1/progress without a metric is 401 too
            assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), (path, why)
            assert "errors" not in body or "metric" not in body["errors"], (path, why)
    # The journal's own token, verified with the key under the backend's var dir, is accepted.
    assert milestones.get("/v1/milestones", headers=a["headers"]).status_code == 200
    assert (
        milestones.get("/v1/progress?metric=anxious_episodes", headers=a["headers"]).status_code
        == 200
    )
    assert milestones.get(f"/v1/milestones/{new_id()}", headers=a["headers"]).status_code == 404


# --- visibility ---


def test_who_sees_which_milestone(backend, journal, milestones, mdb):
    from services.milestones.tables import partners

    a, b, couple_id = make_couple(journal)
    c, d, other_couple = make_couple(journal)
    today = paris_today()
    with Pipeline():
        post_all(journal, a["headers"], improving_history(today))
        mine = rituals(today, 10)
        post_all(journal, a["headers"], mine[:6])
        post_all(journal, b["headers"], mine[6:])
        post_all(journal, c["headers"], rituals(today, 10, "affection"))

        def a_has_both():
            seen = types_seen(milestones, a["headers"])
            return (
                "rituals_kept:1" in seen
                and any(k.startswith("fewer_anxious_episodes") for k in seen)
                and seen
            )

        wait_until(a_has_both, timeout=60, what="a's own milestone and the couple's")
        theirs = wait_until(
            lambda: types_seen(milestones, c["headers"]).get("rituals_kept:1"),
            what="the other couple's ritual milestone",
        )

        seen_by_a = types_seen(milestones, a["headers"])
        own = [m for m in seen_by_a.values() if m["type"] == "fewer_anxious_episodes"]
        ours = seen_by_a["rituals_kept:1"]
        own_ids = {m["id"] for m in own}
        for m in own:
            assert m["partner_id"] == a["id"] and m["couple_id"] == couple_id
        assert ours["partner_id"] is None and ours["couple_id"] == couple_id
        assert theirs["couple_id"] == other_couple and theirs["partner_id"] is None

        # A partner's own milestone: the owner sees it, the other partner does not (list and by id).
        for m in own:
            assert (
                milestones.get(f"/v1/milestones/{m['id']}", headers=a["headers"]).status_code == 200
            )
            _problem(milestones.get(f"/v1/milestones/{m['id']}", headers=b["headers"]), 404)
        assert not own_ids & ids_seen(milestones, b["headers"])

        # The couple's milestone: both partners see it, with its evidence.
        assert ours["id"] in ids_seen(milestones, b["headers"])
        one = milestones.get(f"/v1/milestones/{ours['id']}", headers=b["headers"])
        assert (
            one.status_code == 200
            and one.get_json()["evidence"]
            and one.get_json()["id"] == ours["id"]
        )

        # Another couple's milestones are never visible, whichever way they are asked for.
        for outsider in (c, d):
            assert not (own_ids | {ours["id"]}) & ids_seen(milestones, outsider["headers"])
            for mid in own_ids | {ours["id"]}:
                _problem(milestones.get(f"/v1/milestones/{mid}", headers=outsider["headers"]), 404)
        for insider in (a, b):
            assert theirs["id"] not in ids_seen(milestones, insider["headers"])
            _problem(
                milestones.get(f"/v1/milestones/{theirs['id']}", headers=insider["headers"]), 404
            )

        def sharing(pid):
            with mdb.connect() as conn:
                return conn.execute(
                    select(partners.c.share_milestones_with_partner).where(partners.c.id == pid)
                ).scalar()

        # The other partner's preference, or an outsider's, shares nothing of a's.
        publish_events(preference_event(b["id"], True), preference_event(c["id"], True))
        wait_until(
            lambda: sharing(b["id"]) and sharing(c["id"]), what="b's and c's preferences applied"
        )
        assert not own_ids & ids_seen(milestones, b["headers"])

        # The owner turns sharing on: the partner sees it (and still no outsider does).
        publish_events(preference_event(a["id"], True))
        wait_until(
            lambda: own_ids <= ids_seen(milestones, b["headers"]),
            what="a's milestone shared with b",
        )
        for mid in own_ids:
            assert milestones.get(f"/v1/milestones/{mid}", headers=b["headers"]).status_code == 200
            _problem(milestones.get(f"/v1/milestones/{mid}", headers=c["headers"]), 404)
        assert not own_ids & ids_seen(milestones, c["headers"])

        # ... and off again: hidden again.
        publish_events(preference_event(a["id"], False))
        wait_until(
            lambda: not own_ids & ids_seen(milestones, b["headers"]),
            what="a's milestone hidden again",
        )
        for mid in own_ids:
            _problem(milestones.get(f"/v1/milestones/{mid}", headers=b["headers"]), 404)
            assert milestones.get(f"/v1/milestones/{mid}", headers=a["headers"]).status_code == 200


# --- pagination ---


def _seed(engine, a, b, c, couple_id, other_couple) -> tuple[set[str], set[str]]:
    """Partners and milestones written straight into the service's view: what
    a may see (ties on achieved_at included), and what a may not."""
    from services.milestones.tables import milestones as table
    from services.milestones.tables import partners

    base = datetime(2026, 3, 1, 12, tzinfo=UTC)
    visible, hidden = set(), set()

    def row(type_, level, owner_key, partner_id, couple, hours):
        mid = new_id()
        return {
            "id": mid,
            "type": type_,
            "level": level,
            "owner_key": owner_key,
            "partner_id": partner_id,
            "couple_id": couple,
            "achieved_at": base + timedelta(hours=hours),
            "as_of": date(2026, 3, 1),
            "headline": f"{type_} {level}",
            "evidence": {"count": level},
        }

    rows = []
    for level, hours in (
        (1, 1),
        (2, 2),
        (3, 2),
        (4, 3),
    ):  # the couple's own, two at the same instant
        rows.append(row("rituals_kept", level, couple_id, None, couple_id, hours))
        visible.add(rows[-1]["id"])
    for level, hours in ((1, 2), (2, 5), (3, 0)):  # a's own
        rows.append(row("fewer_anxious_episodes", level, a["id"], a["id"], couple_id, hours))
        visible.add(rows[-1]["id"])
    for level, hours in ((1, 4), (2, 2)):  # a's, achieved before they formed the couple
        rows.append(row("more_independence", level, a["id"], a["id"], None, hours))
        visible.add(rows[-1]["id"])
    rows.append(row("calmer_episodes", 1, b["id"], b["id"], couple_id, 2))  # b's own, not shared
    hidden.add(rows[-1]["id"])
    rows.append(row("rituals_kept", 1, other_couple, None, other_couple, 2))  # another couple's
    hidden.add(rows[-1]["id"])
    rows.append(row("calmer_episodes", 1, c["id"], c["id"], other_couple, 2))  # an outsider's own
    hidden.add(rows[-1]["id"])
    with engine.begin() as conn:
        for pid, cid, share in (
            (a["id"], couple_id, False),
            (b["id"], couple_id, False),
            (c["id"], other_couple, True),
        ):
            conn.execute(
                partners.insert().values(
                    id=pid,
                    couple_id=cid,
                    timezone="Europe/Paris",
                    share_milestones_with_partner=share,
                    erased=False,
                )
            )
        conn.execute(table.insert(), rows)
    return visible, hidden


def _walk(client, headers, limit: int) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        url = f"/v1/milestones?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= limit
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursor does not advance"


def _b64(raw: bytes | str) -> str:
    raw = raw.encode() if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_milestones_are_paginated_newest_first_each_once(backend, journal, milestones, mdb):
    a, b, couple_id = make_couple(journal)
    c, _, other_couple = make_couple(journal)
    visible, hidden = _seed(mdb, a, b, c, couple_id, other_couple)

    for limit in (1, 2, 4, len(visible), 200):
        pages = _walk(milestones, a["headers"], limit)
        items = [m for page in pages for m in page]
        ids = [m["id"] for m in items]
        assert len(ids) == len(set(ids)) == len(visible), f"limit={limit}: each item exactly once"
        assert set(ids) == visible and not set(ids) & hidden
        assert len(pages) == math.ceil(len(visible) / limit), f"limit={limit}: no empty last page"
        stamps = [datetime.fromisoformat(m["achieved_at"]) for m in items]
        assert stamps == sorted(stamps, reverse=True), f"limit={limit}: newest first"

    default = milestones.get("/v1/milestones", headers=a["headers"]).get_json()
    assert default["next_cursor"] is None and {m["id"] for m in default["items"]} == visible
    assert [m["id"] for m in default["items"]] == [
        m["id"] for page in _walk(milestones, a["headers"], 3) for m in page
    ]


def test_limit_and_cursor_are_validated_never_500(backend, journal, milestones):
    a = sign_up(journal)
    for bad in ("0", "201", "-1", "1000000000000000000000", "ten", "1.5"):
        _invalid(milestones.get(f"/v1/milestones?limit={bad}", headers=a["headers"]), "limit")
    for ok in ("1", "200"):
        assert milestones.get(f"/v1/milestones?limit={ok}", headers=a["headers"]).status_code == 200

    mid = new_id()
    garbage = [
        "garbage",
        "%25%25%25",
        "====",
        "x" * 201,
        _b64("no separator"),
        _b64(b"\xff\xfe|\x00"),
        _b64(f"not a time|{mid}"),
        _b64("2026-03-01T12:00:00+00:00|not-a-uuid"),
        _b64(f"2026-03-01T12:00:00|{mid}"),  # no offset
        _b64(f"0001-01-01T00:00:00+01:00|{mid}"),  # before year 1 in UTC
        _b64(f"9999-12-31T23:59:59-01:00|{mid}"),  # after year 9999 in UTC
    ]
    for cursor in garbage:
        r = milestones.get(f"/v1/milestones?cursor={cursor}", headers=a["headers"])
        _invalid(r, "cursor")


# --- progress ---


def test_progress_query_is_validated(backend, journal, milestones):
    a = sign_up(journal)
    h = a["headers"]
    _invalid(milestones.get("/v1/progress", headers=h), "metric")
    _invalid(milestones.get("/v1/progress?bucket=week", headers=h), "metric")
    for metric in ("", "anxiety", "ANXIOUS_EPISODES", "anxious_episodes;drop"):
        _invalid(milestones.get(f"/v1/progress?metric={metric}", headers=h), "metric")
    for bucket in ("day", "month", "", "WEEK"):
        _invalid(
            milestones.get(f"/v1/progress?metric=communication&bucket={bucket}", headers=h),
            "bucket",
        )
    for field in ("since", "until"):
        for bad in (
            "yesterday",
            "2026-02-30",
            "2026-13-01",
            "2026-3-1x",
            "2026-03-01T00:00:00+01:00x",
        ):
            _invalid(
                milestones.get(f"/v1/progress?metric=communication&{field}={bad}", headers=h), field
            )
    # until before since: refused whether or not the caller has data yet
    body = _problem(
        milestones.get(
            "/v1/progress?metric=communication&since=2026-03-10&until=2026-03-01", headers=h
        ),
        422,
    )
    assert {"since", "until"} & set(body["errors"]), body
    ok = milestones.get("/v1/progress?metric=anxious_episodes&bucket=week", headers=h)
    assert ok.status_code == 200
    assert ok.get_json() == {"metric": "anxious_episodes", "bucket": "week", "points": []}


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def test_progress_is_the_callers_own_weekly_series(backend, journal, milestones, mdb):
    from services.milestones.tables import entries

    a, b, _ = make_couple(journal)  # a in Europe/Paris, b in America/New_York
    m0 = _monday(paris_today() - timedelta(days=28))
    w1, w2, w3, w4 = (m0 + timedelta(days=7 * i) for i in range(4))

    def ep(day, hour, intensity, **kw):
        return {
            "id": new_id(),
            "kind": "anxious_episode",
            "occurred_at": at(day, hour),
            "intensity": intensity,
            **kw,
        }

    def refl(day, **measures):
        return {"id": new_id(), "kind": "daily_reflection", "occurred_at": at(day, 21), **measures}

    mine = [
        # week 1: three episodes on two days, two communication ratings, three logged days
        ep(w1 + timedelta(days=1), 8, 4),
        refl(w1 + timedelta(days=1), communication=3),
        ep(w1 + timedelta(days=3), 10, 7),
        ep(w1 + timedelta(days=3), 11, 6),
        refl(w1 + timedelta(days=4), communication=4, mood=6),
        # week 2: nothing logged
        # week 3: one logged day, no episode, no communication rating
        refl(w3 + timedelta(days=2), mood=5),
        # Sunday 23:30 UTC is already Monday in Paris: week 4
        {
            "id": new_id(),
            "kind": "anxious_episode",
            "intensity": 2,
            "occurred_at": datetime.combine(
                w4 - timedelta(days=1), datetime.min.time().replace(hour=23, minute=30), UTC
            ).isoformat(),
        },
    ]
    partners_entries = [
        ep(w1 + timedelta(days=1), 12, 9, visibility="shared"),
        ep(w2 + timedelta(days=2), 12, 9, visibility="shared"),
        ep(w2 + timedelta(days=3), 12, 8),
        refl(w2 + timedelta(days=3), communication=1),
    ]
    with Pipeline():
        post_all(journal, a["headers"], mine)
        post_all(journal, b["headers"], partners_entries)
        ids = {e["id"] for e in mine + partners_entries}

        def projected():
            with mdb.connect() as conn:
                return len(
                    conn.execute(select(entries.c.id).where(entries.c.id.in_(ids))).all()
                ) == len(ids)

        wait_until(projected, what="every entry in the milestones view")

    def series(metric, who=a, **q):
        query = "&".join([f"metric={metric}", "bucket=week"] + [f"{k}={v}" for k, v in q.items()])
        r = milestones.get(f"/v1/progress?{query}", headers=who["headers"])
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        assert body["metric"] == metric and body["bucket"] == "week"
        return body["points"]

    window = {"since": w1.isoformat(), "until": (w4 + timedelta(days=6)).isoformat()}
    starts = [w.isoformat() for w in (w1, w2, w3, w4)]

    pts = series("anxious_episodes", **window)
    assert [p["start"] for p in pts] == starts
    assert [p["value"] for p in pts] == [
        3,
        None,
        0,
        1,
    ]  # a week with nothing logged is null, not zero
    assert [p["logged_days"] for p in pts] == [3, 0, 1, 1]

    pts = series("episode_intensity", **window)
    assert [p["value"] for p in pts] == [pytest.approx(17 / 3, abs=0.01), None, None, 2]
    assert [p["logged_days"] for p in pts] == [3, 0, 1, 1]

    pts = series("communication", **window)
    assert [p["value"] for p in pts] == [3.5, None, None, None]
    assert [p["logged_days"] for p in pts] == [3, 0, 1, 1]

    # By default: from the week of the first data to this week, Mondays, oldest first.
    pts = series("anxious_episodes")
    assert pts[0]["start"] == w1.isoformat()
    assert pts[-1]["start"] == _monday(datetime.now(ZoneInfo("Europe/Paris")).date()).isoformat()
    days = [date.fromisoformat(p["start"]) for p in pts]
    assert all(d.weekday() == 0 for d in days)
    assert all(later - earlier == timedelta(days=7) for earlier, later in zip(days, days[1:]))
    assert [p["value"] for p in pts[:4]] == [3, None, 0, 1]
    assert all(p["value"] is None and p["logged_days"] == 0 for p in pts[4:])

    # The partner's series is theirs alone, and a's never shows it (shared entries included).
    theirs = series("anxious_episodes", who=b, **window)
    assert [p["value"] for p in theirs] == [1, 2, None, None]
    assert [p["value"] for p in series("communication", who=b, **window)] == [None, 1, None, None]

    # until before since is refused with data too; a week cut by `since` still starts on its Monday.
    _problem(
        milestones.get(
            f"/v1/progress?metric=anxious_episodes&since={w2}&until={w1}", headers=a["headers"]
        ),
        422,
    )
    pts = series(
        "anxious_episodes",
        since=(w1 + timedelta(days=2)).isoformat(),
        until=(w1 + timedelta(days=6)).isoformat(),
    )
    assert [p["start"] for p in pts] == [w1.isoformat()]

    # Far edges of the calendar are answered, never a 500.
    for since, until in (
        ("0001-01-01", "0001-01-20"),
        ("9999-12-20", "9999-12-31"),
        ("1900-01-01", None),
    ):
        q = f"/v1/progress?metric=anxious_episodes&since={since}" + (
            f"&until={until}" if until else ""
        )
        r = milestones.get(q, headers=a["headers"])
        assert r.status_code in (200, 422), (q, r.status_code, r.get_data(as_text=True))
    _invalid(
        milestones.get(
            "/v1/progress?metric=anxious_episodes&since=1900-01-01", headers=a["headers"]
        ),
        "since",
    )
