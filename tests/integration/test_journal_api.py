"""The journal service's HTTP API, as the public contract fixes it.

Every test runs on both backends (SQLite + embedded broker, PostgreSQL + RabbitMQ)
through the in-process Flask test client; test names read as the specification.
Events are checked where they are born: the journal's transactional outbox.

Tables of bad inputs are checked in one test each (``each_case``), which reports
every failing case at once: the suite stays fast on two backends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event, func, select

from services.journal.tables import accounts, couples, entries, outbox
from shared import events
from shared.auth import AUDIENCE, ISSUER
from shared.entry_kinds import KINDS
from tests.conftest import entry, make_couple, new_id, sign_up

PASSWORD = "correct horse battery"  # what conftest.sign_up signs up with
PROBLEM = "application/problem+json"


# --- helpers ---------------------------------------------------------------


def assert_problem(r, status: int, *fields: str, exact: bool = False) -> dict:
    """An RFC 9457 problem with this status, naming (at least, or exactly) these fields."""
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:500])
    assert r.mimetype == PROBLEM, r.mimetype
    body = r.get_json()
    assert body["status"] == status
    assert body["title"] and body["type"]
    if fields:
        named = set(body.get("errors") or {})
        if exact:
            assert named == set(fields), body
        else:
            assert set(fields) <= named, body
    return body


def assert_unauthorized(r) -> None:
    assert_problem(r, 401)
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), dict(r.headers)


def each_case(cases, check) -> None:
    """Run check(*case) for every case; fail once, listing every case that failed."""
    failures = []
    for case in cases:
        try:
            check(*case)
        except AssertionError as e:
            failures.append(f"{case!r}: {e}")
    assert not failures, "\n".join(failures)


def record(client, who: dict, body: dict, status: int = 201) -> dict:
    r = client.post("/v1/entries", headers=who["headers"], json=body)
    assert r.status_code == status, r.get_json()
    return r.get_json()


def listing(client, who: dict, **query) -> dict:
    r = client.get("/v1/entries", headers=who["headers"], query_string=query)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def listed_ids(client, who: dict, **query) -> list[str]:
    return [e["id"] for e in listing(client, who, limit=200, **query)["items"]]


def at(delta: timedelta, offset: timedelta = timedelta(hours=2)) -> str:
    """Now + delta, as RFC 3339 with the given offset."""
    return (datetime.now(UTC) + delta).astimezone(timezone(offset)).isoformat(timespec="seconds")


def instant(s: str) -> datetime:
    return datetime.fromisoformat(s)


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.fixture
def db(backend):
    """The journal's database engine, for looking behind the API."""
    engine = backend.engine("journal")
    yield engine
    engine.dispose()


def count(db, table, *where) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar()


def outbox_bodies(db) -> list[str]:
    with db.connect() as conn:
        return list(conn.execute(select(outbox.c.body).order_by(outbox.c.seq)).scalars())


def outbox_events(db, type_: str | None = None) -> list[events.Event]:
    parsed = [events.parse(body) for body in outbox_bodies(db)]
    return [e for e in parsed if type_ is None or e.type == type_]


# The contract's entry kinds, each with a complete, valid set of its fields.
CONTRACT_KINDS = {
    "anxious_episode": {
        "intensity": 7,
        "duration_minutes": 25,
        "triggers": ["silence", "late_reply"],
        "soothing": ["breathing", "reached_out"],
    },
    "daily_reflection": {"mood": 6, "anxiety": 4, "communication": 3},
    "check_in": {"connection": 4, "understanding": 5},
    "healing_conversation": {"felt_heard": 4, "accountability": True},
    "ritual": {"ritual": "good_morning_text"},
    "independence_activity": {"activity": "hobby"},
    "conflict": {"intensity": 6, "repaired_at": "2026-11-20T09:00:00+01:00"},
}


def valid_entry(kind: str, **extra) -> dict:
    body = entry(kind)
    body.pop("intensity", None)
    body.update(CONTRACT_KINDS[kind])
    body.update(extra)
    return body


# --- accounts: sign-up -----------------------------------------------------


def _account(**over) -> dict:
    body = {
        "email": f"x-{new_id()[:8]}@example.com",
        "password": PASSWORD,
        "display_name": "Ana",
        "timezone": "Europe/Paris",
    }
    body.update(over)
    return body


class TestSignUp:
    def test_sign_up_returns_201_with_the_account_and_never_the_password(self, journal):
        r = journal.post("/v1/accounts", json=_account(email="Ana.Smith@Example.COM"))
        assert r.status_code == 201, r.get_json()
        body = r.get_json()
        uuid.UUID(body["id"])
        assert body["email"] == "ana.smith@example.com"
        assert body["display_name"] == "Ana"
        assert body["timezone"] == "Europe/Paris"
        assert body["couple_id"] is None
        assert instant(body["created_at"]).tzinfo is not None
        assert not {"password", "password_hash"} & set(body)
        assert PASSWORD not in r.get_data(as_text=True)

    def test_sign_up_publishes_partner_registered(self, journal, db):
        ana = sign_up(journal)
        (ev,) = outbox_events(db, "journal.partner.registered")
        assert ev.subject == ana["id"]
        assert str(ev.data["partner_id"]) == ana["id"]
        assert ev.data["email"] == ana["email"]
        assert ev.data["timezone"] == "Europe/Paris"

    def test_an_email_already_registered_is_409_whatever_its_case(self, journal):
        ana = sign_up(journal)
        assert_problem(journal.post("/v1/accounts", json=_account(email=ana["email"].upper())), 409)

    def test_every_invalid_field_is_named_in_one_422(self, journal):
        r = journal.post(
            "/v1/accounts",
            json={
                "email": "not-an-email",
                "password": "short",
                "display_name": "Ana",
                "timezone": "Mars/Olympus_Mons",
            },
        )
        assert_problem(r, 422, "email", "password", "timezone", exact=True)

    def test_a_bad_field_is_422_naming_it(self, journal, db):
        def check(field, value):
            assert_problem(
                journal.post("/v1/accounts", json=_account(**{field: value})),
                422,
                field,
                exact=True,
            )

        each_case(
            [
                ("email", "ana@"),
                ("email", ""),
                ("email", None),
                ("password", "nine char"),
                ("password", 1234567890),
                ("display_name", ""),
                ("display_name", "x" * 81),
                ("timezone", "Europe/Pariss"),
                ("timezone", "+01:00"),
                ("timezone", 1),
                ("timezone", "localtime"),  # the host's zone file, not an IANA name
            ],
            check,
        )
        assert count(db, accounts) == 0
        assert outbox_bodies(db) == []

    def test_a_display_name_that_could_write_email_headers_is_refused(self, journal, db):
        def check(name):
            r = journal.post("/v1/accounts", json=_account(display_name=name))
            assert_problem(r, 422, "display_name", exact=True)

        each_case(
            [
                (name,)
                for name in (
                    "=?utf-8?q?=0D=0AReply-To:_evil=40example.net?=",  # RFC 2047 encoded words
                    "Ana =?utf-8?b?DQpCY2M6IGV2aWw=?=",
                    "Ana\r\nReply-To: someone",
                    "Ana\nBcc",
                    "Ana\x1b[2J",
                    "Ana\u2028x",
                    "\t",
                    "   ",
                )
            ],
            check,
        )
        assert count(db, accounts) == 0
        assert outbox_bodies(db) == []
        # a name with accents, emoji and punctuation is a name
        for name in ("Zoë-Ana (she/her) \U0001f469\u200d\u2764\ufe0f", "José = Pepe?"):
            assert (
                journal.post(
                    "/v1/accounts",
                    json=_account(email=f"{uuid.uuid4().hex[:8]}@example.com", display_name=name),
                ).status_code
                == 201
            )

    def test_missing_fields_are_422_naming_each(self, journal):
        assert_problem(
            journal.post("/v1/accounts", json={}),
            422,
            "email",
            "password",
            "display_name",
            "timezone",
            exact=True,
        )

    def test_an_unknown_field_is_422_naming_it(self, journal, db):
        assert_problem(
            journal.post("/v1/accounts", json=_account(is_admin=True)), 422, "is_admin", exact=True
        )
        assert count(db, accounts) == 0

    def test_the_account_reads_back_with_its_token(self, journal):
        ana = sign_up(journal, "Ana", "Asia/Kolkata")
        r = journal.get("/v1/accounts/me", headers=ana["headers"])
        assert r.status_code == 200
        assert r.get_json()["id"] == ana["id"]
        assert r.get_json()["timezone"] == "Asia/Kolkata"


# --- accounts: log in ------------------------------------------------------


def _login(client, email: str, password: str = PASSWORD):
    return client.post("/v1/tokens", json={"email": email, "password": password})


class TestLogin:
    def test_login_returns_201_with_a_bearer_token_that_works(self, journal):
        ana = sign_up(journal)
        r = _login(journal, ana["email"])
        assert r.status_code == 201
        body = r.get_json()
        assert set(body) == {
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "session_id",
        }
        assert body["token_type"] == "Bearer"
        assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
        me = journal.get(
            "/v1/accounts/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert me.status_code == 200 and me.get_json()["id"] == ana["id"]

    def test_login_email_is_case_insensitive(self, journal):
        ana = sign_up(journal)
        assert _login(journal, ana["email"].upper()).status_code == 201

    def test_a_wrong_password_is_401_like_an_unknown_email(self, journal):
        ana = sign_up(journal)
        wrong_pw = _login(journal, ana["email"], "wrong password")
        no_such = _login(journal, "nobody@example.com", "wrong password")
        assert_problem(wrong_pw, 401)
        assert_problem(no_such, 401)
        assert no_such.get_json() == wrong_pw.get_json()  # no account enumeration

    def test_credentials_are_validated(self, journal):
        assert_problem(
            journal.post("/v1/tokens", json={"email": "a@example.com"}), 422, "password", exact=True
        )
        assert_problem(
            journal.post("/v1/tokens", json={"email": "a@example.com", "password": "x", "otp": 1}),
            422,
            "otp",
            exact=True,
        )

    def test_after_five_failures_the_sixth_attempt_is_429_with_retry_after_even_with_the_right_password(
        self, journal
    ):
        ana = sign_up(journal)
        for _ in range(5):
            assert_problem(_login(journal, ana["email"], "wrong password"), 401)
        r = _login(journal, ana["email"])
        assert_problem(r, 429)
        assert 1 <= int(r.headers["Retry-After"]) <= 15 * 60 + 1

    def test_throttling_is_per_account(self, journal):
        ana, ben = sign_up(journal, "Ana"), sign_up(journal, "Ben")
        for _ in range(6):
            _login(journal, ana["email"], "wrong password")
        assert _login(journal, ben["email"]).status_code == 201

    def test_a_good_login_before_the_limit_resets_the_failure_count(self, journal):
        ana = sign_up(journal)
        for _ in range(
            2
        ):  # 4 + 4 failures: 8 in the window unless the good login in between resets it
            for _ in range(4):
                assert_problem(_login(journal, ana["email"], "wrong password"), 401)
            assert _login(journal, ana["email"]).status_code == 201


# --- tokens ----------------------------------------------------------------


def _claims(sub: str, **override) -> dict:
    now = datetime.now(UTC)
    claims = {
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(hours=1),
        "jti": new_id(),
    }
    claims.update(override)
    return {k: v for k, v in claims.items() if v is not None}


def _journal_key(backend):
    """The journal's own signing key (made on the app's first start)."""
    pem = (backend.var_dir / "keys" / "token_ed25519.pem").read_bytes()
    return serialization.load_pem_private_key(pem, None)


def _signed(backend, claims: dict) -> str:
    return jwt.encode(claims, _journal_key(backend), algorithm="EdDSA")


def _hs256_with_public_key(backend, sub: str) -> str:
    """Algorithm confusion: HMAC-signed with the public key's PEM as the secret."""
    secret = (backend.var_dir / "keys" / "token_ed25519.pub.pem").read_bytes()
    claims = {
        k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in _claims(sub).items()
    }
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"})) + "." + b64(json.dumps(claims))
    sig = base64.urlsafe_b64encode(
        hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    )
    return signing_input + "." + sig.decode().rstrip("=")


def _with_subject_swapped(token: str, sub: str) -> str:
    header, _payload, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    return ".".join([header, b64(json.dumps(dict(claims, sub=sub))), sig])


class TestTokens:
    def test_a_token_minted_with_the_journal_key_and_right_claims_is_accepted(
        self, journal, backend
    ):
        """The control for the cases below: they fail for the reason they name, not by construction."""
        ana = sign_up(journal)
        r = journal.get(
            "/v1/accounts/me",
            headers={"Authorization": f"Bearer {_signed(backend, _claims(ana['id']))}"},
        )
        assert r.status_code == 200 and r.get_json()["id"] == ana["id"]

    def test_a_missing_or_bad_token_is_401_with_www_authenticate_bearer(self, journal, backend):
        ana, ben = sign_up(journal, "Ana"), sign_up(journal, "Ben")
        now = datetime.now(UTC)
        ana_token = ana["headers"]["Authorization"].split(" ", 1)[1]
        cases = [
            ("missing", None),
            ("empty bearer", "Bearer "),
            ("basic scheme", "Basic " + base64.b64encode(b"ana:pw").decode()),
            ("garbage", "Bearer not.a.jwt"),
            ("alg none", "Bearer " + jwt.encode(_claims(ana["id"]), None, algorithm="none")),
            (
                "another Ed25519 key",
                "Bearer "
                + jwt.encode(_claims(ana["id"]), Ed25519PrivateKey.generate(), algorithm="EdDSA"),
            ),
            (
                "expired",
                "Bearer "
                + _signed(
                    backend,
                    _claims(
                        ana["id"], iat=now - timedelta(hours=2), exp=now - timedelta(minutes=5)
                    ),
                ),
            ),
            ("no expiry", "Bearer " + _signed(backend, _claims(ana["id"], exp=None))),
            (
                "wrong audience",
                "Bearer " + _signed(backend, _claims(ana["id"], aud="someone-else")),
            ),
            ("wrong issuer", "Bearer " + _signed(backend, _claims(ana["id"], iss="evil"))),
            ("subject not a uuid", "Bearer " + _signed(backend, _claims("admin"))),
            ("no such account", "Bearer " + _signed(backend, _claims(new_id()))),
            ("HS256 with the public key", "Bearer " + _hs256_with_public_key(backend, ana["id"])),
            ("payload tampered", "Bearer " + _with_subject_swapped(ana_token, ben["id"])),
        ]

        def check(_name, value):
            headers = {} if value is None else {"Authorization": value}
            for method, path in [
                ("get", "/v1/accounts/me"),
                ("get", "/v1/entries"),
                ("get", "/v1/export"),
                ("get", "/v1/couples/me"),
                ("post", "/v1/couples"),
                ("delete", "/v1/accounts/me"),
            ]:
                assert_unauthorized(getattr(journal, method)(path, headers=headers))
            assert_unauthorized(journal.post("/v1/entries", headers=headers, json=entry()))

        each_case(cases, check)
        # none of them changed anything: both accounts remain, nobody formed a couple
        for who in (ana, ben):
            me = journal.get("/v1/accounts/me", headers=who["headers"])
            assert me.status_code == 200 and me.get_json()["couple_id"] is None

    def test_without_a_token_the_answer_is_401_whatever_the_input(self, journal):
        """No validation details, no body read, for a caller who is not signed in."""
        for method, path, kwargs in [
            ("post", "/v1/entries", {"json": {}}),
            ("post", "/v1/entries", {"json": entry(note="x" * (70 * 1024))}),
            ("post", "/v1/entries", {"data": "[" * 30000, "content_type": "application/json"}),
            ("get", "/v1/entries", {"query_string": {"limit": 0, "cursor": "garbage"}}),
            ("post", "/v1/couples/join", {"json": {"nope": 1}}),
            ("patch", f"/v1/entries/{new_id()}", {"json": {"intensity": "high"}}),
        ]:
            r = getattr(journal, method)(path, **kwargs)
            assert_unauthorized(r)
            assert "errors" not in r.get_json(), (method, path)


# --- couples ---------------------------------------------------------------


class TestCouples:
    def test_starting_a_couple_is_201_with_an_invite_code_and_the_starter(self, journal):
        ana = sign_up(journal, "Ana")
        r = journal.post("/v1/couples", headers=ana["headers"])
        assert r.status_code == 201
        body = r.get_json()
        uuid.UUID(body["id"])
        assert isinstance(body["invite_code"], str) and len(body["invite_code"]) >= 6
        assert body["partners"] == [{"id": ana["id"], "display_name": "Ana"}]

    def test_joining_with_the_code_is_200_with_both_partners(self, journal, db):
        ana, ben = sign_up(journal, "Ana"), sign_up(journal, "Ben")
        started = journal.post("/v1/couples", headers=ana["headers"]).get_json()
        r = journal.post(
            "/v1/couples/join", headers=ben["headers"], json={"invite_code": started["invite_code"]}
        )
        assert r.status_code == 200
        body = r.get_json()
        assert body["id"] == started["id"]
        assert {p["id"] for p in body["partners"]} == {ana["id"], ben["id"]}
        for who in (ana, ben):
            mine = journal.get("/v1/couples/me", headers=who["headers"])
            assert mine.status_code == 200
            assert mine.get_json()["id"] == started["id"]
            assert len(mine.get_json()["partners"]) == 2
            assert (
                journal.get("/v1/accounts/me", headers=who["headers"]).get_json()["couple_id"]
                == started["id"]
            )
        (ev,) = outbox_events(db, "journal.couple.partnered")
        assert ev.subject == started["id"]
        assert {str(p) for p in ev.data["partner_ids"]} == {ana["id"], ben["id"]}

    def test_the_invite_code_is_accepted_as_people_type_it(self, journal):
        ana, ben = sign_up(journal, "Ana"), sign_up(journal, "Ben")
        code = journal.post("/v1/couples", headers=ana["headers"]).get_json()["invite_code"]
        typed = f" {code[:5].lower()}-{code[5:].lower()} "
        assert (
            journal.post(
                "/v1/couples/join", headers=ben["headers"], json={"invite_code": typed}
            ).status_code
            == 200
        )

    def test_a_third_partner_joining_is_409_and_the_couple_keeps_two(self, journal):
        ana, ben = sign_up(journal, "Ana"), sign_up(journal, "Ben")
        code = journal.post("/v1/couples", headers=ana["headers"]).get_json()["invite_code"]
        assert (
            journal.post(
                "/v1/couples/join", headers=ben["headers"], json={"invite_code": code}
            ).status_code
            == 200
        )
        cleo = sign_up(journal, "Cleo")
        assert_problem(
            journal.post("/v1/couples/join", headers=cleo["headers"], json={"invite_code": code}),
            409,
        )
        assert (
            len(journal.get("/v1/couples/me", headers=ana["headers"]).get_json()["partners"]) == 2
        )
        assert_problem(journal.get("/v1/couples/me", headers=cleo["headers"]), 404)

    def test_joining_with_an_unknown_code_is_422_naming_invite_code(self, journal):
        ben = sign_up(journal, "Ben")
        r = journal.post(
            "/v1/couples/join", headers=ben["headers"], json={"invite_code": "ZZZZZZZZZZ"}
        )
        assert_problem(r, 422, "invite_code", exact=True)

    def test_a_bad_join_body_is_422_naming_the_field(self, journal):
        ben = sign_up(journal, "Ben")

        def check(body, field):
            assert_problem(
                journal.post("/v1/couples/join", headers=ben["headers"], json=body),
                422,
                field,
                exact=True,
            )

        each_case(
            [
                ({}, "invite_code"),
                ({"invite_code": None}, "invite_code"),
                ({"invite_code": ""}, "invite_code"),
                ({"invite_code": "ABC", "couple_id": new_id()}, "couple_id"),
            ],
            check,
        )

    def test_starting_or_joining_a_second_couple_while_in_one_is_409(self, journal):
        ana, ben, couple_id = make_couple(journal)
        for who in (ana, ben):
            assert_problem(journal.post("/v1/couples", headers=who["headers"]), 409)
        cleo = sign_up(journal, "Cleo")
        other_code = journal.post("/v1/couples", headers=cleo["headers"]).get_json()["invite_code"]
        assert_problem(
            journal.post(
                "/v1/couples/join", headers=ben["headers"], json={"invite_code": other_code}
            ),
            409,
        )
        assert journal.get("/v1/couples/me", headers=ben["headers"]).get_json()["id"] == couple_id
        assert (
            len(journal.get("/v1/couples/me", headers=cleo["headers"]).get_json()["partners"]) == 1
        )

    def test_my_couple_before_any_couple_is_404(self, journal):
        ana = sign_up(journal)
        assert_problem(journal.get("/v1/couples/me", headers=ana["headers"]), 404)


# --- entries: recording and validation -------------------------------------


class TestRecordEntry:
    def test_the_contract_lists_exactly_the_kinds_the_service_knows(self):
        assert set(KINDS) == set(CONTRACT_KINDS)

    @pytest.mark.parametrize("kind", list(CONTRACT_KINDS))
    def test_every_kind_is_accepted_with_its_fields(self, journal, kind):
        ana = sign_up(journal)
        body = valid_entry(kind, note="a note")
        created = record(journal, ana, body)
        assert created["id"] == body["id"]
        assert created["kind"] == kind
        assert created["author_id"] == ana["id"]
        assert created["note"] == "a note"
        for name, value in CONTRACT_KINDS[kind].items():
            if name == "repaired_at":
                assert instant(created[name]) == instant(value)
            else:
                assert created[name] == value
        fetched = journal.get(f"/v1/entries/{body['id']}", headers=ana["headers"])
        assert fetched.status_code == 200
        assert fetched.get_json() == created

    def test_a_recorded_entry_publishes_entry_recorded_with_its_fields(self, journal, db):
        ana, _ben, couple_id = make_couple(journal)
        body = valid_entry("anxious_episode", visibility="shared")
        record(journal, ana, body)
        (ev,) = outbox_events(db, "journal.entry.recorded")
        assert ev.subject == couple_id and ev.source == "/journal"
        assert str(ev.data["entry_id"]) == body["id"]
        assert str(ev.data["couple_id"]) == couple_id
        assert str(ev.data["partner_id"]) == ana["id"]
        assert ev.data["kind"] == "anxious_episode" and ev.data["visibility"] == "shared"
        assert ev.data["intensity"] == 7 and ev.data["triggers"] == ["silence", "late_reply"]
        assert ev.data["local_date"] == date(2026, 11, 20)

    def test_each_kinds_required_fields_are_enforced(self, journal, db):
        ana = sign_up(journal)

        def check(kind, fields, missing):
            body = entry(kind, **fields)
            if kind == "anxious_episode" and "intensity" not in fields:
                body.pop("intensity")
            assert_problem(
                journal.post("/v1/entries", headers=ana["headers"], json=body),
                422,
                *missing,
                exact=True,
            )

        each_case(
            [
                ("anxious_episode", {"duration_minutes": 5}, {"intensity"}),
                ("anxious_episode", {"intensity": None}, {"intensity"}),
                ("daily_reflection", {}, {"mood", "anxiety", "communication"}),
                ("daily_reflection", {"mood": None}, {"mood", "anxiety", "communication"}),
                ("check_in", {}, {"connection", "understanding"}),
                ("healing_conversation", {}, {"felt_heard", "accountability"}),
                ("ritual", {}, {"ritual"}),
                ("independence_activity", {}, {"activity"}),
                ("conflict", {}, {"intensity"}),
                ("conflict", {"repaired_at": "2026-11-20T09:00:00+01:00"}, {"intensity"}),
            ],
            check,
        )
        assert count(db, entries) == 0

    def test_one_of_the_at_least_one_fields_is_enough(self, journal):
        ana = sign_up(journal)

        def check(kind, fields):
            created = record(journal, ana, entry(kind, **fields))
            assert {k: created[k] for k in fields} == fields

        each_case(
            [
                ("daily_reflection", {"mood": 5}),
                ("daily_reflection", {"anxiety": 2}),
                ("daily_reflection", {"communication": 4}),
                ("check_in", {"understanding": 2}),
                ("healing_conversation", {"accountability": False}),
            ],
            check,
        )

    def test_a_field_of_another_kind_is_422_naming_it(self, journal, db):
        ana = sign_up(journal)

        def check(kind, fields, foreign):
            assert_problem(
                journal.post("/v1/entries", headers=ana["headers"], json=entry(kind, **fields)),
                422,
                foreign,
                exact=True,
            )

        each_case(
            [
                ("anxious_episode", {"mood": 5}, "mood"),
                ("daily_reflection", {"mood": 5, "intensity": 3}, "intensity"),
                ("check_in", {"connection": 3, "felt_heard": 3}, "felt_heard"),
                (
                    "healing_conversation",
                    {"felt_heard": 3, "repaired_at": "2026-11-20T09:00:00+01:00"},
                    "repaired_at",
                ),
                ("ritual", {"ritual": "affection", "activity": "hobby"}, "activity"),
                (
                    "independence_activity",
                    {"activity": "friends", "soothing": ["breathing"]},
                    "soothing",
                ),
                ("conflict", {"intensity": 3, "duration_minutes": 30}, "duration_minutes"),
            ],
            check,
        )
        assert count(db, entries) == 0

    def test_a_value_out_of_range_is_422_naming_only_that_field(self, journal, db):
        ana = sign_up(journal)

        def check(kind, field, value):
            body = entry(kind, **{field: value})
            if kind == "conflict" and field != "intensity":
                body["intensity"] = 5
            assert_problem(
                journal.post("/v1/entries", headers=ana["headers"], json=body),
                422,
                field,
                exact=True,
            )

        each_case(
            [
                ("anxious_episode", "intensity", 11),
                ("anxious_episode", "intensity", -1),
                ("anxious_episode", "duration_minutes", -1),
                ("anxious_episode", "duration_minutes", 24 * 60 + 1),
                ("daily_reflection", "communication", 0),
                ("daily_reflection", "communication", 6),
                ("daily_reflection", "mood", 0),
                ("daily_reflection", "mood", 11),
                ("daily_reflection", "anxiety", -1),
                ("daily_reflection", "anxiety", 11),
                ("check_in", "connection", 0),
                ("check_in", "connection", 6),
                ("check_in", "understanding", 0),
                ("check_in", "understanding", 6),
                ("healing_conversation", "felt_heard", 0),
                ("healing_conversation", "felt_heard", 6),
                ("conflict", "intensity", 11),
                ("conflict", "intensity", -1),
            ],
            check,
        )
        assert count(db, entries) == 0

    def test_the_ends_of_each_range_are_accepted(self, journal):
        ana = sign_up(journal)

        def check(kind, fields):
            created = record(journal, ana, entry(kind, **fields))
            assert {k: created[k] for k in fields} == fields

        each_case(
            [
                ("anxious_episode", {"intensity": 0, "duration_minutes": 0}),
                ("anxious_episode", {"intensity": 10, "duration_minutes": 24 * 60}),
                ("daily_reflection", {"mood": 1, "anxiety": 0, "communication": 1}),
                ("daily_reflection", {"mood": 10, "anxiety": 10, "communication": 5}),
                ("check_in", {"connection": 1, "understanding": 1}),
                ("check_in", {"connection": 5, "understanding": 5}),
                ("healing_conversation", {"felt_heard": 1}),
                ("healing_conversation", {"felt_heard": 5}),
                ("conflict", {"intensity": 0}),
                ("conflict", {"intensity": 10}),
            ],
            check,
        )

    def test_a_value_of_the_wrong_type_is_422_naming_only_that_field(self, journal, db):
        ana = sign_up(journal)

        def check(kind, field, value):
            body = entry(kind, **{field: value})
            if kind == "conflict" and field != "intensity":
                body["intensity"] = 5
            assert_problem(
                journal.post("/v1/entries", headers=ana["headers"], json=body),
                422,
                field,
                exact=True,
            )

        each_case(
            [
                ("anxious_episode", "intensity", 5.0),
                ("anxious_episode", "intensity", 5.5),
                ("anxious_episode", "intensity", True),
                ("anxious_episode", "intensity", "5"),
                ("anxious_episode", "intensity", [5]),
                ("anxious_episode", "duration_minutes", 12.0),
                ("anxious_episode", "duration_minutes", "12"),
                ("anxious_episode", "duration_minutes", False),
                ("anxious_episode", "triggers", "silence"),
                ("anxious_episode", "triggers", ["Late Reply"]),
                ("anxious_episode", "triggers", [1]),
                ("anxious_episode", "soothing", [f"t{i}" for i in range(21)]),
                ("daily_reflection", "communication", "3"),
                ("daily_reflection", "mood", 6.0),
                ("daily_reflection", "anxiety", False),
                ("check_in", "connection", True),
                ("healing_conversation", "felt_heard", 4.0),
                ("healing_conversation", "accountability", "yes"),
                ("ritual", "ritual", "Good Morning!"),
                ("ritual", "ritual", 3),
                ("independence_activity", "activity", ["hobby"]),
                ("conflict", "intensity", "high"),
                ("conflict", "repaired_at", "2026-11-20T09:00:00"),
            ],
            check,
        )
        assert count(db, entries) == 0

    def test_occurred_at_must_be_a_timestamp_with_an_offset(self, journal, db):
        ana = sign_up(journal)

        def check(value):
            body = entry()
            if value is ...:
                del body["occurred_at"]
            else:
                body["occurred_at"] = value
            assert_problem(
                journal.post("/v1/entries", headers=ana["headers"], json=body),
                422,
                "occurred_at",
                exact=True,
            )

        each_case(
            [
                (v,)
                for v in (
                    "2026-11-20T07:30:00",
                    "2026-11-20",
                    "yesterday",
                    "",
                    None,
                    1763620200,
                    ...,
                    "0001-01-01T00:00:00+01:00",
                )
            ],  # before the first instant a database can hold
            check,
        )
        assert count(db, entries) == 0

    def test_occurred_at_more_than_ten_minutes_ahead_is_422_naming_it(self, journal, db):
        ana = sign_up(journal)

        def check(value):
            assert_problem(
                journal.post("/v1/entries", headers=ana["headers"], json=entry(occurred_at=value)),
                422,
                "occurred_at",
                exact=True,
            )

        each_case(
            [
                (at(timedelta(minutes=11)),),
                (at(timedelta(minutes=11), timedelta(hours=-9)),),
                ("9999-12-31T23:59:59-01:00",),
            ],
            check,
        )
        assert count(db, entries) == 0

    def test_occurred_at_nine_minutes_ahead_is_accepted(self, journal):
        """A phone's clock a little fast is not an error."""
        ana = sign_up(journal)
        record(journal, ana, entry(occurred_at=at(timedelta(minutes=9))))
        record(journal, ana, entry(occurred_at=at(timedelta(minutes=9), timedelta(hours=-9))))

    def test_occurred_at_long_ago_is_accepted_for_an_app_that_syncs_late(self, journal):
        ana = sign_up(journal)
        record(journal, ana, entry(occurred_at=at(-timedelta(days=400))))

    def test_occurred_at_is_returned_with_the_offset_the_client_gave(self, journal):
        ana = sign_up(journal)

        def check(offset):
            given = f"2026-11-20T07:30:00{offset}"
            created = record(journal, ana, entry(occurred_at=given))
            assert created["occurred_at"] == given
            fetched = journal.get(f"/v1/entries/{created['id']}", headers=ana["headers"]).get_json()
            assert fetched["occurred_at"] == given
            assert [
                e["occurred_at"] for e in listing(journal, ana)["items"] if e["id"] == created["id"]
            ] == [given]

        each_case([("+05:30",), ("-08:00",), ("+00:00",), ("+13:45",)], check)

    def test_local_date_is_the_day_in_the_authors_time_zone(self, journal):
        ana = sign_up(journal, "Ana", "Europe/Paris")
        # 23:30 in New York on the 20th is 05:30 in Paris on the 21st.
        created = record(journal, ana, entry(occurred_at="2026-11-20T23:30:00-05:00"))
        assert created["local_date"] == "2026-11-21"
        assert created["occurred_at"] == "2026-11-20T23:30:00-05:00"

    def test_repaired_at_before_occurred_at_is_422_naming_it(self, journal):
        ana = sign_up(journal)
        body = entry(
            "conflict",
            intensity=4,
            occurred_at="2026-11-20T07:30:00+01:00",
            repaired_at="2026-11-20T07:29:00+01:00",
        )
        assert_problem(
            journal.post("/v1/entries", headers=ana["headers"], json=body),
            422,
            "repaired_at",
            exact=True,
        )
        future = entry("conflict", intensity=4, repaired_at=at(timedelta(hours=1)))
        assert_problem(
            journal.post("/v1/entries", headers=ana["headers"], json=future),
            422,
            "repaired_at",
            exact=True,
        )

    def test_repaired_at_compares_instants_not_wall_clocks(self, journal):
        ana = sign_up(journal)
        # 07:00 in London is after 07:30 in Paris.
        created = record(
            journal,
            ana,
            entry(
                "conflict",
                intensity=4,
                occurred_at="2026-11-20T07:30:00+01:00",
                repaired_at="2026-11-20T07:00:00+00:00",
            ),
        )
        assert instant(created["repaired_at"]) == instant("2026-11-20T07:00:00+00:00")

    def test_visibility_defaults_to_private_and_is_private_or_shared(self, journal):
        ana = sign_up(journal)
        assert record(journal, ana, entry())["visibility"] == "private"
        assert record(journal, ana, entry(visibility="shared"))["visibility"] == "shared"
        for bad in ("public", "Shared", None):
            assert_problem(
                journal.post("/v1/entries", headers=ana["headers"], json=entry(visibility=bad)),
                422,
                "visibility",
                exact=True,
            )

    def test_a_bad_or_unknown_top_level_field_is_422_naming_it(self, journal, db):
        ana = sign_up(journal)

        def check(field, value):
            body = entry()
            if value is ...:
                del body[field]
            else:
                body[field] = value
            assert_problem(
                journal.post("/v1/entries", headers=ana["headers"], json=body),
                422,
                field,
                exact=True,
            )

        each_case(
            [
                ("id", "not-a-uuid"),
                ("id", None),
                ("id", ...),
                ("kind", "panic_attack"),
                ("kind", None),
                ("kind", ...),
                ("note", "x" * 10_001),
                ("note", 42),
                ("author_id", new_id()),
                ("created_at", "2026-11-20T07:30:00+01:00"),
                ("local_date", "2026-11-20"),
                ("mood_score", 3),
            ],
            check,
        )
        assert count(db, entries) == 0


class TestTheAuthorRemembered:
    """The journal remembers an author's time zone and couple between entries (on PostgreSQL an entry is
    then one statement); an entry still carries its author's couple as it is when the entry is stored,
    whichever process formed it."""

    def test_an_entry_after_a_couple_is_formed_or_joined_carries_the_couple(self, journal, db):
        ana, ben = sign_up(journal, "Ana"), sign_up(journal, "Ben", "America/New_York")
        record(journal, ana, entry())  # both remembered without a couple
        record(journal, ben, entry())
        c = journal.post("/v1/couples", headers=ana["headers"]).get_json()
        record(journal, ana, entry())
        record(journal, ben, entry())
        assert (
            journal.post(
                "/v1/couples/join", headers=ben["headers"], json={"invite_code": c["invite_code"]}
            ).status_code
            == 200
        )
        record(journal, ben, entry(occurred_at="2026-11-20T02:30:00+00:00"))
        recorded = outbox_events(db, "journal.entry.recorded")
        seen = [
            (
                str(ev.data["partner_id"]),
                ev.data["couple_id"] and str(ev.data["couple_id"]),
                str(ev.subject),
            )
            for ev in recorded
        ]
        a, b, couple = ana["id"], ben["id"], c["id"]
        assert seen == [
            (a, None, a),
            (b, None, b),
            (a, couple, couple),
            (b, None, b),
            (b, couple, couple),
        ]
        # and its day is still the author's own (New York: the 19th at 21:30)
        assert str(recorded[-1].data["local_date"]) == "2026-11-19"

    def test_a_remembered_author_replays_and_is_refused_anothers_id_as_anyone(self, journal, db):
        ana, ben, _ = make_couple(journal)
        record(journal, ana, entry())  # both remembered
        record(journal, ben, entry())
        body = entry(note="Ana's private thoughts")
        first = record(journal, ana, body)
        assert record(journal, ana, body, status=200) == first
        r = journal.post("/v1/entries", headers=ben["headers"], json=body)
        assert_problem(r, 409, "id")
        assert "private thoughts" not in r.get_data(as_text=True)
        assert count(db, entries) == 3
        assert len(outbox_events(db, "journal.entry.recorded")) == 3

    def test_an_erased_remembered_author_is_401_even_for_an_id_another_holds(self, journal, db):
        ana, ben, _ = make_couple(journal)
        record(journal, ana, entry())  # remembered
        bens = entry()
        record(journal, ben, bens)
        assert journal.delete("/v1/accounts/me", headers=ana["headers"]).status_code == 204
        for body in (bens, entry()):
            assert_unauthorized(journal.post("/v1/entries", headers=ana["headers"], json=body))
        assert count(db, entries) == 1

    def test_an_entry_of_a_remembered_author_is_one_statement_on_postgresql(self, rabbit_journal):
        ana = sign_up(rabbit_journal)
        record(rabbit_journal, ana, entry())
        sent: list[str] = []

        def count(_conn, _cursor, statement, *_):
            sent.append(statement)

        engine = rabbit_journal.application.extensions["journal"]["engine"]
        event.listen(engine, "before_cursor_execute", count)
        try:
            record(rabbit_journal, ana, entry())
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(sent) == 1 and "INSERT INTO entries" in sent[0], sent


class TestIdempotency:
    def test_the_same_id_and_body_again_is_200_with_the_same_entry_stored_once(self, journal, db):
        ana = sign_up(journal)
        body = valid_entry("anxious_episode", note="retry me")
        first = journal.post("/v1/entries", headers=ana["headers"], json=body)
        again = journal.post("/v1/entries", headers=ana["headers"], json=body)
        assert first.status_code == 201
        assert again.status_code == 200
        assert again.get_json() == first.get_json()
        assert count(db, entries, entries.c.id == body["id"]) == 1
        recorded = [
            e
            for e in outbox_events(db, "journal.entry.recorded")
            if str(e.data["entry_id"]) == body["id"]
        ]
        assert len(recorded) == 1

    def test_the_same_body_with_the_default_spelled_out_is_the_same_entry(self, journal):
        ana = sign_up(journal)
        body = entry()
        record(journal, ana, body)
        record(journal, ana, dict(body, visibility="private"), status=200)

    def test_the_same_id_with_another_body_is_409_and_the_entry_is_unchanged(self, journal, db):
        ana = sign_up(journal)
        body = entry(intensity=5)
        created = record(journal, ana, body)

        def check(changed):
            assert_problem(journal.post("/v1/entries", headers=ana["headers"], json=changed), 409)

        each_case(
            [
                (dict(body, intensity=6),),
                (dict(body, note="now with a note"),),
                (dict(body, visibility="shared"),),
                (dict(body, occurred_at="2026-11-20T07:31:00+01:00"),),
                (
                    dict(body, occurred_at="2026-11-20T06:30:00+00:00"),
                ),  # the same instant, another offset
                (entry("ritual", id=body["id"], ritual="affection"),),
            ],
            check,
        )
        assert (
            journal.get(f"/v1/entries/{body['id']}", headers=ana["headers"]).get_json() == created
        )
        assert count(db, entries) == 1
        assert len(outbox_events(db, "journal.entry.recorded")) == 1

    def test_another_partner_reusing_an_id_gets_409_not_the_entry(self, journal, db):
        ana, ben, _ = make_couple(journal)
        body = entry(note="Ana's private thoughts")
        record(journal, ana, body)
        r = journal.post("/v1/entries", headers=ben["headers"], json=body)
        assert_problem(r, 409)
        assert "private thoughts" not in r.get_data(as_text=True)
        assert count(db, entries) == 1

    def test_a_replay_is_still_validated_first(self, journal):
        ana = sign_up(journal)
        body = entry()
        record(journal, ana, body)
        assert_problem(
            journal.post("/v1/entries", headers=ana["headers"], json=dict(body, intensity=99)),
            422,
            "intensity",
            exact=True,
        )


# --- entries: who may see and change what ----------------------------------


class TestVisibilityAndOwnership:
    def test_a_partners_private_entry_is_404_to_the_other_partner(self, journal):
        ana, ben, _ = make_couple(journal)
        private = record(journal, ana, entry(note="only mine"))
        path = f"/v1/entries/{private['id']}"
        assert_problem(journal.get(path, headers=ben["headers"]), 404)
        assert_problem(journal.patch(path, headers=ben["headers"], json={"intensity": 1}), 404)
        assert_problem(journal.delete(path, headers=ben["headers"]), 404)
        assert private["id"] not in listed_ids(journal, ben)
        assert journal.get(path, headers=ana["headers"]).get_json() == private

    def test_the_404_for_a_hidden_entry_is_the_same_as_for_no_entry(self, journal):
        ana, ben, _ = make_couple(journal)
        private = record(journal, ana, entry())
        hidden = journal.get(f"/v1/entries/{private['id']}", headers=ben["headers"])
        absent = journal.get(f"/v1/entries/{new_id()}", headers=ben["headers"])
        assert_problem(hidden, 404)
        assert hidden.get_json() == absent.get_json()

    def test_a_shared_entry_is_visible_to_the_partner_by_id_and_in_the_list(self, journal):
        ana, ben, _ = make_couple(journal)
        shared = record(journal, ana, entry(visibility="shared", note="for us"))
        r = journal.get(f"/v1/entries/{shared['id']}", headers=ben["headers"])
        assert r.status_code == 200
        assert r.get_json() == shared
        assert [e for e in listing(journal, ben)["items"] if e["id"] == shared["id"]] == [shared]

    def test_the_non_author_may_not_patch_or_delete_a_shared_entry(self, journal, db):
        ana, ben, _ = make_couple(journal)
        shared = record(journal, ana, entry(visibility="shared"))
        path = f"/v1/entries/{shared['id']}"
        assert_problem(journal.patch(path, headers=ben["headers"], json={"intensity": 1}), 403)
        assert_problem(journal.delete(path, headers=ben["headers"]), 403)
        assert journal.get(path, headers=ana["headers"]).get_json() == shared
        assert (
            outbox_events(db, "journal.entry.revised")
            == outbox_events(db, "journal.entry.deleted")
            == []
        )

    def test_another_couples_entry_private_or_shared_is_404_to_a_stranger(self, journal):
        ana, _ben, _ = make_couple(journal)
        cleo, _dan, _ = make_couple(journal)
        loner = sign_up(journal, "Eve")
        theirs = [record(journal, ana, entry(visibility=v)) for v in ("private", "shared")]

        def check(stranger, e):
            path = f"/v1/entries/{e['id']}"
            assert_problem(journal.get(path, headers=stranger["headers"]), 404)
            assert_problem(
                journal.patch(path, headers=stranger["headers"], json={"intensity": 1}), 404
            )
            assert_problem(journal.delete(path, headers=stranger["headers"]), 404)
            assert e["id"] not in listed_ids(journal, stranger)

        each_case([(s, e) for s in (cleo, loner) for e in theirs], check)
        assert [
            journal.get(f"/v1/entries/{e['id']}", headers=ana["headers"]).status_code
            for e in theirs
        ] == [200] * 2

    def test_the_list_holds_own_entries_and_the_partners_shared_ones_only(self, journal):
        ana, ben, _ = make_couple(journal)
        cleo, _dan, _ = make_couple(journal)
        a_private = record(journal, ana, entry())["id"]
        a_shared = record(journal, ana, entry(visibility="shared"))["id"]
        b_private = record(journal, ben, entry())["id"]
        b_shared = record(journal, ben, entry(visibility="shared"))["id"]
        c_shared = record(journal, cleo, entry(visibility="shared"))["id"]
        assert set(listed_ids(journal, ana)) == {a_private, a_shared, b_shared}
        assert set(listed_ids(journal, ben)) == {b_private, b_shared, a_shared}
        assert set(listed_ids(journal, cleo)) == {c_shared}

    def test_sharing_an_entry_later_shows_it_to_the_partner_and_unsharing_hides_it(self, journal):
        ana, ben, _ = make_couple(journal)
        e = record(journal, ana, entry())
        path = f"/v1/entries/{e['id']}"
        assert (
            journal.patch(path, headers=ana["headers"], json={"visibility": "shared"}).status_code
            == 200
        )
        assert journal.get(path, headers=ben["headers"]).status_code == 200
        assert (
            journal.patch(path, headers=ana["headers"], json={"visibility": "private"}).status_code
            == 200
        )
        assert_problem(journal.get(path, headers=ben["headers"]), 404)
        assert e["id"] not in listed_ids(journal, ben)

    def test_an_entry_path_that_is_not_a_uuid_is_404(self, journal):
        ana = sign_up(journal)
        assert_problem(journal.get("/v1/entries/not-a-uuid", headers=ana["headers"]), 404)


# --- entries: the list -----------------------------------------------------


class TestListing:
    def test_the_list_is_newest_first_by_instant_not_by_wall_clock(self, journal):
        ana = sign_up(journal)
        times = [
            "2026-10-03T08:00:00+01:00",  # 07:00Z
            "2026-10-03T07:30:00+00:00",  # 07:30Z: later, though its clock reads earlier
            "2026-10-01T12:00:00-07:00",
            "2026-10-05T01:00:00+09:00",
        ]
        for t in times:
            record(journal, ana, entry(occurred_at=t))
        page = listing(journal, ana)
        assert [e["occurred_at"] for e in page["items"]] == sorted(times, key=instant, reverse=True)
        assert page["next_cursor"] is None

    def test_the_list_filters_by_kind(self, journal):
        ana = sign_up(journal)
        conflicts = {record(journal, ana, entry("conflict", intensity=i))["id"] for i in (2, 3)}
        record(journal, ana, entry())
        record(journal, ana, entry("ritual", ritual="affection"))
        assert set(listed_ids(journal, ana, kind="conflict")) == conflicts
        assert listed_ids(journal, ana, kind="check_in") == []
        assert_problem(
            journal.get("/v1/entries?kind=panic", headers=ana["headers"]), 422, "kind", exact=True
        )

    def test_the_list_filters_by_since_and_until_as_instants(self, journal):
        ana = sign_up(journal)
        by_day = [
            record(journal, ana, entry(occurred_at=f"2026-10-0{d}T10:00:00+00:00"))["id"]
            for d in (1, 2, 3, 4)
        ]
        since = "2026-10-02T09:00:00-02:00"  # 11:00Z on the 2nd: after the 2nd's entry
        until = "2026-10-04T11:00:00+02:00"  # 09:00Z on the 4th: before the 4th's entry
        assert set(listed_ids(journal, ana, since=since)) == {by_day[2], by_day[3]}
        assert set(listed_ids(journal, ana, until=until)) == {by_day[0], by_day[1], by_day[2]}
        assert listed_ids(journal, ana, since=since, until=until) == [by_day[2]]
        assert set(listed_ids(journal, ana, since=since, kind="anxious_episode")) == {
            by_day[2],
            by_day[3],
        }

    def test_a_bad_time_filter_is_422_naming_it(self, journal):
        ana = sign_up(journal)

        def check(query, field):
            assert_problem(
                journal.get("/v1/entries", headers=ana["headers"], query_string=query),
                422,
                field,
                exact=True,
            )

        each_case(
            [
                ({"since": "2026-10-02T09:00:00"}, "since"),
                ({"until": "last week"}, "until"),
                ({"since": "2026-10-03T00:00:00Z", "until": "2026-10-02T00:00:00Z"}, "until"),
                (
                    {"since": "0001-01-01T00:00:00+01:00"},
                    "since",
                ),  # before the first instant a database can hold
                ({"until": "9999-12-31T23:59:59-01:00"}, "until"),  # after the last
            ],
            check,
        )

    def test_pagination_walks_through_every_entry_exactly_once(self, journal):
        ana, ben, _ = make_couple(journal)
        expected = set()
        # Two of Ana's share an instant (written with different offsets): the cursor must split ties.
        for t in [
            "2026-10-01T10:00:00+00:00",
            "2026-10-02T10:00:00+00:00",
            "2026-10-02T12:00:00+02:00",
            "2026-10-03T10:00:00+00:00",
            "2026-10-05T10:00:00+00:00",
        ]:
            expected.add(record(journal, ana, entry(occurred_at=t))["id"])
        for t in ["2026-10-02T10:00:00+00:00", "2026-10-04T10:00:00+00:00"]:
            expected.add(record(journal, ben, entry(occurred_at=t, visibility="shared"))["id"])
        record(
            journal, ben, entry(occurred_at="2026-10-03T10:00:00+00:00")
        )  # private: not Ana's to see
        assert len(expected) == 7

        pages, cursor = [], None
        while True:
            page = listing(journal, ana, limit=3, **({"cursor": cursor} if cursor else {}))
            pages.append(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert len(pages) < 10, "the cursor does not advance"
        assert [len(p) for p in pages] == [3, 3, 1]
        walked = [e["id"] for p in pages for e in p]
        assert len(walked) == len(set(walked)) == 7
        assert set(walked) == expected
        assert walked == listed_ids(journal, ana)  # the same order as one big page
        instants = [instant(e["occurred_at"]) for p in pages for e in p]
        assert instants == sorted(instants, reverse=True)

    def test_a_page_that_ends_exactly_at_the_last_entry_has_no_next_cursor(self, journal):
        ana = sign_up(journal)
        for day in range(1, 4):
            record(journal, ana, entry(occurred_at=f"2026-10-0{day}T10:00:00+00:00"))
        assert listing(journal, ana, limit=3)["next_cursor"] is None

    def test_the_default_page_is_50(self, journal):
        ana = sign_up(journal)
        start = datetime(2026, 9, 1, tzinfo=UTC)
        for i in range(51):
            record(journal, ana, entry(occurred_at=(start + timedelta(hours=i)).isoformat()))
        page = listing(journal, ana)
        assert len(page["items"]) == 50
        rest = listing(journal, ana, cursor=page["next_cursor"])
        assert len(rest["items"]) == 1 and rest["next_cursor"] is None
        assert len(listing(journal, ana, limit=200)["items"]) == 51

    def test_a_limit_outside_1_to_200_is_422_naming_limit(self, journal):
        ana = sign_up(journal)

        def check(limit):
            assert_problem(
                journal.get("/v1/entries", headers=ana["headers"], query_string={"limit": limit}),
                422,
                "limit",
                exact=True,
            )

        each_case([(0,), (201,), (-1,), ("ten",), (2.5,), ("",)], check)
        assert (
            listing(journal, ana, limit=1)["items"]
            == listing(journal, ana, limit=200)["items"]
            == []
        )

    def test_a_garbage_cursor_is_422_naming_cursor(self, journal):
        ana = sign_up(journal)
        record(journal, ana, entry())
        some_id = str(uuid.UUID(int=1))

        def check(cursor):
            assert_problem(
                journal.get("/v1/entries", headers=ana["headers"], query_string={"cursor": cursor}),
                422,
                "cursor",
                exact=True,
            )

        each_case(
            [
                (c,)
                for c in (
                    "garbage",
                    "!!!!",
                    "%%%",
                    b64("no separator here"),
                    b64("2026-10-01T10:00:00+00:00|not-a-uuid"),
                    b64(f"2026-10-01T10:00:00|{some_id}"),  # no offset
                    b64(
                        f"0001-01-01T00:00:00+01:00|{some_id}"
                    ),  # before the first representable instant
                    b64(f"9999-12-31T23:59:59-01:00|{some_id}"),  # after the last
                    base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
                    "x" * 500,
                )
            ],
            check,
        )


# --- entries: revising -----------------------------------------------------


class TestRevise:
    def test_patch_changes_only_the_named_fields(self, journal):
        ana = sign_up(journal)
        body = valid_entry(
            "anxious_episode",
            note="keep me",
            visibility="shared",
            occurred_at="2026-11-20T07:30:00+05:30",
        )
        created = record(journal, ana, body)
        r = journal.patch(
            f"/v1/entries/{body['id']}", headers=ana["headers"], json={"intensity": 2}
        )
        assert r.status_code == 200, r.get_json()
        patched = r.get_json()
        assert patched["intensity"] == 2
        unchanged = {k: v for k, v in created.items() if k not in ("intensity", "updated_at")}
        assert {k: patched[k] for k in unchanged} == unchanged
        assert instant(patched["updated_at"]) >= instant(created["updated_at"])
        assert (
            journal.get(f"/v1/entries/{body['id']}", headers=ana["headers"]).get_json() == patched
        )

    def test_patching_occurred_at_keeps_its_offset_and_moves_local_date(self, journal):
        ana = sign_up(journal, "Ana", "Europe/Paris")
        created = record(journal, ana, entry(occurred_at="2026-11-20T07:30:00+01:00"))
        r = journal.patch(
            f"/v1/entries/{created['id']}",
            headers=ana["headers"],
            json={"occurred_at": "2026-11-20T23:30:00-05:00"},
        )
        assert r.status_code == 200
        assert r.get_json()["occurred_at"] == "2026-11-20T23:30:00-05:00"
        assert r.get_json()["local_date"] == "2026-11-21"

    def test_setting_a_required_measure_to_null_is_422_and_changes_nothing(self, journal, db):
        ana = sign_up(journal)

        def check(kind, field):
            created = record(journal, ana, valid_entry(kind))
            r = journal.patch(
                f"/v1/entries/{created['id']}", headers=ana["headers"], json={field: None}
            )
            assert_problem(r, 422, field)
            assert (
                journal.get(f"/v1/entries/{created['id']}", headers=ana["headers"]).get_json()
                == created
            )

        each_case(
            [
                ("anxious_episode", "intensity"),
                ("conflict", "intensity"),
                ("ritual", "ritual"),
                ("independence_activity", "activity"),
            ],
            check,
        )
        assert outbox_events(db, "journal.entry.revised") == []

    def test_clearing_the_last_of_the_at_least_one_fields_is_422(self, journal):
        ana = sign_up(journal)
        created = record(journal, ana, entry("daily_reflection", mood=4))
        path = f"/v1/entries/{created['id']}"
        r = journal.patch(path, headers=ana["headers"], json={"mood": None, "communication": 3})
        assert r.status_code == 200
        assert r.get_json()["communication"] == 3 and r.get_json().get("mood") is None
        assert_problem(
            journal.patch(path, headers=ana["headers"], json={"communication": None}),
            422,
            "communication",
        )

    def test_a_null_note_clears_the_note(self, journal):
        ana = sign_up(journal)
        created = record(journal, ana, entry(note="to forget"))
        r = journal.patch(
            f"/v1/entries/{created['id']}", headers=ana["headers"], json={"note": None}
        )
        assert r.status_code == 200
        assert r.get_json()["note"] is None
        assert (
            journal.get(f"/v1/entries/{created['id']}", headers=ana["headers"]).get_json()["note"]
            is None
        )

    def test_a_bad_patch_is_422_naming_the_field_and_changes_nothing(self, journal, db):
        ana = sign_up(journal)
        created = record(journal, ana, entry())

        def check(changes, field):
            r = journal.patch(f"/v1/entries/{created['id']}", headers=ana["headers"], json=changes)
            assert_problem(r, 422, field, exact=True)

        each_case(
            [
                ({"intensity": 11}, "intensity"),
                ({"intensity": "7"}, "intensity"),
                ({"intensity": 7.0}, "intensity"),
                ({"mood": 5}, "mood"),
                ({"kind": "conflict"}, "kind"),
                ({"id": new_id()}, "id"),
                ({"author_id": new_id()}, "author_id"),
                ({"visibility": "public"}, "visibility"),
                ({"visibility": None}, "visibility"),
                ({"occurred_at": None}, "occurred_at"),
                ({"occurred_at": "2026-11-20T07:30:00"}, "occurred_at"),
                ({"occurred_at": at(timedelta(minutes=30))}, "occurred_at"),
                ({"note": "x" * 10_001}, "note"),
                ({"sparkles": True}, "sparkles"),
            ],
            check,
        )
        assert (
            journal.get(f"/v1/entries/{created['id']}", headers=ana["headers"]).get_json()
            == created
        )
        assert outbox_events(db, "journal.entry.revised") == []

    def test_a_conflict_is_repaired_later_by_patch(self, journal, db):
        ana = sign_up(journal)
        created = record(
            journal, ana, entry("conflict", intensity=7, occurred_at="2026-11-20T07:30:00+01:00")
        )
        path = f"/v1/entries/{created['id']}"
        assert_problem(
            journal.patch(
                path, headers=ana["headers"], json={"repaired_at": "2026-11-20T06:00:00+01:00"}
            ),
            422,
            "repaired_at",
            exact=True,
        )
        r = journal.patch(
            path, headers=ana["headers"], json={"repaired_at": "2026-11-20T21:00:00+01:00"}
        )
        assert r.status_code == 200
        assert instant(r.get_json()["repaired_at"]) == instant("2026-11-20T21:00:00+01:00")
        assert r.get_json()["intensity"] == 7
        (ev,) = outbox_events(db, "journal.entry.revised")
        assert ev.data["repaired_at"] == instant("2026-11-20T21:00:00+01:00")

    def test_a_patch_publishes_entry_revised_with_the_entry_as_it_now_is(self, journal, db):
        ana, _ben, couple_id = make_couple(journal)
        created = record(journal, ana, valid_entry("anxious_episode", note="private words"))
        r = journal.patch(
            f"/v1/entries/{created['id']}",
            headers=ana["headers"],
            json={"intensity": 3, "visibility": "shared", "note": "other private words"},
        )
        assert r.status_code == 200
        (ev,) = outbox_events(db, "journal.entry.revised")
        assert ev.subject == couple_id
        assert str(ev.data["entry_id"]) == created["id"]
        assert str(ev.data["partner_id"]) == ana["id"]
        assert str(ev.data["couple_id"]) == couple_id
        assert ev.data["kind"] == "anxious_episode"
        assert ev.data["intensity"] == 3
        assert ev.data["visibility"] == "shared"
        assert ev.data["duration_minutes"] == CONTRACT_KINDS["anxious_episode"]["duration_minutes"]
        assert "note" not in ev.raw["data"]

    def test_patching_a_missing_entry_is_404(self, journal):
        ana = sign_up(journal)
        assert_problem(
            journal.patch(f"/v1/entries/{new_id()}", headers=ana["headers"], json={"intensity": 1}),
            404,
        )


# --- entries: deleting -----------------------------------------------------


class TestDelete:
    def test_delete_is_204_then_the_entry_is_404_and_gone(self, journal, db):
        ana = sign_up(journal)
        created = record(journal, ana, entry())
        path = f"/v1/entries/{created['id']}"
        r = journal.delete(path, headers=ana["headers"])
        assert r.status_code == 204
        assert r.get_data() == b""
        assert_problem(journal.get(path, headers=ana["headers"]), 404)
        assert_problem(journal.delete(path, headers=ana["headers"]), 404)
        assert_problem(journal.patch(path, headers=ana["headers"], json={"intensity": 1}), 404)
        assert created["id"] not in listed_ids(journal, ana)
        assert count(db, entries, entries.c.id == created["id"]) == 0

    def test_delete_publishes_entry_deleted(self, journal, db):
        ana, _ben, couple_id = make_couple(journal)
        created = record(journal, ana, entry())
        assert (
            journal.delete(f"/v1/entries/{created['id']}", headers=ana["headers"]).status_code
            == 204
        )
        (ev,) = outbox_events(db, "journal.entry.deleted")
        assert ev.subject == couple_id
        assert {k: str(v) for k, v in ev.data.items()} == {
            "entry_id": created["id"],
            "couple_id": couple_id,
            "partner_id": ana["id"],
        }


# --- export ----------------------------------------------------------------


class TestExport:
    def test_export_holds_the_account_the_couple_and_all_the_callers_entries_with_notes(
        self, journal
    ):
        ana, ben, couple_id = make_couple(journal)
        mine = {
            record(journal, ana, entry(note="mine, private"))["id"]: "mine, private",
            record(
                journal,
                ana,
                entry("ritual", ritual="affection", visibility="shared", note="mine, shared"),
            )["id"]: "mine, shared",
        }
        theirs = record(journal, ben, entry(visibility="shared", note="Ben's, shared"))["id"]
        r = journal.get("/v1/export", headers=ana["headers"])
        assert r.status_code == 200
        body = r.get_json()
        assert body["account"]["id"] == ana["id"]
        assert body["account"]["email"] == ana["email"]
        assert body["couple"]["id"] == couple_id
        assert {p["id"] for p in body["couple"]["partners"]} == {ana["id"], ben["id"]}
        assert {e["id"]: e["note"] for e in body["entries"]} == mine
        text = r.get_data(as_text=True)
        assert theirs not in text and "Ben's, shared" not in text
        assert "password" not in text

    def test_export_before_any_couple_has_no_couple(self, journal):
        ana = sign_up(journal)
        record(journal, ana, entry(note="alone"))
        body = journal.get("/v1/export", headers=ana["headers"]).get_json()
        assert body["couple"] is None
        assert [e["note"] for e in body["entries"]] == ["alone"]


# --- erasure ---------------------------------------------------------------


class TestErase:
    def test_erasing_an_account_removes_it_and_its_entries_and_ends_the_couple(self, journal, db):
        ana, ben, couple_id = make_couple(journal)
        for vis in ("private", "shared"):
            record(journal, ana, entry(visibility=vis, note="Ana's"))
        bens = record(journal, ben, entry(visibility="shared"))["id"]

        r = journal.delete("/v1/accounts/me", headers=ana["headers"])
        assert r.status_code == 204

        for method, path in [
            ("get", "/v1/accounts/me"),
            ("get", "/v1/entries"),
            ("get", "/v1/export"),
            ("get", "/v1/couples/me"),
            ("delete", "/v1/accounts/me"),
        ]:
            assert_unauthorized(getattr(journal, method)(path, headers=ana["headers"]))
        assert_unauthorized(journal.post("/v1/entries", headers=ana["headers"], json=entry()))
        assert_problem(_login(journal, ana["email"]), 401)

        assert count(db, entries, entries.c.author_id == ana["id"]) == 0
        assert count(db, entries, entries.c.note == "Ana's") == 0
        assert count(db, accounts, accounts.c.id == ana["id"]) == 0

        # Ben keeps his account and his entries, out of any couple; the couple is gone
        assert_problem(journal.get("/v1/couples/me", headers=ben["headers"]), 404)
        assert (
            journal.get("/v1/accounts/me", headers=ben["headers"]).get_json()["couple_id"] is None
        )
        assert count(db, couples, couples.c.id == couple_id) == 0
        assert listed_ids(journal, ben) == [bens]

        (ev,) = outbox_events(db, "journal.partner.erased")
        assert ev.subject == couple_id
        assert str(ev.data["partner_id"]) == ana["id"]
        assert str(ev.data["couple_id"]) == couple_id

    def test_erasing_an_account_without_a_couple_publishes_a_null_couple(self, journal, db):
        ana = sign_up(journal)
        assert journal.delete("/v1/accounts/me", headers=ana["headers"]).status_code == 204
        (ev,) = outbox_events(db, "journal.partner.erased")
        assert str(ev.data["partner_id"]) == ana["id"]
        assert ev.data["couple_id"] is None

    def test_an_erased_email_can_sign_up_again(self, journal):
        ana = sign_up(journal)
        journal.delete("/v1/accounts/me", headers=ana["headers"])
        r = journal.post(
            "/v1/accounts", json=_account(email=ana["email"], display_name="Ana again")
        )
        assert r.status_code == 201
        assert r.get_json()["id"] != ana["id"]


class TestAnErasureEndsTheCouple:
    """When a partner erases their account the couple ends: its invite code never works again, and a
    later partner sees nothing that was shared with the former one."""

    def _ended(self, journal):
        ana = sign_up(journal, "Ana")
        started = journal.post("/v1/couples", headers=ana["headers"]).get_json()
        ben = sign_up(journal, "Ben")
        assert (
            journal.post(
                "/v1/couples/join",
                headers=ben["headers"],
                json={"invite_code": started["invite_code"]},
            ).status_code
            == 200
        )
        shared_with_ben = record(journal, ana, entry(visibility="shared"))
        private = record(journal, ana, entry(visibility="private"))
        assert journal.delete("/v1/accounts/me", headers=ben["headers"]).status_code == 204
        return ana, started, shared_with_ben, private

    def test_a_strangers_old_invite_code_is_refused_after_an_erasure(self, journal, db):
        ana, started, shared_with_ben, _ = self._ended(journal)
        assert journal.get("/v1/couples/me", headers=ana["headers"]).status_code == 404
        stranger = sign_up(journal, "Mallory")
        before = outbox_bodies(db)
        r = journal.post(
            "/v1/couples/join",
            headers=stranger["headers"],
            json={"invite_code": started["invite_code"]},
        )
        assert_problem(r, 422, "invite_code", exact=True)
        assert_problem(journal.get("/v1/couples/me", headers=stranger["headers"]), 404)
        assert listed_ids(journal, stranger) == []
        assert_problem(
            journal.get(f"/v1/entries/{shared_with_ben['id']}", headers=stranger["headers"]), 404
        )
        assert outbox_bodies(db) == before

    def test_what_was_shared_with_a_former_partner_becomes_private_and_stays_the_authors(
        self, journal
    ):
        ana, _, shared_with_ben, private = self._ended(journal)
        mine = {
            e["id"]: e["visibility"]
            for e in journal.get("/v1/entries", headers=ana["headers"]).get_json()["items"]
        }
        assert mine == {shared_with_ben["id"]: "private", private["id"]: "private"}

    def test_a_new_partner_sees_nothing_shared_with_a_former_one(self, journal, db):
        ana, _, shared_with_ben, private = self._ended(journal)
        again = journal.post("/v1/couples", headers=ana["headers"])
        assert again.status_code == 201
        cleo = sign_up(journal, "Cleo")
        joined = journal.post(
            "/v1/couples/join",
            headers=cleo["headers"],
            json={"invite_code": again.get_json()["invite_code"]},
        )
        assert joined.status_code == 200
        assert [p["id"] for p in joined.get_json()["partners"]] == [ana["id"], cleo["id"]]
        for old in (shared_with_ben, private):
            assert_problem(journal.get(f"/v1/entries/{old['id']}", headers=cleo["headers"]), 404)
        assert listed_ids(journal, cleo) == []
        # what Ana shares with Cleo from now on, Cleo sees, and its event carries the new couple
        now_shared = record(journal, ana, entry(visibility="shared"))
        assert listed_ids(journal, cleo) == [now_shared["id"]]
        recorded = [
            ev
            for ev in outbox_events(db, "journal.entry.recorded")
            if str(ev.data["entry_id"]) == now_shared["id"]
        ]
        assert [str(ev.data["couple_id"]) for ev in recorded] == [again.get_json()["id"]]

    def test_an_entry_after_the_end_carries_no_couple(self, journal, db):
        ana, *_ = self._ended(journal)
        later = record(journal, ana, entry(visibility="shared"))
        (ev,) = [
            ev
            for ev in outbox_events(db, "journal.entry.recorded")
            if str(ev.data["entry_id"]) == later["id"]
        ]
        assert ev.data["couple_id"] is None and ev.subject == ana["id"]

    def test_the_starter_alone_erasing_leaves_no_couple_behind(self, journal, db):
        ana = sign_up(journal)
        started = journal.post("/v1/couples", headers=ana["headers"]).get_json()
        assert journal.delete("/v1/accounts/me", headers=ana["headers"]).status_code == 204
        assert count(db, couples) == 0
        ben = sign_up(journal, "Ben")
        assert_problem(
            journal.post(
                "/v1/couples/join",
                headers=ben["headers"],
                json={"invite_code": started["invite_code"]},
            ),
            422,
            "invite_code",
        )


# --- bodies that are too big or not JSON -----------------------------------


class TestMalformedBodies:
    def test_a_body_over_64_kib_is_413(self, journal, db):
        ana = sign_up(journal)
        for path in ("/v1/entries", "/v1/accounts"):
            assert_problem(
                journal.post(path, headers=ana["headers"], json=entry(note="x" * (64 * 1024))), 413
            )
        assert count(db, entries) == 0

    def test_a_body_just_under_64_kib_is_not_refused_for_its_size(self, journal):
        ana = sign_up(journal)
        body = dict(entry(), padding="y" * (60 * 1024))
        assert_problem(
            journal.post("/v1/entries", headers=ana["headers"], json=body),
            422,
            "padding",
            exact=True,
        )

    def test_deeply_nested_json_is_400(self, journal):
        ana = sign_up(journal)

        def check(raw):
            r = journal.post(
                "/v1/entries", headers=ana["headers"], data=raw, content_type="application/json"
            )
            assert_problem(r, 400)

        each_case([("[" * 30000,), ('{"a":' * 10000,), ("[" * 30000 + "]" * 30000,)], check)

    def test_a_body_that_is_not_a_json_object_is_a_4xx_problem_never_500(self, journal, db):
        ana = sign_up(journal)

        def check(data, content_type):
            for method, path in [
                ("post", "/v1/entries"),
                ("post", "/v1/accounts"),
                ("post", "/v1/tokens"),
                ("post", "/v1/couples/join"),
                ("patch", f"/v1/entries/{new_id()}"),
            ]:
                r = getattr(journal, method)(
                    path, headers=ana["headers"], data=data, content_type=content_type
                )
                assert 400 <= r.status_code < 500, (
                    path,
                    r.status_code,
                    r.get_data(as_text=True)[:300],
                )
                assert r.mimetype == PROBLEM, (path, r.mimetype)

        each_case(
            [
                ("hello", "text/plain"),
                ("hello", "application/json"),
                ('{"id": ', "application/json"),
                (b"\xff\xfe\x00", "application/json"),
                ("", "application/json"),
                ("[1, 2]", "application/json"),
                ('"a string"', "application/json"),
                ("null", "application/json"),
                ("42", "application/json"),
                ("id=1&kind=ritual", "application/x-www-form-urlencoded"),
            ],
            check,
        )
        assert count(db, entries) == 0


# --- concurrency: a double tap, a retry storm, a race between partners ------


def burst(journal, n: int, send) -> list:
    """n requests at once, each from its own client on its own thread: the responses, in thread order."""
    app = journal.application
    barrier = threading.Barrier(n)
    responses: list = [None] * n

    def go(i: int) -> None:
        client = app.test_client()
        barrier.wait(timeout=30)
        responses[i] = send(client, i)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r is not None for r in responses), "a request raised or hung"
    return responses


def codes(responses) -> list[int]:
    return sorted(r.status_code for r in responses)


class TestConcurrency:
    def test_concurrent_sign_ups_with_one_email_make_one_account_and_the_rest_409(
        self, journal, db
    ):
        body = _account()
        rs = burst(journal, 6, lambda c, i: c.post("/v1/accounts", json=body))
        assert codes(rs) == [201] + [409] * 5, [r.get_json() for r in rs]
        for r in rs:
            assert r.mimetype == ("application/json" if r.status_code == 201 else PROBLEM)
        assert count(db, accounts) == 1
        assert len(outbox_events(db, "journal.partner.registered")) == 1

    def test_concurrent_starts_by_one_partner_make_one_couple(self, journal, db):
        ana = sign_up(journal)
        rs = burst(journal, 4, lambda c, i: c.post("/v1/couples", headers=ana["headers"]))
        assert codes(rs) == [201, 409, 409, 409], [r.get_json() for r in rs]
        (won,) = [r.get_json() for r in rs if r.status_code == 201]
        assert journal.get("/v1/couples/me", headers=ana["headers"]).get_json()["id"] == won["id"]
        assert count(db, couples) == 1  # no orphan couple whose invite code leads nowhere

    def test_concurrent_joins_let_exactly_one_partner_in(self, journal, db):
        ana = sign_up(journal, "Ana")
        code = journal.post("/v1/couples", headers=ana["headers"]).get_json()["invite_code"]
        hopefuls = [sign_up(journal, f"P{i}") for i in range(5)]
        rs = burst(
            journal,
            5,
            lambda c, i: c.post(
                "/v1/couples/join", headers=hopefuls[i]["headers"], json={"invite_code": code}
            ),
        )
        assert codes(rs) == [200] + [409] * 4, [r.get_json() for r in rs]
        partners = journal.get("/v1/couples/me", headers=ana["headers"]).get_json()["partners"]
        assert len(partners) == 2
        assert count(db, accounts, accounts.c.couple_id.is_not(None)) == 2
        assert len(outbox_events(db, "journal.couple.partnered")) == 1

    def test_one_partner_joining_two_couples_at_once_ends_in_one(self, journal):
        ana, cleo, ben = sign_up(journal, "Ana"), sign_up(journal, "Cleo"), sign_up(journal, "Ben")
        invites = [
            journal.post("/v1/couples", headers=who["headers"]).get_json()["invite_code"]
            for who in (ana, cleo)
        ]
        rs = burst(
            journal,
            2,
            lambda c, i: c.post(
                "/v1/couples/join", headers=ben["headers"], json={"invite_code": invites[i]}
            ),
        )
        assert codes(rs) == [200, 409], [r.get_json() for r in rs]
        sizes = sorted(
            len(journal.get("/v1/couples/me", headers=who["headers"]).get_json()["partners"])
            for who in (ana, cleo)
        )
        assert sizes == [1, 2]

    def test_joins_racing_the_starters_erasure_never_leave_anyone_in_an_ended_couple(
        self, journal, db
    ):
        ana = sign_up(journal, "Ana")
        code = journal.post("/v1/couples", headers=ana["headers"]).get_json()["invite_code"]
        hopefuls = [sign_up(journal, f"P{i}") for i in range(4)]

        def act(c, i):
            if i == 0:
                return c.delete("/v1/accounts/me", headers=ana["headers"])
            return c.post(
                "/v1/couples/join", headers=hopefuls[i - 1]["headers"], json={"invite_code": code}
            )

        rs = burst(journal, 5, act)
        assert rs[0].status_code == 204, rs[0].get_json()
        assert {r.status_code for r in rs[1:]} <= {200, 409, 422}, [r.get_json() for r in rs]
        assert count(db, couples) == 0
        assert count(db, accounts, accounts.c.couple_id.is_not(None)) == 0
        late = sign_up(journal, "Late")
        assert_problem(
            journal.post("/v1/couples/join", headers=late["headers"], json={"invite_code": code}),
            422,
            "invite_code",
        )

    def test_concurrent_retries_of_one_entry_store_it_once(self, journal, db):
        ana = sign_up(journal)
        body = valid_entry("check_in", note="sent six times")
        rs = burst(
            journal, 6, lambda c, i: c.post("/v1/entries", headers=ana["headers"], json=body)
        )
        assert codes(rs) == [200] * 5 + [201], [r.get_json() for r in rs]
        assert all(r.get_json() == rs[0].get_json() for r in rs)
        assert count(db, entries) == 1
        assert len(outbox_events(db, "journal.entry.recorded")) == 1

    def test_concurrent_failed_logins_are_all_counted(self, journal):
        ana = sign_up(journal)
        rs = burst(journal, 10, lambda c, i: _login(c, ana["email"], "wrong password"))
        assert codes(rs) == [401] * 5 + [429] * 5
        assert_problem(_login(journal, ana["email"]), 429)


# --- the events the journal publishes --------------------------------------


class TestOutbox:
    def test_no_event_carries_a_note_and_every_event_is_a_valid_cloudevent(self, journal, db):
        secret = f"SECRET-NOTE-{uuid.uuid4().hex}"
        ana, ben, couple_id = make_couple(journal)
        loner = sign_up(journal, "Eve")
        recorded = [
            record(journal, who, valid_entry(kind, note=f"{secret}-{kind}", visibility="shared"))
            for who in (ana, ben)
            for kind in CONTRACT_KINDS
        ]
        record(journal, loner, valid_entry("ritual", note=f"{secret}-loner"))
        assert (
            journal.patch(
                f"/v1/entries/{recorded[0]['id']}",
                headers=ana["headers"],
                json={"note": f"{secret}-revised", "intensity": 9},
            ).status_code
            == 200
        )
        assert (
            journal.patch(
                f"/v1/entries/{recorded[1]['id']}", headers=ana["headers"], json={"note": None}
            ).status_code
            == 200
        )
        assert (
            journal.delete(f"/v1/entries/{recorded[2]['id']}", headers=ana["headers"]).status_code
            == 204
        )
        assert journal.delete("/v1/accounts/me", headers=ben["headers"]).status_code == 204

        with db.connect() as conn:
            rows = conn.execute(
                select(outbox.c.event_id, outbox.c.routing_key, outbox.c.body).order_by(
                    outbox.c.seq
                )
            ).all()
        for row in rows:
            assert secret not in row.body
            assert "note" not in json.loads(row.body)["data"]
            ev = events.parse(row.body)
            assert ev.id == row.event_id
            assert ev.type == row.routing_key
            assert ev.source == "/journal"
            assert ev.raw["specversion"] == "1.0"
            assert ev.raw["datacontenttype"] == "application/json"
            if ev.type.startswith("journal.entry."):
                expected_subject = (
                    loner["id"] if str(ev.data["partner_id"]) == loner["id"] else couple_id
                )
                assert ev.subject == expected_subject
        types = [r.routing_key for r in rows]
        assert types.count("journal.partner.registered") == 3
        assert types.count("journal.couple.partnered") == 1
        assert types.count("journal.entry.recorded") == 2 * len(CONTRACT_KINDS) + 1
        assert types.count("journal.entry.revised") == 2
        assert types.count("journal.entry.deleted") == 1
        assert types.count("journal.partner.erased") == 1
        assert len({r.event_id for r in rows}) == len(rows)

    def test_a_refused_request_leaves_no_event(self, journal, db):
        ana, ben, couple_id = make_couple(journal)
        shared = record(journal, ana, entry(visibility="shared"))
        before = outbox_bodies(db)
        assert (
            journal.post(
                "/v1/entries", headers=ana["headers"], json=entry(intensity=11)
            ).status_code
            == 422
        )
        assert (
            journal.post(
                "/v1/entries",
                headers=ana["headers"],
                json=entry(occurred_at=at(timedelta(hours=1))),
            ).status_code
            == 422
        )
        assert (
            journal.post(
                "/v1/entries", headers=ben["headers"], json=dict(entry(), id=shared["id"])
            ).status_code
            == 409
        )
        assert (
            journal.patch(
                f"/v1/entries/{shared['id']}", headers=ben["headers"], json={"intensity": 1}
            ).status_code
            == 403
        )
        assert (
            journal.delete(f"/v1/entries/{shared['id']}", headers=ben["headers"]).status_code == 403
        )
        assert (
            journal.post(
                "/v1/couples/join", headers=ana["headers"], json={"invite_code": "NOPENOPE"}
            ).status_code
            == 409
        )
        assert journal.post("/v1/couples", headers=ana["headers"]).status_code == 409
        assert outbox_bodies(db) == before
