"""A late sync sent as batches (``POST /v1/entries/batch``) reaches the milestones service whole:
no evaluation of a partner or their couple judges a batch half applied, and a shuffled sync ends
with the milestones of in-order delivery, on both backends."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from bench.offline_sync import couple_history, in_batches
from services.milestones import app as milestones_app
from services.milestones import evaluation
from shared import events
from shared.db import make_session_factory, unit_of_work
from tests.conftest import make_couple, new_id
from tests.support import Pipeline, milestones_client, paris_today, wait_until


def seen(client, who: dict) -> dict[str, str]:
    """What a partner sees: "type:level" -> the day it was seen on."""
    r = client.get("/v1/milestones?limit=200", headers=who["headers"])
    assert r.status_code == 200, r.get_json()
    return {f"{m['type']}:{m['level']}": m["as_of"] for m in r.get_json()["items"]}


def send_batches(journal, who: dict, bodies: list[dict], size: int) -> None:
    for chunk in in_batches(bodies, size):
        r = journal.post("/v1/entries/batch", headers=who["headers"], json={"entries": chunk})
        assert r.status_code == 200, r.get_json()
        assert {x["status"] for x in r.get_json()["results"]} == {201}


def relabelled(bodies: list[dict]) -> list[dict]:
    return [dict(b, id=new_id()) for b in bodies]


def _recorded(partner_id, couple_id, batch_id, size, day) -> events.Event:
    """A shared ritual's event, recorded in a batch of `size`."""
    from bench.evaluation_growth import _entry

    batch = {"ritual": "affection", "batch": {"id": batch_id, "size": size}}
    return _entry(partner_id, couple_id, "ritual", day, batch, datetime.now(UTC))


def test_a_batch_half_applied_holds_its_partner_and_their_couple(backend):
    """Ben's batch of 3 holds both partners (the couple's rules read his shared days) until its
    last event is applied, or until nothing more of it came for ``BATCH_HOLD``."""
    from bench.evaluation_growth import new_couple

    sessions = make_session_factory(backend.engine("milestones"))
    handlers = milestones_app.handlers()
    ana, ben, couple = new_couple(sessions, handlers)
    day = paris_today() - timedelta(days=3)
    batch_id = new_id()
    with unit_of_work(sessions) as s:
        for _ in range(2):
            handlers["journal.entry.recorded"](s, _recorded(ben, couple, batch_id, 3, day))

    def due(now: datetime) -> set[str]:
        with unit_of_work(sessions) as s:
            return set(evaluation.due_partners(s, now, timedelta(0)))

    now = datetime.now(UTC)
    assert due(now) & {ana, ben} == set()
    assert due(now + evaluation.BATCH_HOLD + timedelta(seconds=1)) >= {ana, ben}  # never for ever
    with unit_of_work(sessions) as s:
        handlers["journal.entry.recorded"](s, _recorded(ben, couple, batch_id, 3, day))
    assert due(datetime.now(UTC)) >= {ana, ben}


def test_a_whole_shuffled_sync_in_one_batch_is_one_replay_with_no_settle_time(backend, journal):
    """With no settle time at all, the evaluator looks at a partner as soon as an event is applied:
    had it looked before the whole batch was applied, it would have dated milestones from part of
    the history. Ana's months in one shuffled batch end as in order."""
    ana_history, _ = couple_history(paris_today())
    in_order, _, _ = make_couple(journal)
    shuffled, _, _ = make_couple(journal)
    late = relabelled(ana_history)
    random.Random(3).shuffle(late)
    milestones = milestones_client()
    with Pipeline(settle=0.0):
        send_batches(journal, in_order, relabelled(ana_history), 500)
        send_batches(journal, shuffled, late, 500)

        def both() -> dict | None:
            a, b = seen(milestones, in_order), seen(milestones, shuffled)
            return a if a and a == b and "fewer_anxious_episodes:1" in a else None

        wait_until(both, timeout=90, what="the same milestones, on the same days")


def test_a_couples_late_sync_in_shuffled_batches_ends_as_in_order_delivery(backend, journal):
    """Both partners' 90 days, shuffled within and across batches of 100, sent by both phones
    (interleaved): the same milestones on the same days as the same entries sent one by one in
    the order they happened."""
    ana_history, ben_history = couple_history(paris_today())
    a1, b1, _ = make_couple(journal)
    a2, b2, _ = make_couple(journal)
    rng = random.Random(5)
    late = {}
    for who, history in ((a2, ana_history), (b2, ben_history)):
        late[who["id"]] = relabelled(history)
        rng.shuffle(late[who["id"]])
    by_time = sorted(
        [(b["occurred_at"], a1, b) for b in relabelled(ana_history)]
        + [(b["occurred_at"], b1, b) for b in relabelled(ben_history)],
        key=lambda x: datetime.fromisoformat(x[0]),
    )
    milestones = milestones_client()
    with Pipeline(settle=1.0):
        for _, who, body in by_time:
            r = journal.post("/v1/entries", headers=who["headers"], json=body)
            assert r.status_code == 201, r.get_json()
        chunks = [(who, chunk) for who in (a2, b2) for chunk in in_batches(late[who["id"]], 100)]
        rng.shuffle(chunks)  # the two phones' batches interleaved
        for who, chunk in chunks:
            send_batches(journal, who, chunk, 100)

        def same() -> tuple | None:
            x = (seen(milestones, a1), seen(milestones, b1))
            y = (seen(milestones, a2), seen(milestones, b2))
            return (
                x
                if x == y
                and "rituals_kept:2" in x[0]
                and any(k.startswith("fewer_anxious_episodes") for k in x[0])
                else None
            )

        found = wait_until(same, timeout=120, what="the same milestones, on the same days")
    assert found[0]["rituals_kept:2"] == found[1]["rituals_kept:2"]  # the couple's, seen by both
