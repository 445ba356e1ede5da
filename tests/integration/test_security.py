"""Security, on both backends.

1. Every endpoint of the three services, enumerated from each one's
   /openapi.json (a new endpoint is attacked without being listed here),
   refuses a request without a valid token with 401, an RFC 9457 problem and
   ``WWW-Authenticate: Bearer``, before reading its input, and changes nothing.
2. No partner reaches another couple's data, nor the other partner's private
   data: by id (404, the same answer as for an id that does not exist) and in
   every list.
3. Erasing an account, through the real pipeline, leaves nothing of that
   partner in any table of any service's database.
4. The token keys come only from the environment (or are made under
   TANDEM_VAR_DIR); no key material is written in the code.

Login throttling is covered by tests/integration/test_journal_api.py (TestLogin).
What is known to be wrong and not fixed here is reported by ``pytest.xfail``
("FINDING: ...", with figures) once everything else in the test has passed: it
shows in every run's summary, and the test passes by itself once it is fixed.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import json
import re
import stat
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import inspect, select, text

from services import SERVICES
from services.journal import sessions as journal_sessions
from services.journal import throttle
from shared import auth, events
from shared.db import make_session_factory, unit_of_work, utcnow
from tests.conftest import entry, make_couple, new_id, sign_up
from tests.fcm import push_token
from tests.support import (
    Pipeline,
    at,
    paris_today,
    post_all,
    publish_events,
    rituals,
    service_clients,
    wait_until,
)

PROBLEM = "application/problem+json"
REPO = Path(__file__).resolve().parents[2]

# Served without a token by design (the public contract): probes, metrics, the API's documentation and
# its page's scripts and style.
PUBLIC_ROUTES = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/assets/<name>",
}
# Signing up and logging in are how a token is had: they cannot ask for one.
# Signing in, and what one holds instead of an access token: a refresh token, a forgotten password's email, a
# reset link's token.
SIGN_IN = {
    ("journal", "POST", "/v1/accounts"),
    ("journal", "POST", "/v1/tokens"),
    ("journal", "POST", "/v1/tokens/refresh"),
    ("journal", "POST", "/v1/password-resets"),
    ("journal", "POST", "/v1/password-resets/confirm"),
}
# Which resource each path parameter names; a new one must be added here (the tests say so).
PARAM_KINDS = {
    "entry_id": "entries",
    "milestone_id": "milestones",
    "notification_id": "notifications",
    "channel_id": "channels",
    "device_id": "devices",
    "session_id": "sessions",
}
STREAM = ("GET", "/v1/notifications/stream")
# A PDF by default: its content is read as the JSON it is made from (the same numbers and words).
REPORT = ("GET", "/v1/report")


# --- the endpoints, from each service's OpenAPI document --------------------


@dataclass(frozen=True)
class Op:
    service: str
    method: str
    path: str  # as OpenAPI writes it: /v1/entries/{entry_id}
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    secured: bool  # the document says it needs a bearer token

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.path}"


def _operations(clients) -> list[Op]:
    ops = []
    for service, client in clients.items():
        spec = client.get("/openapi.json").get_json()
        for path, item in spec["paths"].items():
            for method, op in item.items():
                if method not in {"get", "post", "put", "patch", "delete"}:
                    continue
                params = op.get("parameters", []) + item.get("parameters", [])
                ops.append(
                    Op(
                        service,
                        method.upper(),
                        path,
                        tuple(p["name"] for p in params if p["in"] == "path"),
                        tuple(p["name"] for p in params if p["in"] == "query"),
                        bool(op.get("security")),
                    )
                )
    return ops


def _protected(clients) -> list[Op]:
    ops = [op for op in _operations(clients) if (op.service, op.method, op.path) not in SIGN_IN]
    assert len(ops) >= 22, [
        str(op) for op in ops
    ]  # what v1 has; the enumeration must not come up short
    return ops


def _url(op: Op, ids: dict[str, str], **query) -> str:
    """The op's URL with a resource id of the right kind in each path parameter."""
    missing = [p for p in op.path_params if p not in PARAM_KINDS]
    assert not missing, (
        f"{op} takes {missing}: add the kind of resource to PARAM_KINDS and the world"
    )
    path = op.path.format(**{p: ids[PARAM_KINDS[p]] for p in op.path_params})
    if "limit" in op.query_params:
        query.setdefault("limit", 200)
    if op.key == ("GET", "/v1/progress"):  # its one required parameter
        query.setdefault("metric", "anxious_episodes")
    return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def _body(op: Op, invite_code: str) -> dict | None:
    """A valid body for the ops that read one: what is refused is the token, not the input."""
    bodies = {
        ("POST", "/v1/entries"): entry(note="written with a bad token"),
        ("POST", "/v1/entries/batch"): {"entries": [entry(note="batched with a bad token")]},
        ("PATCH", "/v1/entries/{entry_id}"): {
            "note": "changed with a bad token",
            "visibility": "shared",
        },
        ("POST", "/v1/couples/join"): {"invite_code": invite_code},
        ("PATCH", "/v1/preferences"): {
            "share_milestones_with_partner": True,
            "channels": {"email": False},
        },
        ("POST", "/v1/channels"): {"type": "email", "address": "intruder@example.com"},
        ("POST", "/v1/devices"): {"platform": "fcm", "token": push_token("intruder")},
        ("POST", "/v1/accounts/me/password"): {
            "current_password": "correct horse battery",
            "new_password": "changed with a bad token",
        },
    }
    return bodies.get(op.key)


def _call(clients, op: Op, url: str, headers: dict, body=None):
    kwargs = {"headers": headers} if body is None else {"headers": headers, "json": body}
    return clients[op.service].open(url, method=op.method, **kwargs)


# --- a world of two couples, through the real pipeline ----------------------


@dataclass
class Person:
    id: str
    email: str
    headers: dict
    couple_id: str
    partner: Person | None = field(default=None, repr=False)
    entries: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (visibility, note)
    anxious: int = 0  # anxious moments recorded, private and shared
    rituals: int = 0
    channels: dict[str, str] = field(default_factory=dict)  # id -> address
    devices: dict[str, str] = field(default_factory=dict)  # id -> push token
    notifications: set[str] = field(default_factory=set)
    own_milestones: set[str] = field(default_factory=set)  # not shared with the partner
    sessions: list[str] = field(
        default_factory=list
    )  # the sign-up's login's, then a second device's


@dataclass
class World:
    clients: dict
    people: list[Person]
    couple_milestones: dict[str, str]  # couple id -> its milestone's id
    invite_code: str  # of a couple still waiting for its second partner


def _person(journal, backend, who: dict, couple_id: str) -> Person:
    token = who["headers"]["Authorization"].split()[1]
    tablet = journal.post(
        "/v1/tokens",
        json={"email": who["email"], "password": "correct horse battery", "device_name": "tablet"},
    )
    assert tablet.status_code == 201, tablet.status_code
    sessions = [
        auth.TokenVerifier(auth.public_key_pem(backend.var_dir)).verified_claims(token)["sid"],
        tablet.get_json()["session_id"],
    ]
    return Person(who["id"], who["email"], who["headers"], couple_id, sessions=sessions)


def _inbox(notify, headers: dict) -> list[dict]:
    r = notify.get("/v1/notifications?limit=200", headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["items"]


def _own_milestone(backend, owner_id: str, partner_id: str, headline: str) -> str:
    """A partner's own milestone, stored and announced (outbox) by the evaluator's
    own step, as if detected: statistical ones need months of entries."""
    from services.milestones import evaluation, rules
    from services.milestones.tables import partners

    with _engine(backend, "milestones") as engine, unit_of_work(make_session_factory(engine)) as s:
        row = s.execute(select(partners).where(partners.c.id == owner_id)).one()
        found = rules.Detection("calmer_episodes", 1, rules.PARTNER, {"p_value": 0.001}, headline)
        return evaluation._achieve(s, row, partner_id, found, paris_today(), utcnow())["id"]


@contextlib.contextmanager
def _engine(backend, service: str):
    engine = backend.engine(service)
    try:
        yield engine
    finally:
        engine.dispose()


def _ended_sessions(backend, session_id: str) -> list:
    from services.notify.tables import ended_sessions

    with _engine(backend, "notify") as engine, engine.connect() as c:
        return c.execute(
            select(ended_sessions).where(ended_sessions.c.session_id == session_id)
        ).all()


def _partner_row(backend, service: str, partner_id: str):
    """The partner's row in a consuming service's own view of the partners."""
    from services.milestones.tables import partners
    from services.notify.tables import recipients

    table = {"milestones": partners, "notify": recipients}[service]
    with _engine(backend, service) as engine, engine.connect() as c:
        return c.execute(select(table).where(table.c.id == partner_id)).first()


def _in_a_session(backend, partner_id: str, session_id: str | None = None) -> dict:
    """Headers of a token of a login session of the partner's (the journal's own may carry none)."""
    issuer = auth.TokenIssuer(auth.private_key_pem(backend.var_dir), 600)
    return {
        "Authorization": "Bearer " + issuer.issue(partner_id, session_id=session_id or new_id())
    }


def _record(journal, p: Person, visibility: str, day: int) -> None:
    body = entry(
        note=f"note-{new_id()}",
        visibility=visibility,
        occurred_at=at(paris_today() - timedelta(days=day), 7),
    )
    r = journal.post("/v1/entries", headers=p.headers, json=body)
    assert r.status_code == 201, r.get_json()
    p.entries[body["id"]] = (visibility, body["note"])
    p.anxious += 1


def _build_world(backend, journal) -> World:
    clients = service_clients(journal)
    notify = clients["notify"]
    people: list[Person] = []
    for _ in range(2):
        a, b, couple_id = make_couple(journal)
        pa, pb = _person(journal, backend, a, couple_id), _person(journal, backend, b, couple_id)
        pa.partner, pb.partner = pb, pa
        people += [pa, pb]
    lone = sign_up(journal, "Cleo")
    invite_code = journal.post("/v1/couples", headers=lone["headers"]).get_json()["invite_code"]
    with Pipeline():
        for i, p in enumerate(people):
            for k in range(
                i + 1
            ):  # 1, 2, 3, 4 anxious moments: a series counted from another's is seen
                _record(journal, p, "private" if k == 0 else "shared", k + 1)
            r = notify.post(
                "/v1/channels",
                headers=p.headers,
                json={"type": "email", "address": f"alerts-{new_id()[:8]}@example.com"},
            )
            assert r.status_code == 201, r.get_json()
            p.channels[r.get_json()["id"]] = r.get_json()["address"]
            token = push_token()
            r = notify.post(
                "/v1/devices",
                headers=_in_a_session(backend, p.id),
                json={"platform": "fcm", "token": token},
            )
            assert r.status_code == 201, r.get_json()
            p.devices[r.get_json()["id"]] = token
        for (a, b), first in zip(
            (people[:2], people[2:]), (6, 7)
        ):  # ten rituals a couple: its milestone
            kept = rituals(paris_today(), 10)
            post_all(journal, a.headers, kept[:first])
            post_all(journal, b.headers, kept[first:])
            a.rituals, b.rituals = first, 10 - first
        wait_until(
            lambda: all(_inbox(notify, p.headers) for p in people),
            timeout=40,
            what="the couples' ritual milestones in every inbox",
        )
        a1 = people[0]
        a1.own_milestones.add(
            _own_milestone(backend, a1.id, a1.partner.id, "Calmer moments, in a1's own numbers.")
        )
        wait_until(
            lambda: any(n["milestone_id"] in a1.own_milestones for n in _inbox(notify, a1.headers)),
            what="a1's own milestone in a1's inbox",
        )
    couple_milestones = {}
    for p in people:
        p.notifications = {n["id"] for n in _inbox(notify, p.headers)}
        items = clients["milestones"].get("/v1/milestones", headers=p.headers).get_json()["items"]
        couple_milestones.update(
            {m["couple_id"]: m["id"] for m in items if m["partner_id"] is None}
        )
    assert len(couple_milestones) == 2, couple_milestones
    return World(clients, people, couple_milestones, invite_code)


# --- every row of every table of every service ------------------------------


def _all_rows(backend) -> dict[tuple[str, str], list[dict]]:
    out = {}
    for service in SERVICES:
        with _engine(backend, service) as engine, engine.connect() as c:
            for table in sorted(inspect(engine).get_table_names()):
                rows = [dict(r._mapping) for r in c.execute(text(f'SELECT * FROM "{table}"'))]
                out[(service, table)] = sorted(rows, key=repr)
    return out


def _assert_unchanged(before: dict, after: dict) -> None:
    changed = {
        f"{s}.{t}": (len(before.get((s, t), [])), len(after.get((s, t), [])))
        for (s, t) in set(before) | set(after)
        if before.get((s, t)) != after.get((s, t))
    }
    assert not changed, f"tables changed (rows before, after): {changed}"


# --- 1. no valid token: 401, a problem, nothing changed ---------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _claims(sub: str, **over) -> dict:
    now = int(time.time())
    claims = {
        "sub": sub,
        "iss": auth.ISSUER,
        "aud": auth.AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "jti": new_id(),
        "sid": new_id(),
    }
    claims.update(over)
    return claims


def _attacks(backend, sub: str, sid: str | None = None) -> tuple[dict[str, dict], str]:
    """Each way of not having a valid token, as headers; and the valid token each differs from (of session
    ``sid``)."""
    key = serialization.load_pem_private_key(auth.private_key_pem(backend.var_dir), None)
    now = int(time.time())

    def signed(**over) -> str:
        return jwt.encode(_claims(sub, **over), key, algorithm=auth.ALGORITHM)

    unsigned = ".".join(
        [
            _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()),
            _b64(json.dumps(_claims(sub)).encode()),
            "",
        ]
    )
    valid = signed(sid=sid)
    bearer = {
        "expired": signed(iat=now - 7200, exp=now - 600),
        "alg none, unsigned": unsigned,
        "signed with another Ed25519 key": jwt.encode(
            _claims(sub), Ed25519PrivateKey.generate(), algorithm=auth.ALGORITHM
        ),
        "wrong issuer": signed(iss="tandem-impostor"),
        "wrong audience": signed(aud="someone-else"),
        "not a JWT": "not-a-jwt",
    }
    attacks = {"no Authorization header": {}}
    attacks.update({name: {"Authorization": f"Bearer {token}"} for name, token in bearer.items()})
    attacks.update(
        {
            "malformed: Bearer and no token": {"Authorization": "Bearer"},
            "malformed: a valid token without its scheme": {"Authorization": valid},
            "malformed: a valid token under another scheme": {"Authorization": f"Token {valid}"},
            "malformed: Basic credentials": {
                "Authorization": "Basic " + base64.b64encode(b"ana:secret").decode()
            },
        }
    )
    return attacks, valid


def _check_unauthorized(r, failures: list, what: str) -> None:
    try:
        assert r.status_code == 401, r.status_code
        assert r.mimetype == PROBLEM, r.mimetype
        body = r.get_json()
        assert body["status"] == 401 and body["title"] and body["type"], body
        assert "errors" not in body, (
            body
        )  # nothing about the input of a caller who is not signed in
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), dict(r.headers)
    except AssertionError as e:
        failures.append(f"{what}: {e}")
    finally:
        r.close()


def test_only_the_public_routes_and_sign_in_answer_without_a_token(backend, journal):
    clients = service_clients(journal)
    ops = _operations(clients)
    assert {(op.service, op.method, op.path) for op in ops if not op.secured} == SIGN_IN
    unexpected, static = [], []
    for service, client in clients.items():
        documented = {re.sub(r"\{(\w+)\}", r"\1", op.path) for op in ops if op.service == service}
        for rule in client.application.url_map.iter_rules():
            if re.sub(r"<(?:\w+:)?(\w+)>", r"\1", rule.rule) in documented:
                continue
            if rule.rule == "/static/<path:filename>":
                static.append(service)
            elif rule.rule not in PUBLIC_ROUTES:
                unexpected.append(f"{service} {rule.rule}")
        for path in PUBLIC_ROUTES - {"/docs/assets/<name>"}:
            assert client.get(path).status_code in (200, 503), (
                service,
                path,
            )  # /readyz: 503 is an answer
    assert not unexpected, f"routes outside the OpenAPI document and the public ones: {unexpected}"
    if static:
        pytest.xfail(
            f"FINDING: Flask's default /static/<path:filename> route is registered on {static}, public, "
            "serving <cwd>/static (Flask(service_name) has the cwd as root_path); nothing is there "
            "today. Fix: Flask(settings.service, static_folder=None) in shared/web.py."
        )


def test_every_endpoint_refuses_a_missing_or_bad_token_before_reading_input_and_changes_nothing(
    backend, journal
):
    world = _build_world(backend, journal)
    a1 = world.people[0]
    ids = {
        "entries": next(iter(a1.entries)),
        "milestones": next(iter(a1.own_milestones)),
        "notifications": next(iter(a1.notifications)),
        "channels": next(iter(a1.channels)),
        "devices": next(iter(a1.devices)),
        "sessions": a1.sessions[1],
    }
    ops = _protected(world.clients)
    attacks, valid = _attacks(backend, a1.id, sid=a1.sessions[0])
    before = _all_rows(backend)
    failures: list[str] = []
    for op in ops:
        url, body = _url(op, ids), _body(op, world.invite_code)
        for name, headers in attacks.items():
            _check_unauthorized(
                _call(world.clients, op, url, headers, body), failures, f"{op} [{name}]"
            )
        # Input that would be refused, and no token: still 401, with nothing said about the input.
        bad = _url(op, ids, limit=0, cursor="garbage", metric="nope", bogus=1)
        _check_unauthorized(
            _call(
                world.clients,
                op,
                bad,
                {},
                {"bogus": [1]} if op.method in ("POST", "PATCH") else None,
            ),
            failures,
            f"{op} [invalid input, no token]",
        )
    assert not failures, (
        f"{len(failures)} of {len(ops) * (len(attacks) + 1)} refusals wrong:\n"
        + "\n".join(failures)
    )
    _assert_unchanged(before, _all_rows(backend))

    # The control: the same requests with a valid token are served, so the token was what was refused.
    # Erasing the account last, a password change (which ends the other sessions) before it but after the
    # session's end, a deletion after the change of the same entry.
    order = sorted(
        ops,
        key=lambda op: (
            op.path == "/v1/accounts/me" and op.method == "DELETE",
            op.path == "/v1/accounts/me/password",
            op.method == "DELETE",
        ),
    )
    for op in order:
        r = _call(
            world.clients,
            op,
            _url(op, ids),
            {"Authorization": f"Bearer {valid}"},
            _body(op, world.invite_code),
        )
        ok = r.status_code < 500 and r.status_code not in (
            400,
            401,
            404,
            422,
        )  # 409: already in a couple
        failures += (
            []
            if ok
            else [f"{op} with a valid token: {r.status_code} {r.get_data(as_text=True)[:300]}"]
        )
        r.close()
    assert not failures, "\n".join(failures)


# --- 2. another couple's data, the other partner's private data -------------


@dataclass(frozen=True)
class Resource:
    kind: str
    id: str
    owner: Person | None  # None: the couple's
    visible_to: frozenset[str]  # partner ids
    secrets: tuple[
        str, ...
    ] = ()  # what else of it must not be shown to others (a note, an address)


def _resources(world: World) -> list[Resource]:
    out = []
    for p in world.people:
        both = frozenset({p.id, p.partner.id})
        for entry_id, (visibility, note) in p.entries.items():
            out.append(
                Resource(
                    "entries",
                    entry_id,
                    p,
                    both if visibility == "shared" else frozenset({p.id}),
                    (note,),
                )
            )
        out += [Resource("milestones", m, p, frozenset({p.id})) for m in p.own_milestones]
        out += [Resource("notifications", n, p, frozenset({p.id})) for n in p.notifications]
        out += [
            Resource("channels", c, p, frozenset({p.id}), (address,))
            for c, address in p.channels.items()
        ]
        out += [
            Resource("devices", d, p, frozenset({p.id}), (token,)) for d, token in p.devices.items()
        ]
        out += [Resource("sessions", sid, p, frozenset({p.id})) for sid in p.sessions]
    for couple_id, milestone_id in world.couple_milestones.items():
        both = frozenset(p.id for p in world.people if p.couple_id == couple_id)
        out.append(Resource("milestones", milestone_id, None, both))
    return out


def _hidden_from(world: World, caller: Person) -> set[str]:
    hidden = set()
    for r in _resources(world):
        if caller.id not in r.visible_to:
            hidden |= {r.id, *r.secrets}
    for p in world.people:
        if p.couple_id != caller.couple_id:
            hidden |= {p.id, p.email, p.couple_id}
    hidden.add(caller.partner.email)  # the partner is shown by name, never by address
    return hidden


def _first_chunk(client, url: str, headers: dict) -> str:
    """What the live stream sends at once (its backlog), without waiting for more."""
    r = client.get(url, headers=headers, buffered=False)
    try:
        assert r.status_code == 200, r.status_code
        return next(iter(r.response)).decode()
    finally:
        r.close()


def test_no_partner_reaches_another_couples_data_nor_the_other_partners_private_data(
    backend, journal
):
    world = _build_world(backend, journal)
    ops, resources = _protected(world.clients), _resources(world)
    before = _all_rows(backend)
    failures: list[str] = []

    # By id: another couple's resource, or the partner's private one, is 404 like an id that does not exist.
    for op in (op for op in ops if op.path_params):
        kind = PARAM_KINDS[op.path_params[0]]
        body = _body(op, world.invite_code)
        for caller in world.people:
            ghost = _call(world.clients, op, _url(op, {kind: new_id()}), caller.headers, body)
            assert ghost.status_code == 404, (str(op), ghost.status_code)
            for res in (r for r in resources if r.kind == kind):
                if caller.id in res.visible_to and (op.method == "GET" or res.owner is caller):
                    continue  # the caller's own, or shared with them (own writes: test 1's control)
                r = _call(world.clients, op, _url(op, {kind: res.id}), caller.headers, body)
                shown = r.get_data(as_text=True)
                leaked = [s for s in (res.id, *res.secrets) if s in shown]
                if caller.id in res.visible_to:  # the partner's shared entry: seen, not changed
                    expected_ok = r.status_code == 403 and not set(leaked) & set(res.secrets)
                else:
                    expected_ok = (
                        r.status_code == 404 and r.get_json() == ghost.get_json() and not leaked
                    )
                if not expected_ok:
                    failures.append(
                        f"{op} {res.kind} of {res.owner and res.owner.id} by {caller.id}: "
                        f"{r.status_code} {shown[:200]}"
                    )

    # Lists (every GET without an id): nothing hidden from the caller, everything the caller may see.
    for caller in world.people:
        hidden, shown = _hidden_from(world, caller), []
        for op in (op for op in ops if op.method == "GET" and not op.path_params):
            if (
                op.key == STREAM
            ):  # the backlog sent at once, resumed after each notification there is
                for since in [None] + [r.id for r in resources if r.kind == "notifications"]:
                    shown.append(
                        _first_chunk(
                            world.clients["notify"],
                            _url(op, {}, **({"since": since} if since else {})),
                            caller.headers,
                        )
                    )
                continue
            as_json = {"Accept": "application/json"} if op.key == REPORT else {}
            r = _call(world.clients, op, _url(op, {}), {**caller.headers, **as_json})
            assert r.status_code == 200, (str(op), r.status_code, r.get_json())
            shown.append(r.get_data(as_text=True))
        text_shown = "\n".join(shown)
        failures += [f"{caller.id} is shown {s!r}" for s in sorted(hidden) if s in text_shown]
        failures += [
            f"{caller.id} is not shown {r.kind} {r.id}"
            for r in resources
            if caller.id in r.visible_to and r.id not in text_shown
        ]
        for metric, count in (("anxious_episodes", caller.anxious), ("rituals", caller.rituals)):
            r = world.clients["milestones"].get(
                f"/v1/progress?metric={metric}", headers=caller.headers
            )
            total = sum(p["value"] or 0 for p in r.get_json()["points"])
            failures += (
                []
                if total == count
                else [f"{caller.id}'s {metric} series sums {total}, not {count}"]
            )

    assert not failures, "\n".join(failures)
    _assert_unchanged(before, _all_rows(backend))


# --- 3. erasure leaves nothing ----------------------------------------------


def _pair(journal, a: dict, b: dict) -> str:
    c = journal.post("/v1/couples", headers=a["headers"])
    assert c.status_code == 201, c.get_json()
    j = journal.post(
        "/v1/couples/join", headers=b["headers"], json={"invite_code": c.get_json()["invite_code"]}
    )
    assert j.status_code == 200, j.get_json()
    return c.get_json()["id"]


def _unpublished(backend) -> int:
    n = 0
    for service in SERVICES:
        with _engine(backend, service) as engine, engine.connect() as c:
            n += c.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL")).scalar()
    return n


def _text(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _scan(rows: dict, needles: dict[str, str]) -> list[tuple]:
    """(service, table, column, what, row) for every value equal to or containing a needle."""
    hits = []
    for (service, table), table_rows in rows.items():
        for row in table_rows:
            for column, value in row.items():
                found = _text(value).lower()
                hits += [
                    (service, table, column, what, row)
                    for what, needle in needles.items()
                    if needle.lower() in found
                ]
    return hits


def test_erasing_an_account_leaves_nothing_of_that_partner_in_any_database(backend, journal):
    clients = service_clients(journal)
    notify = clients["notify"]
    name = f"Quilla{uuid.uuid4().hex[:8]}"  # a display name found nowhere else
    marker = f"erase-marker-{uuid.uuid4().hex}"
    ana, ben = sign_up(journal, name), sign_up(journal, "Ben", "America/New_York")
    _pair(journal, ana, ben)
    needles = {"id": ana["id"], "email": ana["email"], "display name": name, "note": marker}
    with Pipeline():
        for visibility in ("private", "shared"):
            r = journal.post(
                "/v1/entries",
                headers=ana["headers"],
                json=entry(note=f"{marker} {visibility}", visibility=visibility),
            )
            assert r.status_code == 201, r.get_json()
        assert (
            journal.post(
                "/v1/entries",
                headers=ben["headers"],
                json=entry(note="Ben's own words", visibility="shared"),
            ).status_code
            == 201
        )
        kept = rituals(paris_today(), 10)
        post_all(journal, ana["headers"], kept[:6])
        post_all(journal, ben["headers"], kept[6:])
        assert (
            notify.post(
                "/v1/channels",
                headers=ana["headers"],
                json={"type": "email", "address": ana["email"]},
            ).status_code
            == 201
        )
        assert (
            notify.patch(
                "/v1/preferences",
                headers=ana["headers"],
                json={"share_milestones_with_partner": True},
            ).status_code
            == 200
        )
        ended, current = new_id(), new_id()  # her phone, and a login session of hers that ended
        assert (
            notify.post(
                "/v1/devices",
                headers=_in_a_session(backend, ana["id"], current),
                json={"platform": "apns", "token": push_token()},
            ).status_code
            == 201
        )
        publish_events(
            events.make_event(
                "journal.session.ended",
                source="/journal",
                subject=ana["id"],
                data={"partner_id": ana["id"], "session_id": ended, "reason": "logout"},
            )
        )
        wait_until(
            lambda: _ended_sessions(backend, ended), what="her ended session heard by notify"
        )
        wait_until(
            lambda: (
                (row := _partner_row(backend, "milestones", ana["id"]))
                and row.couple_id
                and row.share_milestones_with_partner
            ),
            what="Ana's couple and sharing in the milestones view",
        )
        _own_milestone(
            backend, ana["id"], ben["id"], "Calmer moments, in Ana's own numbers."
        )  # Ben is told too
        wait_until(
            lambda: (
                len(_inbox(notify, ana["headers"])) == 2
                and len(_inbox(notify, ben["headers"])) == 2
            ),
            what="the couple's and Ana's shared milestone in both inboxes",
        )

        # Her sessions (a refreshed one, whose retired token is kept as a hash), a reset link, failed logins.
        devices = [
            journal.post(
                "/v1/tokens",
                json={
                    "email": ana["email"],
                    "password": "correct horse battery",
                    "device_name": f"{name}'s phone",
                },
            ).get_json()
            for _ in range(2)
        ]
        refreshed = journal.post(
            "/v1/tokens/refresh", json={"refresh_token": devices[0]["refresh_token"]}
        )
        assert refreshed.status_code == 201
        assert journal.post("/v1/password-resets", json={"email": ana["email"]}).status_code == 202
        for _ in range(2):
            assert (
                journal.post(
                    "/v1/tokens",
                    json={"email": ana["email"], "password": "wrong password"},
                    environ_base={"REMOTE_ADDR": "203.0.113.44"},
                ).status_code
                == 401
            )
        with _engine(backend, "journal") as engine, engine.connect() as c:
            reset_hashes = (
                c.execute(
                    text("SELECT token_hash FROM password_resets WHERE partner_id = :p"),
                    {"p": ana["id"]},
                )
                .scalars()
                .all()
            )
        assert len(reset_hashes) == 1
        tokens = [d["refresh_token"] for d in devices] + [refreshed.get_json()["refresh_token"]]
        needles.update({f"session {i}": d["session_id"] for i, d in enumerate(devices)})
        needles.update({f"refresh token {i}": t for i, t in enumerate(tokens)})
        needles.update(
            {f"refresh token hash {i}": journal_sessions.digest(t) for i, t in enumerate(tokens)}
        )
        needles.update(
            {"reset token hash": reset_hashes[0], "email digest": throttle.email_key(ana["email"])}
        )
        assert journal.delete("/v1/accounts/me", headers=ana["headers"]).status_code == 204
        wait_until(
            lambda: (
                _partner_row(backend, "milestones", ana["id"]).erased
                and _partner_row(backend, "notify", ana["id"]).erased
            ),
            timeout=30,
            what="the erasure to reach the milestones and notify services",
        )
        # Ana's token has not expired: it may still read (nothing of hers is left to read) but no write
        # may take it, or it would bring back what the erasure removed (the scan below would show it).
        refused = []
        for op in sorted(_protected(clients), key=lambda op: op.method == "DELETE"):
            r = _call(
                clients,
                op,
                _url(op, {k: new_id() for k in PARAM_KINDS.values()}),
                ana["headers"],
                _body(op, "AAAAAAAAAA"),
            )
            shown = "" if op.key == STREAM else r.get_data(as_text=True)
            if r.status_code != 401 and (
                op.method != "GET" or [n for n in needles.values() if n in shown]
            ):
                refused.append(
                    f"{op} with the erased partner's token: {r.status_code} {shown[:200]}"
                )
            r.close()
        assert not refused, "\n".join(refused)
        wait_until(lambda: _unpublished(backend) == 0, what="every outbox published")
    rows = _all_rows(backend)

    # What may remain, and why:
    # - the couple's row and Ben's account, entries, notifications, channels and the couple's milestone:
    #   Ben's data (none of it holds a needle, or the scan below says so);
    # - processed_events: event ids, never a partner's;
    # - a tombstone per consuming service (milestones.partners, notify.recipients): Ana's random id and
    #   erased=true, every other column emptied, so that a late or redelivered event about her (an entry
    #   synced late, a registration) is ignored instead of bringing her data back;
    # - the journal's own `journal.partner.erased` event (ids only), published: it is the erasure's
    #   announcement, kept like every published row until the relay's retention cleanup. Every other
    #   published row naming her is deleted with her (shared.outbox.forget_published).
    tombstones = {
        ("milestones", "partners"): (
            "couple_id",
            "timezone",
            "dirty_since",
            "replay_from",
            "next_scheduled_at",
        ),
        ("notify", "recipients"): ("email", "display_name", "timezone", "couple_id"),
    }
    unexpected, findings = [], []
    for service, table, column, what, row in _scan(rows, needles):
        emptied = tombstones.get((service, table))
        if emptied and column == "id" and row["erased"] and not any(row[c] for c in emptied):
            continue
        if (
            table == "outbox"
            and row.get("routing_key") == "journal.partner.erased"
            and what == "id"
            and set(json.loads(row["body"])["data"]) == {"partner_id", "couple_id"}
        ):
            continue
        if table == "outbox" or (service, table, column) == ("notify", "notifications", "title"):
            findings.append((service, table, column, what, row))
        else:
            unexpected.append(f"{service}.{table}.{column} holds her {what}: {row}")
    assert not [f for f in findings if f[3] == "note"], "a note left the journal"
    assert not unexpected, "\n".join(unexpected)
    if findings:
        pytest.xfail("FINDING: after the erasure settles, " + _describe(findings))


def _describe(findings: list[tuple]) -> str:
    """Figures: per service and table, the rows that still hold the erased partner's id, email or name."""
    parts = []
    for service, table in sorted({(f[0], f[1]) for f in findings}):
        mine = [f for f in findings if (f[0], f[1]) == (service, table)]
        rows = {id(f[4]): f[4] for f in mine}
        by_what = {
            w: len({id(f[4]) for f in mine if f[3] == w}) for w in sorted({f[3] for f in mine})
        }
        kinds = sorted({r.get("routing_key", "") for r in rows.values()} - {""})
        published = sum(1 for r in rows.values() if r.get("published_at"))
        parts.append(
            f"{service}.{table}: {len(rows)} row(s) hold her {by_what}"
            + (
                f" ({', '.join(kinds)}; {published} published, kept until the relay's "
                "2-day retention cleanup)"
                if table == "outbox"
                else ""
            )
        )
    return "; ".join(parts)


# --- 4. secrets come from the environment -----------------------------------


def _pem_pair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_the_token_keys_come_from_the_environment(backend, tmp_path, monkeypatch):
    from services.journal.app import create_app

    old_key = auth.private_key_pem(backend.var_dir)  # the key made under the backend's var dir
    private, public = _pem_pair()
    monkeypatch.setenv("TOKEN_PRIVATE_KEY", private)
    monkeypatch.setenv("TOKEN_PUBLIC_KEY", public)
    monkeypatch.setenv("TANDEM_VAR_DIR", str(tmp_path / "fresh-var"))
    journal = create_app().test_client()
    clients = service_clients(journal)
    ana = sign_up(journal)
    token = ana["headers"]["Authorization"].split(" ", 1)[1]
    assert (
        jwt.decode(
            token,
            serialization.load_pem_public_key(public.encode()),
            algorithms=["EdDSA"],
            audience=auth.AUDIENCE,
        )["sub"]
        == ana["id"]
    )
    other = {"Authorization": "Bearer " + auth.TokenIssuer(old_key, 600).issue(ana["id"])}
    for service, path in (
        ("journal", "/v1/accounts/me"),
        ("milestones", "/v1/milestones"),
        ("notify", "/v1/preferences"),
    ):
        assert clients[service].get(path, headers=ana["headers"]).status_code == 200, service
        assert clients[service].get(path, headers=other).status_code == 401, service
    assert not (tmp_path / "fresh-var" / "keys").exists(), (
        "a key was made although the environment has one"
    )


def test_without_keys_in_the_environment_they_are_made_under_the_var_dir_for_the_owner_only(
    backend, monkeypatch
):
    from services.journal.app import create_app

    monkeypatch.delenv("TOKEN_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("TOKEN_PUBLIC_KEY", raising=False)
    ana = sign_up(create_app().test_client())
    keys = backend.var_dir / "keys"
    public = serialization.load_pem_public_key((keys / "token_ed25519.pub.pem").read_bytes())
    token = ana["headers"]["Authorization"].split(" ", 1)[1]
    assert (
        jwt.decode(token, public, algorithms=["EdDSA"], audience=auth.AUDIENCE)["sub"] == ana["id"]
    )
    assert stat.S_IMODE((keys / "token_ed25519.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) & 0o077 == 0


KEY_MATERIAL = re.compile(
    r"-----BEGIN [A-Z0-9 ]*(?:KEY|CERTIFICATE)[A-Z ]*-----|MC4CAQAwBQYDK2Vw|MCowBQYDK2Vw"
)


def test_no_key_material_is_written_in_the_code():
    """PEM blocks (and the DER prefix of Ed25519 keys in base64), and long
    random-looking string literals: secrets come from the environment only."""
    found = []
    files = sorted(p for d in ("services", "shared") for p in (REPO / d).rglob("*.py"))
    assert len(files) > 20, files
    for path in files:
        source = path.read_text()
        found += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in KEY_MATERIAL.finditer(source)]
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _looks_like_a_secret(node.value)
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value[:20]}...")
    assert not found, found


def _looks_like_a_secret(s: str) -> bool:
    """32+ characters of hex, or of base64 mixing upper case, lower case and
    digits; an alphabet written in order (the invite codes') is not one."""
    if len(s) < 32 or list(s) == sorted(s) or not re.search(r"\d", s):
        return False
    if re.fullmatch(r"[0-9a-fA-F]+", s):
        return re.search(r"[a-fA-F]", s) is not None
    return (
        re.fullmatch(r"[A-Za-z0-9+/_-]+=*", s) is not None
        and re.search(r"[a-z]", s) is not None
        and re.search(r"[A-Z]", s) is not None
    )
