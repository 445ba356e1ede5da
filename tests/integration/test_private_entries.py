"""A private entry is its author's alone: nothing the other partner reads (milestones,
their evidence, progress, the inbox, the announcement) is derived from it, while
shared entries feed the couple. An erasure ends the couple. Driven through the
journal's API and the real pipeline, on the embedded backend and on PostgreSQL
with RabbitMQ."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.milestones.tables import entries, outbox, shared_days
from services.milestones.tables import milestones as milestones_table
from shared import events
from tests.conftest import make_couple, new_id
from tests.support import (
    Handled,
    Pipeline,
    at,
    improving_history,
    milestones_client,
    paris_today,
    post_all,
    publish_events,
    rituals,
    types_seen,
    wait_until,
)

SECRET_TAG = "therapist_affair_session"


@pytest.fixture
def notify(backend):
    from services.notify.app import create_app

    app = create_app()
    app.testing = True
    return app.test_client()


def _inbox(client, who) -> list[dict]:
    r = client.get("/v1/notifications?limit=200", headers=who["headers"])
    assert r.status_code == 200, r.get_json()
    return r.get_json()["items"]


def _shared_rituals(engine, *partner_ids) -> int:
    with engine.connect() as c:
        return c.execute(
            select(func.coalesce(func.sum(shared_days.c.ritual_count), 0)).where(
                shared_days.c.partner_id.in_(partner_ids)
            )
        ).scalar()


def _everything_ana_reads(milestones, notify, ana) -> str:
    """Her milestones list, each milestone one by one, her progress, her inbox: as text."""
    listed = milestones.get("/v1/milestones?limit=200", headers=ana["headers"]).get_json()["items"]
    read = [listed, _inbox(notify, ana)]
    read += [
        milestones.get(f"/v1/milestones/{m['id']}", headers=ana["headers"]).get_json()
        for m in listed
    ]
    read += [
        milestones.get(f"/v1/progress?metric={m}", headers=ana["headers"]).get_json()
        for m in ("rituals", "communication")
    ]
    return json.dumps(read)


def test_bens_private_rituals_and_ratings_leave_no_trace_in_anything_ana_reads(
    backend, journal, notify, mdb
):
    """Ben keeps 10 private rituals (a tag naming his affair's therapy) and private low communication
    ratings; 9 shared rituals of his and 1 of Ana's make the couple's 10th ritual. The milestone counts
    the 10 shared ones, and no tag, no count of his private ones, is in anything Ana can read."""
    ana, ben, couple_id = make_couple(journal)
    milestones = milestones_client()
    today = paris_today()
    private = rituals(today, 10, SECRET_TAG, visibility="private")
    private += [
        {
            "id": new_id(),
            "kind": "daily_reflection",
            "occurred_at": at(today - timedelta(days=i + 1), 21),
            "communication": 1,
            "visibility": "private",
        }
        for i in range(10)
    ]
    with Pipeline():
        post_all(journal, ben["headers"], private + rituals(today, 9))
        post_all(journal, ana["headers"], rituals(today, 1, "affection"))
        wait_until(
            lambda: "rituals_kept:1" in types_seen(milestones, ana["headers"]),
            what="the 10th ritual",
        )
        wait_until(lambda: _inbox(notify, ana), what="Ana's notification")
        with mdb.connect() as c:  # the announcement (its audience both) relayed
            wait_until(
                lambda: (
                    not c.execute(
                        select(func.count())
                        .select_from(outbox)
                        .where(outbox.c.published_at.is_(None))
                    ).scalar()
                ),
                what="the milestones outbox relayed",
            )
            announced = c.execute(select(outbox.c.body)).scalars().all()
    kept = types_seen(milestones, ana["headers"])["rituals_kept:1"]
    assert (
        kept["evidence"]["rituals"] == 10
        and kept["headline"] == "You have kept 10 rituals together."
    )
    assert "rituals_kept:2" not in types_seen(milestones, ana["headers"])
    seen = _everything_ana_reads(milestones, notify, ana) + json.dumps(announced)
    assert SECRET_TAG not in seen and "by_ritual" not in seen
    # his private ratings and rituals are in his own aggregate only, never in what the couple's rules read
    assert _shared_rituals(mdb, ben["id"]) == 9
    with mdb.connect() as c:
        rated = c.execute(
            select(func.count())
            .select_from(shared_days)
            .where(shared_days.c.partner_id == ben["id"], shared_days.c.ratings > 0)
        ).scalar()
    assert rated == 0
    mine = milestones.get("/v1/progress?metric=rituals", headers=ben["headers"]).get_json()[
        "points"
    ]
    assert sum(p["value"] or 0 for p in mine) == 19, "his own progress counts his private rituals"


def test_sharing_a_ritual_makes_it_count_and_unsharing_it_takes_it_out_again(backend, journal, mdb):
    """A PATCH of visibility is a revision like any other: private to shared makes Ben's ritual the couple's
    10th; shared to private takes it out of the count the couple's later evaluations read."""
    ana, ben, couple_id = make_couple(journal)
    milestones = milestones_client()
    today = paris_today()
    ritual = rituals(today, 1, visibility="private")[0]
    with Pipeline():
        post_all(journal, ana["headers"], rituals(today, 9))
        post_all(journal, ben["headers"], [ritual])
        # Ana's 9 and Ben's private one applied (a filesystem broker may deliver them in any order):
        # the couple's count is Ana's 9 alone.
        wait_until(
            lambda: _entry(mdb, ritual["id"]) and _shared_rituals(mdb, ana["id"], ben["id"]) >= 9,
            what="Ben's private ritual and Ana's 9 in the milestones view",
        )
        assert _shared_rituals(mdb, ana["id"], ben["id"]) == 9
        assert "rituals_kept:1" not in types_seen(milestones, ana["headers"])

        path = f"/v1/entries/{ritual['id']}"
        assert (
            journal.patch(path, headers=ben["headers"], json={"visibility": "shared"}).status_code
            == 200
        )
        wait_until(
            lambda: "rituals_kept:1" in types_seen(milestones, ana["headers"]),
            what="the shared 10th",
        )
        assert _shared_rituals(mdb, ana["id"], ben["id"]) == 10

        assert (
            journal.patch(path, headers=ben["headers"], json={"visibility": "private"}).status_code
            == 200
        )
        wait_until(
            lambda: _entry(mdb, ritual["id"]).visibility == "private",
            what="the ritual private again",
        )
        assert _shared_rituals(mdb, ana["id"], ben["id"]) == 9


def _entry(engine, entry_id):
    with engine.connect() as c:
        return c.execute(select(entries).where(entries.c.id == entry_id)).first()


def test_an_erasure_ends_the_couple_for_the_milestones_and_the_inbox(backend, journal, notify, mdb):
    """After Ben's erasure the couple's milestone is gone from Ana's list and inbox, her own stay, and a
    late event of the ended couple (an entry shared in it, its milestone announced) feeds no one."""
    ana, ben, couple_id = make_couple(journal)
    milestones = milestones_client()
    today = paris_today()
    with Pipeline():
        post_all(journal, ana["headers"], improving_history(today) + rituals(today, 5))
        post_all(journal, ben["headers"], rituals(today, 5, "affection"))
        wait_until(
            lambda: (
                {"rituals_kept:1", "fewer_anxious_episodes:1"}
                <= set(types_seen(milestones, ana["headers"]))
            ),
            timeout=60,
            what="Ana's own milestone and the couple's",
        )
        wait_until(lambda: len(_inbox(notify, ana)) >= 2, what="both in her inbox")
        ours = types_seen(milestones, ana["headers"])["rituals_kept:1"]["id"]

        assert journal.delete("/v1/accounts/me", headers=ben["headers"]).status_code == 204
        wait_until(
            lambda: "rituals_kept:1" not in types_seen(milestones, ana["headers"]),
            what="the couple's milestone gone from her list",
        )
        wait_until(
            lambda: ours not in {n["milestone_id"] for n in _inbox(notify, ana)},
            what="the couple's milestone gone from her inbox",
        )
        assert "fewer_anxious_episodes:1" in types_seen(milestones, ana["headers"])
        assert [n for n in _inbox(notify, ana) if n["milestone_id"] != ours], (
            "her own notification stays"
        )
        assert milestones.get(f"/v1/milestones/{ours}", headers=ana["headers"]).status_code == 404
        with mdb.connect() as c:
            assert not c.execute(
                select(milestones_table).where(milestones_table.c.owner_key == couple_id)
            ).first()
        assert _shared_rituals(mdb, ana["id"]) == 0, "what she had shared with him is private now"

    late_entry = events.make_event(
        "journal.entry.recorded",
        source="/journal",
        subject=couple_id,
        data={
            "entry_id": new_id(),
            "couple_id": couple_id,
            "partner_id": ana["id"],
            "kind": "ritual",
            "occurred_at": datetime.now(UTC) - timedelta(days=1),
            "local_date": today - timedelta(days=1),
            "visibility": "shared",
            "ritual": "affection",
        },
        time=datetime.now(UTC) - timedelta(hours=1),
    )
    late_milestone = events.make_event(
        "milestones.milestone.achieved",
        source="/milestones",
        subject=couple_id,
        data={
            "id": new_id(),
            "type": "rituals_kept",
            "level": 2,
            "couple_id": couple_id,
            "partner_id": None,
            "achieved_at": datetime.now(UTC),
            "evidence": {"rituals": 25},
            "headline": "You have kept 25 rituals together.",
            "audience": [ana["id"], ben["id"]],
        },
    )
    pipe = Pipeline()
    handled, notified = Handled(pipe.consumer), Handled(pipe.notify_consumer)
    with pipe:
        publish_events(late_entry, late_milestone)
        handled.wait(late_entry["id"])
        notified.wait(late_milestone["id"])
    stored = _entry(mdb, late_entry["data"]["entry_id"])
    assert stored.visibility == "private" and _shared_rituals(mdb, ana["id"]) == 0
    assert late_milestone["data"]["id"] not in {n["milestone_id"] for n in _inbox(notify, ana)}
    assert not any(
        m["couple_id"] == couple_id and m["partner_id"] is None
        for m in milestones.get("/v1/milestones", headers=ana["headers"]).get_json()["items"]
    )


def test_an_erased_partners_token_is_refused_by_the_milestones_service(backend, journal):
    ana, ben, _ = make_couple(journal)
    milestones = milestones_client()
    with Pipeline():
        assert milestones.get("/v1/milestones", headers=ben["headers"]).status_code == 200
        assert journal.delete("/v1/accounts/me", headers=ben["headers"]).status_code == 204
        wait_until(
            lambda: milestones.get("/v1/milestones", headers=ben["headers"]).status_code == 401,
            what="the erasure to reach the milestones service",
        )
    for path in ("/v1/milestones", f"/v1/milestones/{new_id()}", "/v1/progress?metric=rituals"):
        r = milestones.get(path, headers=ben["headers"])
        assert r.status_code == 401 and r.content_type == "application/problem+json", path
    assert milestones.get("/v1/milestones", headers=ana["headers"]).status_code == 200
