"""``POST /v1/entries/batch``: an offline phone's sync in one request, on both backends.

Each entry of a batch is answered as ``POST /v1/entries`` would answer it alone, in the
request's order; the entries stored and their events commit together or not at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, select

from services.journal.tables import entries, outbox
from shared import events
from tests.conftest import NOTE_MARKER, entry, make_couple, sign_up

PROBLEM = "application/problem+json"


def batch(client, who: dict, bodies, status: int = 200):
    r = client.post("/v1/entries/batch", headers=who["headers"], json={"entries": bodies})
    assert r.status_code == status, r.get_data(as_text=True)[:500]
    return r.get_json()


def count(db, table, *where) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar()


def recorded_events(db) -> list[events.Event]:
    with db.connect() as conn:
        bodies = conn.execute(
            select(outbox.c.body)
            .where(outbox.c.routing_key == "journal.entry.recorded")
            .order_by(outbox.c.seq)
        ).scalars()
        return [events.parse(b) for b in bodies]


def statuses(answer: dict) -> list[int]:
    return [r["status"] for r in answer["results"]]


@pytest.fixture
def db(backend):
    engine = backend.engine("journal")
    yield engine
    engine.dispose()


class TestOneRequestManyEntries:
    def test_a_mixed_batch_is_answered_entry_by_entry_in_order(self, journal, db):
        ana, ben, couple_id = make_couple(journal)
        stored = entry()
        assert journal.post("/v1/entries", headers=ana["headers"], json=stored).status_code == 201
        bens = entry(note=f"{NOTE_MARKER}: Ben's own words")
        assert journal.post("/v1/entries", headers=ben["headers"], json=bens).status_code == 201
        new = entry("ritual", ritual="affection", visibility="shared")
        again = dict(new)  # the same id and body twice in one batch: stored once
        taken = dict(bens, note="Ana's words")  # Ben's id: another entry
        invalid = entry(intensity=11)  # with a note: never echoed
        nul = entry(note="a NUL \x00 here")
        unknown = entry(author_id=ben["id"])  # the author is the token's account, never a field
        not_an_id = entry(id="not-a-uuid")
        answer = batch(journal, ana, [new, stored, taken, invalid, again, nul, unknown, not_an_id])
        assert statuses(answer) == [201, 200, 409, 422, 200, 400, 422, 422]
        results = answer["results"]
        assert [r["id"] for r in results] == [
            new["id"],
            stored["id"],
            taken["id"],
            invalid["id"],
            new["id"],
            nul["id"],
            unknown["id"],
            None,
        ]
        assert results[0]["entry"]["author_id"] == ana["id"]
        assert results[0]["entry"]["visibility"] == "shared"
        assert results[4]["entry"] == results[0]["entry"]
        assert results[1]["entry"]["note"] == stored["note"]  # a replay answers with the entry
        for r, field in zip(results[2:], ("id", "intensity", None, "note", "author_id", "id")):
            if field is None:
                continue
            problem = r["problem"]
            assert "entry" not in r and problem["status"] == r["status"], r
            assert problem["title"] and problem["type"] and field in problem["errors"], r
        problems = json.dumps([r["problem"] for r in results if "problem" in r])
        assert NOTE_MARKER not in problems and "NUL \x00" not in problems
        assert "Ben's own words" not in json.dumps(answer) and "Ana's words" not in problems
        assert count(db, entries) == 3
        recorded = recorded_events(db)[2:]  # after the two single entries
        assert [str(e.data["entry_id"]) for e in recorded] == [new["id"]]
        (ev,) = recorded
        assert str(ev.data["couple_id"]) == couple_id and ev.subject == couple_id
        assert ev.data["batch"]["size"] == 1
        assert "note" not in ev.raw["data"]

    def test_every_entry_stored_has_exactly_one_event_naming_its_batch(self, journal, db):
        ana = sign_up(journal)
        bodies = [entry(occurred_at=f"2026-11-{d:02d}T07:30:00+01:00") for d in range(1, 21)]
        answer = batch(journal, ana, bodies + [entry(intensity=-1)])
        assert statuses(answer) == [201] * 20 + [422]
        recorded = recorded_events(db)
        assert sorted(str(e.data["entry_id"]) for e in recorded) == sorted(b["id"] for b in bodies)
        assert {(str(e.data["batch"]["id"]), e.data["batch"]["size"]) for e in recorded} == {
            (str(recorded[0].data["batch"]["id"]), 20)
        }
        assert all(NOTE_MARKER not in json.dumps(e.raw) for e in recorded)
        # the entries are the same as if posted one by one
        one = journal.get(f"/v1/entries/{bodies[3]['id']}", headers=ana["headers"]).get_json()
        assert one == answer["results"][3]["entry"]
        assert one["local_date"] == "2026-11-04"

    def test_a_batch_sent_again_is_every_entry_again_and_no_new_event(self, journal, db):
        ana = sign_up(journal)
        bodies = [entry() for _ in range(5)]
        first = batch(journal, ana, bodies)
        again = batch(journal, ana, bodies)
        assert statuses(first) == [201] * 5 and statuses(again) == [200] * 5
        assert [r["entry"] for r in again["results"]] == [r["entry"] for r in first["results"]]
        assert count(db, entries) == 5
        assert len(recorded_events(db)) == 5
        changed = [dict(b, intensity=6) for b in bodies]
        assert statuses(batch(journal, ana, changed)) == [409] * 5

    def test_500_entries_are_taken_and_the_501st_refuses_the_whole_body(self, journal, db):
        ana = sign_up(journal)
        bodies = [entry(note=None) for _ in range(501)]
        r = journal.post("/v1/entries/batch", headers=ana["headers"], json={"entries": bodies})
        assert r.status_code == 422 and r.mimetype == PROBLEM
        assert "entries" in r.get_json()["errors"]
        assert count(db, entries) == 0 and count(db, outbox) == 1  # the sign-up's event alone
        assert statuses(batch(journal, ana, bodies[:500])) == [201] * 500
        assert count(db, entries) == 500 and len(recorded_events(db)) == 500

    def test_a_body_that_is_not_a_list_of_entry_objects_is_one_problem(self, journal, db):
        ana = sign_up(journal)
        ok = entry()
        for body, status, field in (
            ({}, 422, "entries"),
            ({"entries": {"0": ok}}, 422, "entries"),
            ({"entries": [ok, 1]}, 422, "entries"),
            ({"entries": [ok, [ok]]}, 422, "entries"),
            ({"entries": "all of them"}, 422, "entries"),
            ({"entries": None}, 422, "entries"),
            ({"entries": [ok], "more": True}, 422, "more"),
            ([ok], 422, None),
        ):
            r = journal.post("/v1/entries/batch", headers=ana["headers"], json=body)
            assert r.status_code == status and r.mimetype == PROBLEM, (body, r.get_json())
            if field:
                assert field in r.get_json()["errors"], (body, r.get_json())
        assert statuses(batch(journal, ana, [])) == []
        assert count(db, entries) == 0

    def test_a_body_over_5_mib_is_413_and_a_long_batch_under_it_is_taken(self, journal, db):
        ana = sign_up(journal)
        over = [entry(note="é" * 10_000) for _ in range(100)]  # "\u00e9" in JSON: 6 MB
        r = journal.post("/v1/entries/batch", headers=ana["headers"], json={"entries": over})
        assert r.status_code == 413 and r.mimetype == PROBLEM
        bodies = [entry(note="x" * 10_000) for _ in range(400)]  # 4.1 MB
        assert statuses(batch(journal, ana, bodies)) == [201] * 400
        assert count(db, entries) == 400


class TestPrivacy:
    def test_a_batch_is_recorded_as_the_tokens_account_and_never_reveals_anothers(
        self, journal, db
    ):
        ana, ben, _ = make_couple(journal)
        stranger = sign_up(journal, "Cleo")
        anas = [entry(note="Ana's private thoughts"), entry(visibility="shared")]
        batch(journal, ana, anas)
        for who in (ben, stranger):
            answer = batch(journal, who, anas)
            assert statuses(answer) == [409, 409]
            assert "private thoughts" not in json.dumps(answer)
            assert all("entry" not in r for r in answer["results"])
        mine = entry()
        assert statuses(batch(journal, ben, [mine])) == [201]
        owner = journal.get(f"/v1/entries/{mine['id']}", headers=ben["headers"]).get_json()
        assert owner["author_id"] == ben["id"]
        assert count(db, entries) == 3

    def test_an_erased_accounts_token_is_refused_and_nothing_is_stored(self, journal, db):
        ana, ben, _ = make_couple(journal)
        bens = entry()
        batch(journal, ben, [bens])
        assert journal.delete("/v1/accounts/me", headers=ana["headers"]).status_code == 204
        for bodies in ([entry()], [bens], [entry(intensity=99)], []):
            r = journal.post("/v1/entries/batch", headers=ana["headers"], json={"entries": bodies})
            assert r.status_code == 401 and r.mimetype == PROBLEM, r.get_json()
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert count(db, entries) == 1

    def test_without_a_token_nothing_is_read(self, journal):
        r = journal.post("/v1/entries/batch", json={"entries": [entry()]})
        assert r.status_code == 401 and r.mimetype == PROBLEM


# A journal process that dies (SIGKILL) after the batch's entries and events are written, before its
# commit: what it wrote must not survive.
CRASH_BEFORE_COMMIT = textwrap.dedent("""
    import json, os, signal, sys
    from services.journal import use_cases
    from services.journal.app import create_app
    real = use_cases.emit_many

    def written_then_killed(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    use_cases.emit_many = written_then_killed
    app = create_app()
    token, bodies = json.loads(sys.stdin.read())
    app.test_client().post(
        "/v1/entries/batch", headers={"Authorization": f"Bearer {token}"}, json={"entries": bodies}
    )
""")


class TestAllOrNothing:
    def test_a_crash_between_the_batchs_insert_and_its_commit_leaves_nothing(self, journal, db):
        ana = sign_up(journal)
        bodies = [entry() for _ in range(50)]
        token = ana["headers"]["Authorization"].removeprefix("Bearer ")
        proc = subprocess.run(
            [sys.executable, "-c", CRASH_BEFORE_COMMIT],
            input=json.dumps([token, bodies]),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == -9, proc.stderr[-2000:]
        assert count(db, entries) == 0
        assert recorded_events(db) == []
        # the phone, never answered, sends the batch again: all of it is stored, once
        assert statuses(batch(journal, ana, bodies)) == [201] * 50
        assert count(db, entries) == 50 and len(recorded_events(db)) == 50

    def test_an_id_taken_by_a_request_that_committed_first_is_answered_against_it(
        self, rabbit_backend, rabbit_journal, monkeypatch
    ):
        """The batch read no entry with the id, then another request stored it before the
        batch's insert: the batch answers as a replay or a 409, and stores the rest. (PostgreSQL:
        SQLite serializes writers, so no other request commits inside a batch.)"""
        from services.journal import use_cases

        journal, db = rabbit_journal, rabbit_backend.engine("journal")
        ana, ben, _ = make_couple(journal)
        raced, mine, theirs = entry(), entry(), entry()
        real = use_cases.insert_rows

        def others_first(s, table, rows, key):
            for who, body in ((ana, raced), (ben, theirs)):
                r = journal.post("/v1/entries", headers=who["headers"], json=body)
                assert r.status_code == 201, r.get_json()
            return real(s, table, rows, key=key)

        monkeypatch.setattr(use_cases, "insert_rows", others_first)
        answer = batch(journal, ana, [raced, mine, theirs])
        assert statuses(answer) == [200, 201, 409]
        assert count(db, entries) == 3
        assert sorted(str(e.data["entry_id"]) for e in recorded_events(db)) == sorted(
            b["id"] for b in (raced, mine, theirs)
        )


def test_the_batch_is_in_the_openapi_document(journal):
    doc = journal.get("/openapi.json").get_json()
    op = doc["paths"]["/v1/entries/batch"]["post"]
    assert {"200", "401", "413", "422"} <= set(op["responses"])
