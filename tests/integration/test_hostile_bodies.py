"""Oversized, malformed and hostile bodies on every write operation of every
service (from its own OpenAPI document, so a new one is covered by itself):
each gets a clear 4xx problem (RFC 9457), never a 500, and nothing is stored."""

from __future__ import annotations

import importlib
import json
import re

import pytest
from sqlalchemy import func, inspect, select, table

from services import SERVICES
from tests.conftest import make_couple, new_id

PROBLEM = "application/problem+json"

HOSTILE = {
    "over 64 KiB": (json.dumps({"padding": "x" * (70 * 1024)}), "application/json", {413}),
    "over 5 MiB": (json.dumps({"padding": "x" * (5 * 1024 * 1024)}), "application/json", {413}),
    "nested 20,000 deep": ("[" * 20000 + "]" * 20000, "application/json", {400}),
    "object nested 10,000 deep": ('{"a":' * 10000 + "1" + "}" * 10000, "application/json", {400}),
    "an array of 20,000 items": (json.dumps([0] * 20000), "application/json", {400, 422}),
    "an object with 5,000 keys": (
        json.dumps({f"k{i}": 0 for i in range(5000)}),
        "application/json",
        {422},
    ),
    "not JSON": ("{'this': is not json", "application/json", {400, 422}),
    "truncated JSON": ('{"id": "', "application/json", {400, 422}),
    "a bare string": ('"hello"', "application/json", {400, 422}),
    "null": ("null", "application/json", {400, 422}),
    "binary": (bytes(range(256)) * 4, "application/json", {400, 422}),
    "form data": ("a=1&b=2", "application/x-www-form-urlencoded", {415}),
    "no content type": ('{"a": 1}', "", {415}),
    "wrong types everywhere": (
        json.dumps(
            {
                k: [{"$ne": None}]
                for k in (
                    "id",
                    "kind",
                    "occurred_at",
                    "email",
                    "password",
                    "timezone",
                    "display_name",
                    "invite_code",
                    "type",
                    "url",
                    "address",
                    "channels",
                    "quiet_hours",
                    "share_milestones_with_partner",
                    "visibility",
                )
            }
        ),
        "application/json",
        {422},
    ),
    "far-future and impossible times": (
        json.dumps(
            {
                "id": "00000000-0000-0000-0000-000000000000",
                "kind": "anxious_episode",
                "intensity": 5,
                "occurred_at": "9999-12-31T23:59:59+14:00",
                "quiet_hours": {"start": "24:61", "end": "-1:00"},
            }
        ),
        "application/json",
        {422},
    ),
    "a NUL character in every field": (
        json.dumps(
            {
                k: "a\u0000b"
                for k in (
                    "id",
                    "kind",
                    "occurred_at",
                    "email",
                    "password",
                    "timezone",
                    "display_name",
                    "invite_code",
                    "type",
                    "note",
                    "url",
                    "address",
                    "ritual",
                    "activity",
                )
            }
            | {"triggers": ["ok", "a\u0000b"]}
        ),
        "application/json",
        {400},
    ),
    "an invalid time zone": (
        json.dumps(
            {
                "email": "x@example.com",
                "password": "correct horse battery",
                "display_name": "X",
                "timezone": "Mars/Olympus_Mons",
            }
        ),
        "application/json",
        {409, 422},
    ),
}


# Operations that take a body larger than 64 KiB (up to 5 MiB): a sync of many entries.
LARGER_BODIES = {"/v1/entries/batch"}


def _writes(app) -> list[tuple[str, str]]:
    spec = app.test_client().get("/openapi.json").get_json()
    out = []
    for path, ops in spec["paths"].items():
        for method in ops:
            if method in ("post", "patch", "put"):
                out.append((method, re.sub(r"\{[^}]+\}", new_id(), path)))
    return out


def _rows(backend) -> dict:
    counts = {}
    for service in SERVICES:
        engine = backend.engine(service)
        with engine.connect() as c:
            for name in inspect(c).get_table_names():
                if name not in ("alembic_version", "processed_events") and not name.startswith(
                    "test_"
                ):
                    counts[(service, name)] = c.execute(
                        select(func.count()).select_from(table(name))
                    ).scalar()
        engine.dispose()
    return counts


def test_the_milestones_service_takes_no_body(backend):
    """It is read-only over HTTP (its data comes from events); a write added to it must be added above."""
    from services.milestones.app import create_app

    assert _writes(create_app()) == []


@pytest.mark.parametrize("service", ["journal", "notify"])
def test_hostile_bodies_get_a_clear_4xx_and_store_nothing(backend, service):
    from services.journal.app import create_app as journal_app

    a, _, _ = make_couple(journal_app().test_client())
    app = importlib.import_module(f"services.{service}.app").create_app()
    client = app.test_client()
    writes = _writes(app)
    assert writes, f"{service} documents no write operation"
    before = _rows(backend)
    wrong = []
    for method, path in writes:
        for name, (body, content_type, expected) in HOSTILE.items():
            if name == "over 64 KiB" and path in LARGER_BODIES:
                expected = {422}  # under its limit: read, and refused for what it holds
            r = getattr(client, method)(
                path, headers=a["headers"], data=body, content_type=content_type
            )
            problem = r.get_json(silent=True) or {}
            if (
                r.status_code >= 500
                or r.mimetype != PROBLEM
                or problem.get("status") != r.status_code
            ):
                wrong.append(f"{method.upper()} {path} with {name}: {r.status_code} {r.mimetype}")
            elif r.status_code not in expected | {
                404,
                409,
            }:  # an id in the path that is nobody's: 404
                wrong.append(
                    f"{method.upper()} {path} with {name}: {r.status_code}, expected one of {expected}"
                )
            elif r.status_code in (400, 422) and "NUL" in name and not problem.get("errors"):
                wrong.append(
                    f"{method.upper()} {path} with {name}: a {r.status_code} that names no field"
                )
            elif r.status_code == 422 and not problem.get("errors"):
                wrong.append(f"{method.upper()} {path} with {name}: a 422 that names no field")
    assert not wrong, "\n".join(wrong)
    assert _rows(backend) == before


def test_a_nul_character_is_named_as_the_fields_error_never_a_500(backend):
    """PostgreSQL stores no NUL in text: a login, a sign-up or a query with one is
    a 400 naming the field (found by schemathesis: a 500 from the database)."""
    from services.journal.app import create_app

    client = create_app().test_client()
    a, _, _ = make_couple(client)
    before = _rows(backend)
    r = client.post(
        "/v1/tokens", json={"email": "a\u0000@example.com", "password": "correct horse battery"}
    )
    assert (r.status_code, r.mimetype, list(r.get_json()["errors"])) == (400, PROBLEM, ["email"])
    r = client.post(
        "/v1/accounts",
        json={
            "email": "x@example.com",
            "password": "correct horse battery",
            "display_name": "Ana\u0000",
            "timezone": "Europe/Paris",
        },
    )
    assert (r.status_code, list(r.get_json()["errors"])) == (400, ["display_name"])
    r = client.get("/v1/entries?kind=ritual%00", headers=a["headers"])
    assert (r.status_code, list(r.get_json()["errors"])) == (400, ["kind"])
    assert (
        client.post(
            "/v1/tokens", json={"email": a["email"], "password": "correct horse battery"}
        ).status_code
        == 201
    )
    logged_in = {
        ("journal", "sessions"): 1,
        ("journal", "refresh_tokens"): 1,
    }  # the good login's session, alone
    assert _rows(backend) == {k: n + logged_in.get(k, 0) for k, n in before.items()}
