"""The milestones service's view, built from events alone: whatever the order,
however often each arrives; erasure; and the milestone.achieved events it emits.
Driven by publishing events to the broker as any client could, or through the
journal's API, on the embedded backend and on PostgreSQL with RabbitMQ."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import func, select

from services.milestones.tables import days, entries, outbox, partners, processed_events
from services.milestones.tables import milestones as milestones_table
from shared import events
from tests.conftest import make_couple, new_id, sign_up
from tests.support import (
    Handled,
    Pipeline,
    at,
    improving_history,
    milestones_client,
    paris_today,
    post_all,
    preference_event,
    publish_events,
    rituals,
    wait_until,
)

DAY = date(2026, 9, 14)  # a Monday, long past


@pytest.fixture
def feed(backend):
    """The milestones pipeline running; `.wait(event_id)` until the consumer is done with an event."""
    pipe = Pipeline()
    handled = Handled(pipe.consumer)
    with pipe:
        yield handled


def _ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


def entry_event(
    type_: str,
    *,
    entry_id: str,
    partner_id: str,
    couple_id: str | None,
    kind: str,
    day: date,
    at_time: datetime,
    hour: int = 9,
    visibility: str = "private",
    **measures,
) -> dict:
    data = {
        "entry_id": entry_id,
        "couple_id": couple_id,
        "partner_id": partner_id,
        "kind": kind,
        "occurred_at": datetime.combine(day, time(hour), UTC),
        "local_date": day,
        "visibility": visibility,
        **measures,
    }
    return events.make_event(
        type_, source="/journal", subject=couple_id or partner_id, data=data, time=at_time
    )


def deleted_event(
    *, entry_id: str, partner_id: str, couple_id: str | None, at_time: datetime
) -> dict:
    return events.make_event(
        "journal.entry.deleted",
        source="/journal",
        subject=couple_id or partner_id,
        data={"entry_id": entry_id, "couple_id": couple_id, "partner_id": partner_id},
        time=at_time,
    )


def _flat(row) -> dict:
    """A days row with its packed lists as fields of their own."""
    d = row._asdict()
    return {**d, **d.pop("detail")}


class View:
    """Reads of the milestones database."""

    def __init__(self, engine):
        self.engine = engine

    def _all(self, stmt):
        with self.engine.connect() as conn:
            return conn.execute(stmt).all()

    def entry(self, entry_id):
        rows = self._all(select(entries).where(entries.c.id == entry_id))
        return rows[0] if rows else None

    def day(self, partner_id, day):
        rows = self._all(
            select(days).where(days.c.partner_id == partner_id, days.c.local_date == day)
        )
        return _flat(rows[0]) if rows else None

    def days_of(self, partner_id) -> dict:
        return {
            r.local_date: _flat(r)
            for r in self._all(select(days).where(days.c.partner_id == partner_id))
        }

    def entries_of(self, partner_id):
        return self._all(select(entries).where(entries.c.partner_id == partner_id))

    def partner(self, partner_id):
        rows = self._all(select(partners).where(partners.c.id == partner_id))
        return rows[0] if rows else None

    def milestones(self, **where):
        stmt = select(milestones_table)
        for k, v in where.items():
            stmt = stmt.where(milestones_table.c[k] == v)
        return self._all(stmt)

    def processed(self, *event_ids) -> int:
        return self._all(
            select(func.count())
            .select_from(processed_events)
            .where(processed_events.c.event_id.in_(event_ids))
        )[0][0]


# --- order and idempotency ---


def test_the_same_event_delivered_twice_changes_nothing(backend, feed, mdb):
    view = View(mdb)
    pid, cid, eid = new_id(), new_id(), new_id()
    common = dict(entry_id=eid, partner_id=pid, couple_id=cid, kind="anxious_episode", day=DAY)
    rec = entry_event("journal.entry.recorded", at_time=_ago(10), intensity=5, **common)
    rev = entry_event(
        "journal.entry.revised", at_time=_ago(5), intensity=8, triggers=["work"], **common
    )
    ritual = entry_event(
        "journal.entry.recorded",
        entry_id=new_id(),
        partner_id=pid,
        couple_id=cid,
        kind="ritual",
        day=DAY,
        at_time=_ago(10),
        ritual="affection",
    )
    publish_events(rec, ritual)
    feed.wait(rec["id"], ritual["id"])
    publish_events(rev)
    feed.wait(rev["id"])
    before = (view.entry(eid), view.days_of(pid))
    assert before[0].measures == {"intensity": 8, "triggers": ["work"]} and not before[0].deleted
    assert before[1][DAY]["episodes"] == 1 and before[1][DAY]["intensities"] == [8]
    assert before[1][DAY]["rituals"] == ["affection"] and before[1][DAY]["entries"] == 2

    # Each again, the older first: the broker redelivers, a relay re-sends after a crash.
    publish_events(rec, rev, ritual, rec)
    feed.wait(rec["id"], times=3)
    feed.wait(rev["id"], ritual["id"], times=2)
    assert (view.entry(eid), view.days_of(pid)) == before
    assert view.processed(rec["id"], rev["id"], ritual["id"]) == 3


def test_a_revision_arriving_before_its_entry_wins(backend, feed, mdb):
    view = View(mdb)
    pid, eid = new_id(), new_id()
    common = dict(entry_id=eid, partner_id=pid, couple_id=None, kind="anxious_episode")
    rev = entry_event("journal.entry.revised", day=DAY, at_time=_ago(5), intensity=8, **common)
    rec = entry_event(
        "journal.entry.recorded",
        day=DAY - timedelta(days=1),
        at_time=_ago(10),
        intensity=3,
        **common,
    )
    publish_events(rev)
    feed.wait(rev["id"])
    publish_events(rec)
    feed.wait(rec["id"])
    row = view.entry(eid)
    assert row.local_date == DAY and row.measures == {"intensity": 8} and not row.deleted
    assert list(view.days_of(pid)) == [DAY], "the recorded (older) date never counts"
    assert view.day(pid, DAY)["intensities"] == [8]


def test_a_deletion_arriving_before_its_entry_leaves_it_deleted(backend, feed, mdb):
    view = View(mdb)
    pid, cid, eid = new_id(), new_id(), new_id()
    common = dict(entry_id=eid, partner_id=pid, couple_id=cid, kind="daily_reflection", day=DAY)
    gone = deleted_event(entry_id=eid, partner_id=pid, couple_id=cid, at_time=_ago(1))
    rec = entry_event("journal.entry.recorded", at_time=_ago(10), communication=4, **common)
    rev = entry_event("journal.entry.revised", at_time=_ago(5), communication=2, **common)
    publish_events(gone)
    feed.wait(gone["id"])
    publish_events(rec)
    feed.wait(rec["id"])
    publish_events(rev)
    feed.wait(rev["id"])
    assert view.entry(eid).deleted
    assert view.days_of(pid) == {}, "a deleted entry is no logged day"


def test_late_revisions_that_lower_a_count_lower_the_days_aggregate(backend, feed, mdb):
    view = View(mdb)
    pid, cid = new_id(), new_id()
    e1, e2, conflict, reflection = new_id(), new_id(), new_id(), new_id()
    t0 = _ago(60)

    def ev(type_, eid, kind, t, **m):
        return entry_event(
            type_, entry_id=eid, partner_id=pid, couple_id=cid, kind=kind, day=DAY, at_time=t, **m
        )

    repaired = datetime.combine(DAY, time(11), UTC)
    first = [
        ev("journal.entry.recorded", e1, "anxious_episode", t0, intensity=9),
        ev("journal.entry.recorded", e2, "anxious_episode", t0, intensity=7),
        ev("journal.entry.recorded", conflict, "conflict", t0, intensity=6, repaired_at=repaired),
        ev("journal.entry.recorded", reflection, "daily_reflection", t0, communication=4, mood=5),
    ]
    publish_events(*first)
    feed.wait(*(e["id"] for e in first))
    d = view.day(pid, DAY)
    assert (
        d["episodes"],
        d["intensities"],
        d["conflicts"],
        d["conflicts_repaired_24h"],
        d["communication"],
        d["entries"],
    ) == (2, [7, 9], 1, 1, [4], 4)

    # Weeks later the app syncs revisions: the repair removed, the rating removed, the intensity lowered.
    late = [
        ev("journal.entry.revised", conflict, "conflict", _ago(3), intensity=6),
        ev("journal.entry.revised", reflection, "daily_reflection", _ago(3), mood=5),
        ev("journal.entry.revised", e1, "anxious_episode", _ago(3), intensity=2),
    ]
    publish_events(*late)
    feed.wait(*(e["id"] for e in late))
    d = view.day(pid, DAY)
    assert (
        d["episodes"],
        d["intensities"],
        d["conflicts"],
        d["conflicts_repaired_24h"],
        d["communication"],
        d["entries"],
    ) == (2, [2, 7], 1, 0, [], 4)

    # An older revision that arrives after them changes nothing.
    stale = ev("journal.entry.revised", e1, "anxious_episode", _ago(30), intensity=10)
    publish_events(stale)
    feed.wait(stale["id"])
    assert view.day(pid, DAY) == d and view.entry(e1).measures == {"intensity": 2}

    # A deletion lowers the count of episodes and of logged entries.
    gone = deleted_event(entry_id=e2, partner_id=pid, couple_id=cid, at_time=_ago(1))
    publish_events(gone)
    feed.wait(gone["id"])
    d = view.day(pid, DAY)
    assert (d["episodes"], d["intensities"], d["entries"]) == (1, [2], 3)


def test_a_revision_moving_an_entry_to_another_date_updates_both_days(backend, journal, mdb):
    view = View(mdb)
    a = sign_up(journal)  # Europe/Paris: 09:00 at +01:00 is the same local date
    d0 = paris_today() - timedelta(days=20)
    d1 = d0 + timedelta(days=3)
    first = {"id": new_id(), "kind": "anxious_episode", "occurred_at": at(d0, 9), "intensity": 4}
    second = {"id": new_id(), "kind": "anxious_episode", "occurred_at": at(d0, 10), "intensity": 6}
    with Pipeline():
        post_all(journal, a["headers"], [first, second])
        wait_until(
            lambda: (view.day(a["id"], d0) or {}).get("episodes") == 2, what="two episodes on d0"
        )

        r = journal.patch(
            f"/v1/entries/{second['id']}", headers=a["headers"], json={"occurred_at": at(d1, 10)}
        )
        assert r.status_code == 200, r.get_json()
        wait_until(lambda: view.entry(second["id"]).local_date == d1, what="the entry moved to d1")
        assert (view.day(a["id"], d0)["episodes"], view.day(a["id"], d0)["intensities"]) == (1, [4])
        assert (view.day(a["id"], d1)["episodes"], view.day(a["id"], d1)["intensities"]) == (1, [6])

        # Moving the day's last entry away: that day is no longer a logged day.
        r = journal.patch(
            f"/v1/entries/{first['id']}",
            headers=a["headers"],
            json={"occurred_at": at(d1, 8), "intensity": 3},
        )
        assert r.status_code == 200, r.get_json()
        wait_until(
            lambda: view.entry(first["id"]).local_date == d1, what="the other entry moved to d1"
        )
        assert set(view.days_of(a["id"])) == {d1}
        assert (view.day(a["id"], d1)["episodes"], view.day(a["id"], d1)["intensities"]) == (
            2,
            [3, 6],
        )


def test_an_older_preference_arriving_late_does_not_undo_a_newer_one(backend, feed, mdb):
    view = View(mdb)
    pid = new_id()
    newer, older = (
        preference_event(pid, True, time=_ago(1)),
        preference_event(pid, False, time=_ago(5)),
    )
    publish_events(newer)
    feed.wait(newer["id"])
    publish_events(older)
    feed.wait(older["id"])
    assert view.partner(pid).share_milestones_with_partner is True


# --- erasure ---


def _wait_for_milestones(view, a_id, couple_id, timeout=60):
    def found():
        own = [m for m in view.milestones(owner_key=a_id) if m.type == "fewer_anxious_episodes"]
        ours = [m for m in view.milestones(owner_key=couple_id) if m.type == "rituals_kept"]
        return own and ours and (own, ours)

    return wait_until(found, timeout, "a's own milestone and the couple's")


def test_erasure_removes_the_partners_data_and_own_milestones_and_ends_the_couple(
    backend, journal, mdb
):
    """The couple ends with the erasure: its milestones go too (they were built from both partners'
    shared entries), and b leaves it, keeping every entry of theirs as their own, none shared any more."""
    view = View(mdb)
    client = milestones_client()
    a, b, couple_id = make_couple(journal)
    today = paris_today()
    kept = rituals(today, 10)
    b_entries = [
        {
            "id": new_id(),
            "kind": "anxious_episode",
            "occurred_at": at(today - timedelta(days=i + 1), 12),
            "intensity": 5,
        }
        for i in range(3)
    ]
    with Pipeline():
        post_all(journal, a["headers"], improving_history(today) + kept[:6])
        post_all(journal, b["headers"], kept[6:] + b_entries)
        own, ours = _wait_for_milestones(view, a["id"], couple_id)
        assert view.entries_of(a["id"]) and view.days_of(a["id"])
        b_ids = {e["id"] for e in kept[6:] + b_entries}
        wait_until(
            lambda: {e.id for e in view.entries_of(b["id"])} == b_ids,
            what="b's entries in the view",
        )
        b_days = view.days_of(b["id"])

        assert journal.delete("/v1/accounts/me", headers=a["headers"]).status_code == 204
        wait_until(
            lambda: view.partner(a["id"]).erased, what="the erasure to reach the milestones service"
        )

        assert view.entries_of(a["id"]) == []
        assert view.days_of(a["id"]) == {}
        assert (
            view.milestones(owner_key=a["id"]) == [] and view.milestones(partner_id=a["id"]) == []
        )
        assert ours and view.milestones(owner_key=couple_id) == []
        assert view.days_of(b["id"]) == b_days and {e.id for e in view.entries_of(b["id"])} == b_ids
        assert {e.visibility for e in view.entries_of(b["id"])} == {"private"}
        assert view.partner(b["id"]).couple_id is None

        # neither a's own milestones nor the couple's are seen by b any more.
        seen = {
            m["id"] for m in client.get("/v1/milestones", headers=b["headers"]).get_json()["items"]
        }
        assert not {m.id for m in own + ours} & seen
        for m in own + ours:
            assert client.get(f"/v1/milestones/{m.id}", headers=b["headers"]).status_code == 404

    # Events about a that arrive after the erasure (a late sync, a redelivery) are ignored.
    late_ritual = entry_event(
        "journal.entry.recorded",
        entry_id=new_id(),
        partner_id=a["id"],
        couple_id=couple_id,
        kind="ritual",
        day=today - timedelta(days=1),
        at_time=_ago(0),
        ritual="affection",
    )
    late_revision = entry_event(
        "journal.entry.revised",
        entry_id=kept[0]["id"],
        partner_id=a["id"],
        couple_id=couple_id,
        kind="ritual",
        day=today - timedelta(days=2),
        at_time=_ago(0),
        ritual="good_morning_text",
    )
    late_registered = events.make_event(
        "journal.partner.registered",
        source="/journal",
        subject=a["id"],
        data={
            "partner_id": a["id"],
            "email": a["email"],
            "display_name": "Ana",
            "timezone": "Europe/Paris",
        },
    )
    late_couple = events.make_event(
        "journal.couple.partnered",
        source="/journal",
        subject=couple_id,
        data={"couple_id": couple_id, "partner_ids": [a["id"], b["id"]]},
    )
    late = [
        late_ritual,
        late_revision,
        late_registered,
        late_couple,
        preference_event(a["id"], True),
    ]
    pipe = Pipeline()
    handled = Handled(pipe.consumer)
    with pipe:
        publish_events(*late)
        handled.wait(*(e["id"] for e in late))
        assert view.entries_of(a["id"]) == [] and view.days_of(a["id"]) == {}
        assert view.milestones(owner_key=a["id"]) == []
        row = view.partner(a["id"])
        assert (
            row.erased
            and row.couple_id is None
            and row.timezone is None
            and not row.share_milestones_with_partner
        )
        assert view.partner(b["id"]).couple_id is None, (
            "the late partnered event attaches no one to the couple"
        )
    # her token outlives her account, not what it opened: the milestones service refuses it
    for path in ("/v1/milestones", "/v1/progress?metric=anxious_episodes"):
        assert client.get(path, headers=a["headers"]).status_code == 401


# --- the achieved event ---


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _str(value) -> str | None:
    return None if value is None else str(value)


def test_each_milestone_is_announced_once_with_its_audience_and_no_note(backend, journal, mdb):
    view = View(mdb)
    a, b, couple_id = make_couple(journal)
    c, d, other_couple = make_couple(journal)
    today = paris_today()
    secret = f"secret-{new_id()}"
    noted = [dict(e, note=f"{secret} {i}") for i, e in enumerate(rituals(today, 10))]
    with Pipeline():
        # c shares their own milestones before any is achieved; a does not.
        publish_events(preference_event(c["id"], True))
        wait_until(
            lambda: view.partner(c["id"]) and view.partner(c["id"]).share_milestones_with_partner,
            what="c's preference",
        )
        post_all(journal, a["headers"], improving_history(today) + noted[:5])
        post_all(journal, b["headers"], noted[5:])
        post_all(journal, c["headers"], improving_history(today))
        _wait_for_milestones(view, a["id"], couple_id)
        wait_until(
            lambda: any(
                m.type == "fewer_anxious_episodes" for m in view.milestones(owner_key=c["id"])
            ),
            timeout=60,
            what="c's own milestone",
        )

        def all_published():
            with mdb.connect() as conn:
                return (
                    conn.execute(
                        select(func.count())
                        .select_from(outbox)
                        .where(outbox.c.published_at.is_(None))
                    ).scalar()
                    == 0
                )

        wait_until(all_published, what="the milestones outbox relayed")

    stored = {m.id: m for m in view.milestones()}
    # One celebration per look: of the levels of one milestone stored on the same look, the highest is announced.
    top: dict[tuple, object] = {}
    for m in stored.values():
        key = (
            m.owner_key,
            m.type,
            m.as_of,
            m.achieved_at,
        )  # one look stores its levels at one time
        if key not in top or m.level > top[key].level:
            top[key] = m
    with mdb.connect() as conn:
        rows = conn.execute(
            select(outbox).where(outbox.c.routing_key == "milestones.milestone.achieved")
        ).all()
    assert (
        len(rows) == len(top) < len(stored)
    )  # a's and c's fewer anxious episodes: three levels on one look
    announced: dict[str, dict] = {}
    for r in rows:
        assert secret not in r.body and "note" not in _keys(json.loads(r.body))
        ev = events.parse(r.body)  # valid against the catalog
        assert ev.type == "milestones.milestone.achieved" and ev.source == "/milestones"
        mid = str(ev.data["id"])
        assert mid not in announced, "announced twice"
        announced[mid] = ev.data
        m = stored[mid]
        assert ev.subject == (m.couple_id or m.partner_id)
        assert (ev.data["type"], ev.data["level"], ev.data["headline"]) == (
            m.type,
            m.level,
            m.headline,
        )
        assert (_str(ev.data["couple_id"]), _str(ev.data["partner_id"])) == (
            m.couple_id,
            m.partner_id,
        )
    assert set(announced) == {m.id for m in top.values()}

    def audience(m):
        return {str(p) for p in announced[m.id]["audience"]}

    for m in top.values():
        if m.owner_key == a["id"]:
            assert audience(m) == {a["id"]}, "a's own, not shared: a alone"
        elif m.owner_key == c["id"]:
            assert audience(m) == {c["id"], d["id"]}, "c's own, shared: both"
        elif m.owner_key == couple_id:
            assert audience(m) == {a["id"], b["id"]}, "the couple's: both"
        else:
            assert m.owner_key in (b["id"], d["id"], other_couple), m
    assert any(m.owner_key == couple_id for m in stored.values())
