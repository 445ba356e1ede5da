"""`tandem republish --couple ID`: a couple's history published again through
the journal's outbox rebuilds a damaged milestones view exactly, and changes
nothing where the view is whole: no milestone twice, no celebration twice."""

from __future__ import annotations

import json
from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import delete, func, select

from services.cli import main as tandem
from services.journal.tables import outbox as journal_outbox
from services.milestones.tables import days, milestones, processed_events
from services.milestones.tables import entries as view_entries
from services.notify.tables import notifications
from tests.conftest import make_couple
from tests.support import Pipeline, at, paris_today, post_all, rituals, wait_until


def _view(engine, partner_ids) -> dict:
    """The couple's part of the milestones view: day aggregates, entries, milestones."""
    with engine.connect() as c:
        day_rows = sorted(
            (
                r.partner_id,
                r.local_date,
                r.entries,
                r.episodes,
                json.dumps(r.detail, sort_keys=True),
                r.ritual_count,
                r.weekly_check_ins,
            )
            for r in c.execute(select(days).where(days.c.partner_id.in_(partner_ids)))
        )
        entry_rows = sorted(
            (r.id, r.kind, r.local_date, json.dumps(r.measures, sort_keys=True))
            for r in c.execute(
                select(view_entries).where(
                    view_entries.c.partner_id.in_(partner_ids), view_entries.c.deleted.is_(False)
                )
            )
        )
        reached = sorted((r.id, r.type, r.level) for r in c.execute(select(milestones)))
    return {"days": day_rows, "entries": entry_rows, "milestones": reached}


def _unpublished(engine) -> int:
    with engine.connect() as c:
        return c.execute(
            select(func.count())
            .select_from(journal_outbox)
            .where(journal_outbox.c.published_at.is_(None))
        ).scalar()


def _event_ids(engine, column) -> set[str]:
    with engine.connect() as c:
        return set(c.execute(select(column)).scalars())


def _count(engine, table) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(table)).scalar()


def test_republishing_a_couple_rebuilds_a_damaged_view_and_changes_nothing_else(backend, journal):
    a, b, couple_id = make_couple(journal)
    today = paris_today()
    post_all(journal, a["headers"], rituals(today, 6))
    post_all(
        journal, b["headers"], rituals(today, 5, tag="affection")
    )  # the 10th and 11th: a milestone
    episode = {
        "id": "00000000-0000-4000-8000-000000000001",
        "kind": "anxious_episode",
        "intensity": 7,
        "occurred_at": at(today - timedelta(days=2), 11),
    }
    gone = {
        "id": "00000000-0000-4000-8000-000000000002",
        "kind": "anxious_episode",
        "intensity": 3,
        "occurred_at": at(today - timedelta(days=2), 15),
    }
    post_all(journal, a["headers"], [episode, gone])
    assert (
        journal.patch(
            f"/v1/entries/{episode['id']}", headers=a["headers"], json={"intensity": 9}
        ).status_code
        == 200
    )
    assert journal.delete(f"/v1/entries/{gone['id']}", headers=a["headers"]).status_code == 204
    pids = [a["id"], b["id"]]
    view_db, notify_db, journal_db = (
        backend.engine("milestones"),
        backend.engine("notify"),
        backend.engine("journal"),
    )

    with Pipeline():
        wait_until(
            lambda: _unpublished(journal_db) == 0 and _count(notify_db, notifications) == 2,
            what="the history applied and its milestone in both inboxes",
        )
        wait_until(lambda: len(_view(view_db, pids)["entries"]) == 12, what="the view built")
        whole = _view(view_db, pids)
        assert [(t, lv) for _, t, lv in whole["milestones"]] == [("rituals_kept", 1)]

        # Damaged: the couple's entries and day aggregates lost from the view.
        with view_db.begin() as c:
            c.execute(delete(view_entries).where(view_entries.c.partner_id.in_(pids)))
            c.execute(delete(days).where(days.c.partner_id.in_(pids)))
        result = CliRunner().invoke(tandem, ["republish", "--couple", couple_id])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("15 events queued")  # 2 partners, the couple, 12 entries
        wait_until(
            lambda: _unpublished(journal_db) == 0 and _view(view_db, pids) == whole,
            timeout=30,
            what="the view rebuilt as it was",
        )

        # Whole: published again, nothing changes, nobody is celebrated twice.
        assert CliRunner().invoke(tandem, ["republish", "--couple", couple_id]).exit_code == 0
        wait_until(lambda: _unpublished(journal_db) == 0, what="the second republish published")
        wait_until(
            lambda: (
                _event_ids(journal_db, journal_outbox.c.event_id)
                <= _event_ids(view_db, processed_events.c.event_id)
            ),
            timeout=30,
            what="every event applied by the milestones service",
        )
    assert _view(view_db, pids) == whole
    assert _count(notify_db, notifications) == 2


def test_republishing_a_couple_that_does_not_exist_says_so(backend):
    result = CliRunner().invoke(
        tandem, ["republish", "--couple", "00000000-0000-4000-8000-00000000dead"]
    )
    assert result.exit_code == 1 and "no couple" in result.output
