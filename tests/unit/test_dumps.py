"""Compiled dumps (``shared.dumps``) give what marshmallow's ``dump`` gives, and the events built
with them are still refused when they do not fit the catalog."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import marshmallow as ma
import pytest

from services.journal import schemas
from shared import dumps, events
from shared.entry_kinds import KINDS

AT = datetime(2026, 11, 20, 7, 30, tzinfo=timezone(timedelta(hours=1)))
MEASURES = {
    "intensity": 7,
    "duration_minutes": 20,
    "triggers": ["work", "late_reply"],
    "soothing": ["walk"],
    "mood": 6,
    "anxiety": 3,
    "communication": 4,
    "connection": 5,
    "understanding": 2,
    "felt_heard": 4,
    "accountability": True,
    "ritual": "good_morning_text",
    "activity": "hobby",
    "repaired_at": AT + timedelta(hours=2),
}


def recorded(kind: str, **more) -> dict:
    data = {
        "entry_id": str(uuid.uuid4()),
        "couple_id": None,
        "partner_id": str(uuid.uuid4()),
        "kind": kind,
        "occurred_at": AT,
        "local_date": date(2026, 11, 20),
        "visibility": "shared",
    }
    data.update({k: MEASURES[k] for k in KINDS[kind][0]})
    return data | more


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_entry_event_is_dumped_as_marshmallow_dumps_it(kind):
    schema = events.CATALOG["journal.entry.recorded"]()
    for data in (
        recorded(kind),
        recorded(kind, couple_id=str(uuid.uuid4()), batch={"id": str(uuid.uuid4()), "size": 3}),
        recorded(kind, note="never in an event", unknown=1),
    ):
        assert dumps.compiled(schema)(data) == schema.dump(data)


def entry_view(kind: str) -> dict:
    now = datetime.now(UTC)
    return (
        {
            "id": str(uuid.uuid4()),
            "kind": kind,
            "author_id": str(uuid.uuid4()),
            "occurred_at": AT.isoformat(),
            "local_date": date(2026, 11, 20),
            "visibility": "private",
            "note": None,
            "created_at": now,
            "updated_at": now,
        }
        | {k: MEASURES[k] for k in KINDS[kind][0]}
        | {"repaired_at": AT.isoformat()}
    )


def test_a_batch_answer_is_dumped_as_marshmallow_dumps_it():
    problem = {
        "type": "about:blank",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "The request has invalid fields: intensity",
        "errors": {
            "intensity": ["Must be greater than or equal to 0 and less than or equal to 10."]
        },
    }
    answer = {
        "results": [
            {"id": (v := entry_view(kind))["id"], "status": 201, "entry": v}
            for kind in sorted(KINDS)
        ]
        + [
            {"id": None, "status": 422, "problem": problem},
            {"id": str(uuid.uuid4()), "status": 409, "problem": dict(problem, status=409)},
        ]
    }
    schema = schemas.BatchOut()
    assert dumps.compiled(schema)(answer) == schema.dump(answer)
    listed = schemas.EntryPage()
    page = {"items": [entry_view("conflict")], "next_cursor": None}
    assert dumps.compiled(listed)(page) == listed.dump(page)


def test_what_it_does_not_cover_is_dumped_by_marshmallow():
    class Hooked(ma.Schema):
        a = ma.fields.String()

        @ma.post_dump
        def _upper(self, data, **_):
            return {k: v.upper() for k, v in data.items()}

    class Defaulted(ma.Schema):
        a = ma.fields.String(dump_default="x")

    class Renamed(ma.Schema):
        a = ma.fields.String(data_key="b", attribute="c")

    for schema, obj in ((Hooked(), {"a": "y"}), (Defaulted(), {}), (Renamed(), {"c": "z"})):
        assert dumps.compiled(schema)(obj) == schema.dump(obj)
    many = Renamed(many=True)
    assert dumps.compiled(many)([{"c": "1"}, {"c": "2"}]) == many.dump([{"c": "1"}, {"c": "2"}])


def make(data: dict, *, from_validated: bool) -> dict:
    return events.make_event(
        "journal.entry.recorded",
        source="/journal",
        subject=data["partner_id"],
        data=data,
        from_validated=from_validated,
    )


@pytest.mark.parametrize("from_validated", [False, True])
def test_an_event_of_a_shape_the_catalog_refuses_is_never_made(from_validated):
    good = recorded("anxious_episode")
    assert events.parse(events.encode(make(good, from_validated=from_validated))).data
    missing = {k: v for k, v in good.items() if k != "local_date"}
    naive = dict(good, occurred_at=AT.replace(tzinfo=None))
    of_another_type = dict(good, visibility=1)
    for bad in (missing, dict(good, entry_id=None), naive, of_another_type):
        with pytest.raises(ValueError, match="does not fit the catalog"):
            make(bad, from_validated=from_validated)
    with pytest.raises(ValueError, match="does not fit the catalog"):  # one of a batch
        events.make_events(
            "journal.entry.recorded",
            source="/journal",
            items=[(good["partner_id"], good), (good["partner_id"], missing)],
            from_validated=from_validated,
        )


def test_without_from_validated_every_value_is_validated():
    good = recorded("anxious_episode")
    make(good, from_validated=True)  # its shape is known now
    with pytest.raises(ValueError, match="does not fit the catalog"):
        make(dict(good, intensity=11), from_validated=False)
    with pytest.raises(ValueError, match="does not fit the catalog"):
        events.make_events(
            "journal.entry.recorded",
            source="/journal",
            items=[(good["partner_id"], good), (good["partner_id"], dict(good, kind="gossip"))],
        )
