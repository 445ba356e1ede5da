"""From journal entries to milestones, through the real outbox, broker and
consumer, on the embedded default and on RabbitMQ with PostgreSQL."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone

import pytest

from tests.conftest import make_couple, new_id
from tests.support import Pipeline, drain, wait_until
from tests.support import rituals as support_rituals


@pytest.fixture
def milestones(backend):
    from services.milestones.app import create_app

    app = create_app()
    app.testing = True
    return app.test_client()


def at(day: date, hour: int = 9) -> str:
    return datetime.combine(day, time(hour, 0), timezone(timedelta(hours=1))).isoformat()


def improving_history(today: date, days: int = 90) -> list[dict]:
    """Two anxious moments every day for the first month, none later; a reflection every day."""
    start = today - timedelta(days=days)
    out = []
    for i in range(days):
        d = start + timedelta(days=i)
        out.append(
            {"id": new_id(), "kind": "daily_reflection", "occurred_at": at(d, 21), "mood": 6}
        )
        if i < 30:
            for h in (8, 15):
                out.append(
                    {
                        "id": new_id(),
                        "kind": "anxious_episode",
                        "occurred_at": at(d, h),
                        "intensity": 6,
                    }
                )
    return out


def post_all(client, headers, bodies):
    for body in bodies:
        r = client.post("/v1/entries", headers=headers, json=body)
        assert r.status_code == 201, r.get_json()


def types_seen(client, headers) -> dict[str, int]:
    items = client.get("/v1/milestones?limit=200", headers=headers).get_json()["items"]
    return {f"{m['type']}:{m['level']}": m for m in items}


def _today() -> date:
    return datetime.now(timezone(timedelta(hours=1))).date()


def test_ten_rituals_make_a_couple_milestone_seen_by_both(backend, journal, milestones):
    a, b, couple_id = make_couple(journal)
    today = _today()
    rituals = support_rituals(today, 10)
    with Pipeline():
        post_all(journal, a["headers"], rituals[:6])
        post_all(journal, b["headers"], rituals[6:])
        wait_until(
            lambda: "rituals_kept:1" in types_seen(milestones, a["headers"]), what="the 10th ritual"
        )
    m = types_seen(milestones, a["headers"])["rituals_kept:1"]
    assert m["couple_id"] == couple_id and m["partner_id"] is None
    assert "rituals_kept:1" in types_seen(milestones, b["headers"])
    one = milestones.get(f"/v1/milestones/{m['id']}", headers=b["headers"])
    assert one.status_code == 200 and one.get_json()["evidence"]


@pytest.mark.parametrize("as_", ["check_in", "ritual"])
def test_the_check_in_rhythm_counts_the_weeks_of_both_partners(backend, journal, milestones, as_):
    """4 of the last 5 weeks with a check-in, by either partner: Ana's weeks 4, 2 and 0, then Ben's 0 (the
    same day as hers) and 3. Counted in the consumer as each check-in arrives (the settled evaluation is
    kept an hour away here): only both partners' days, read together, make 4 weeks; read into one
    history, the shared day would be two aggregates of one date. A check-in is a ``check_in`` entry or a
    ritual tagged ``weekly_check_in`` (the consumer looks at the rhythm for these, not other rituals)."""
    a, b, couple_id = make_couple(journal)
    today = _today()

    def check_in(weeks_ago: int) -> dict:
        what = (
            {"kind": "check_in", "connection": 4, "understanding": 4}
            if as_ == "check_in"
            else {"kind": "ritual", "ritual": "weekly_check_in"}
        )
        return {
            "id": new_id(),
            **what,
            "occurred_at": at(today - timedelta(days=7 * weeks_ago + 1), 20),
            "visibility": "shared",
        }  # the couple's rhythm reads shared entries alone

    with Pipeline(settle=3600):
        post_all(journal, a["headers"], [check_in(w) for w in (4, 2, 0)])
        post_all(journal, b["headers"], [check_in(w) for w in (0, 3)])
        wait_until(
            lambda: "check_in_rhythm:1" in types_seen(milestones, b["headers"]), what="the rhythm"
        )
    assert drain("milestones.events.dead") == [], "every check-in applied (Ben's on Ana's day too)"
    m = types_seen(milestones, a["headers"])["check_in_rhythm:1"]
    assert m["couple_id"] == couple_id and m["evidence"]["weeks_with_check_in"] == 4


def test_fewer_anxious_episodes_is_the_partners_own_until_shared(backend, journal, milestones):
    a, b, _ = make_couple(journal)
    with Pipeline() as pipe:
        post_all(journal, a["headers"], improving_history(_today()))
        wait_until(
            lambda: any(
                k.startswith("fewer_anxious_episodes") for k in types_seen(milestones, a["headers"])
            ),
            timeout=60,
            what="fewer anxious episodes",
        )
        mine = types_seen(milestones, a["headers"])
        assert not any(
            k.startswith("fewer_anxious_episodes") for k in types_seen(milestones, b["headers"])
        )
        m = next(v for k, v in mine.items() if k.startswith("fewer_anxious_episodes"))
        assert m["partner_id"] == a["id"]
        assert milestones.get(f"/v1/milestones/{m['id']}", headers=b["headers"]).status_code == 404
        for key in ("statistic", "threshold"):
            assert key in str(m["evidence"])

        _publish_preference(a["id"], share=True)
        wait_until(
            lambda: m["id"] in {v["id"] for v in types_seen(milestones, b["headers"]).values()},
            what="the shared milestone to be visible to the partner",
        )
        assert pipe  # noqa


def _publish_preference(partner_id: str, share: bool) -> None:
    from kombu import Producer

    from shared import broker, events, topology

    ev = events.make_event(
        "notify.preferences.changed",
        source="/notify",
        subject=partner_id,
        data={"partner_id": partner_id, "share_milestones_with_partner": share},
    )
    with broker.connect() as conn:
        topology.declare(conn)
        Producer(conn, exchange=topology.EXCHANGE).publish(
            events.encode(ev),
            routing_key=ev["type"],
            content_type=events.CONTENT_TYPE,
            delivery_mode=2,
        )


@pytest.mark.parametrize("order", ["shuffled", "reversed"])
def test_a_late_sync_in_any_order_ends_with_the_same_milestones(
    backend, journal, milestones, order
):
    history = improving_history(_today())
    a1, _, _ = make_couple(journal)
    a2, _, _ = make_couple(journal)
    late = list(history)
    random.Random(7).shuffle(late) if order == "shuffled" else late.reverse()
    relabelled = [dict(e, id=new_id()) for e in late]
    with Pipeline(settle=1.0):
        post_all(journal, a1["headers"], history)
        post_all(journal, a2["headers"], relabelled)

        def both_done():
            x, y = types_seen(milestones, a1["headers"]), types_seen(milestones, a2["headers"])
            return x and set(x) == set(y) and x

        found = wait_until(
            both_done, timeout=90, what="the same milestones in order and out of order"
        )
    assert any(k.startswith("fewer_anxious_episodes") for k in found)


def test_deleting_a_ritual_never_takes_a_milestone_back_nor_announces_it_twice(
    backend, journal, milestones
):
    a, b, _ = make_couple(journal)
    today = _today()
    rituals = support_rituals(today, 10, "affection")
    with Pipeline():
        post_all(journal, a["headers"], rituals)
        wait_until(
            lambda: "rituals_kept:1" in types_seen(milestones, a["headers"]), what="the 10th ritual"
        )
        assert (
            journal.delete(f"/v1/entries/{rituals[0]['id']}", headers=a["headers"]).status_code
            == 204
        )
        post_all(journal, a["headers"], [dict(rituals[0], id=new_id())])  # the 10th again
        from sqlalchemy import func, select

        from services.milestones.tables import milestones as table

        engine = backend.engine("milestones")

        def settled():
            with engine.connect() as c:
                return c.execute(select(func.count()).select_from(table)).scalar() >= 1

        wait_until(settled, what="milestones stored")
    items = [
        m
        for m in milestones.get("/v1/milestones", headers=a["headers"]).get_json()["items"]
        if m["type"] == "rituals_kept"
    ]
    assert len(items) == 1
