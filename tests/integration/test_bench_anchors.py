"""The ingest benchmark's framework anchor (``bench/framework_app.py``) is a fair ceiling.

It stands for everything a ``POST /v1/entries`` pays apart from the entry's own
work, so it must check what the journal checks and answer as it answers: a
request the journal refuses is refused alike (status, the fields named), one
it takes is taken alike (201, the same fields in the answer). If it checked
less, the ceiling would flatter; if more, the journal's share would.
"""

from __future__ import annotations

import importlib

from sqlalchemy import create_engine, text

from tests.conftest import entry, sign_up


def _framework_client(backend, monkeypatch):
    url = f"sqlite:///{backend.var_dir / 'anchor.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE anchor_entries (id varchar(36) PRIMARY KEY, body text NOT NULL)")
        )
    engine.dispose()
    monkeypatch.setenv("ANCHOR_DATABASE_URL", url)
    import bench.framework_app

    module = importlib.reload(bench.framework_app)  # its engine and app are made at import
    module.app.testing = True
    return module.app.test_client(), module.engine


def _said(r) -> tuple[int, frozenset]:
    body = r.get_json(silent=True) or {}
    named = body.get("errors") or {} if r.status_code >= 400 else body
    return r.status_code, frozenset(named)


def test_the_framework_anchor_takes_and_refuses_what_the_journal_does(
    backend, journal, monkeypatch
):
    framework, engine = _framework_client(backend, monkeypatch)
    ana = sign_up(
        journal
    )  # the journal's token: the anchor shares its key (the same TANDEM_VAR_DIR)
    bad_token = {"Authorization": ana["headers"]["Authorization"][:-4] + "AAAA"}
    cases = {
        "an episode": (ana["headers"], entry()),
        "a reflection with its measures": (
            ana["headers"],
            entry("daily_reflection", mood=6, communication=4),
        ),
        "an intensity of 44": (ana["headers"], entry(intensity=44)),
        "no occurred_at": (
            ana["headers"],
            {k: v for k, v in entry().items() if k != "occurred_at"},
        ),
        "an unknown kind": (ana["headers"], entry("sulking")),
        "a measure of another kind": (ana["headers"], entry(mood=5)),
        "an offset-less time": (ana["headers"], entry(occurred_at="2026-11-20T07:30:00")),
        "no token": ({}, entry()),
        "a forged token": (bad_token, entry()),
    }
    answers = {
        name: (
            _said(journal.post("/v1/entries", headers=h, json=body)),
            _said(framework.post("/v1/entries", headers=h, json=body)),
        )
        for name, (h, body) in cases.items()
    }
    differ = {name: pair for name, pair in answers.items() if pair[0] != pair[1]}
    assert not differ, differ
    assert answers["an episode"][0] == (201, answers["an episode"][0][1])
    assert {"id", "kind", "author_id", "occurred_at", "intensity"} <= answers["an episode"][1][1]
    assert answers["an intensity of 44"][1] == (422, frozenset({"intensity"}))
    not_json = framework.post(
        "/v1/entries",
        headers=ana["headers"],
        data="kind=anxious_episode",
        content_type="application/x-www-form-urlencoded",
    )
    assert not_json.status_code == 415
    with engine.connect() as conn:  # what it took went in: two bodies, one a row
        assert conn.execute(text("SELECT count(*) FROM anchor_entries")).scalar() == 2
    engine.dispose()
