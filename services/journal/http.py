"""The journal's HTTP entrypoint: one blueprint per resource."""

from __future__ import annotations

import time
import uuid
from http import HTTPStatus

from flask import current_app, g, jsonify, request
from flask.views import MethodView
from marshmallow import ValidationError

from shared import dumps
from shared.db import unit_of_work, utcnow
from shared.errors import Forbidden, Invalid, Refused, Unauthorized
from shared.outbox import writes_in_one_statement
from shared.web import AUTH_DOC, Blueprint, max_body, nul_refusal, require_auth

from . import schemas, sessions, throttle, use_cases


def _ctx():
    return current_app.extensions["journal"]


def _uow():
    return unit_of_work(_ctx()["sessions"])


def _one_statement_write():
    """For a request whose one write is one statement on PostgreSQL (an entry with its event,
    ``shared.outbox.insert_if_new_with_event``): an autocommit connection there, the statement
    atomic by itself, no BEGIN and COMMIT round trips (two of five). SQLite writes the two rows in
    two statements and wakes the relay after a session's commit: a unit of work."""
    engine = _ctx()["engine"]
    if writes_in_one_statement(engine):
        return engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    return _uow()


def _client() -> str:
    """The client's address as throttling keys it (``TRUSTED_PROXY_HOPS``: see the app)."""
    return throttle.client_network(request.remote_addr)


def _tokens(partner_id: str, session_id: str, refresh_token: str) -> dict:
    issuer = _ctx()["issuer"]
    return {
        "access_token": issuer.issue(partner_id, session_id),
        "token_type": "Bearer",
        "expires_in": issuer.ttl,
        "refresh_token": refresh_token,
        "session_id": session_id,
    }


accounts = Blueprint(
    "accounts",
    __name__,
    url_prefix="/v1",
    description="Sign up, log in, sessions, passwords, erase",
)
couples = Blueprint(
    "couples", __name__, url_prefix="/v1", description="Form a couple with an invite code"
)
entries = Blueprint("entries", __name__, url_prefix="/v1", description="The journal's entries")


@accounts.route("/accounts")
class Accounts(MethodView):
    @accounts.arguments(schemas.AccountCreate())
    @accounts.response(201, schemas.Account)
    @accounts.alt_response(409, description="The email is already registered")
    def post(self, data):
        """Sign up"""
        with _uow() as s:
            return use_cases.sign_up(s, _ctx()["hasher"], data)


@accounts.route("/accounts/me")
class Me(MethodView):
    @accounts.doc(**AUTH_DOC)
    @accounts.response(200, schemas.Account)
    @accounts.alt_response(401, description="No valid token")
    @require_auth
    def get(self):
        """The caller's account"""
        with _uow() as s:
            return use_cases.account_view(use_cases.current_account(s, g.partner_id))

    @accounts.doc(**AUTH_DOC)
    @accounts.response(204)
    @accounts.alt_response(401, description="No valid token")
    @require_auth
    def delete(self):
        """Erase the caller's account and data, here and in every service"""
        with _uow() as s:
            use_cases.erase(s, g.partner_id)
        return None


@accounts.route("/tokens")
class Tokens(MethodView):
    @accounts.arguments(schemas.Credentials())
    @accounts.response(201, schemas.Token)
    @accounts.alt_response(401, description="Wrong email or password")
    @accounts.alt_response(429, description="Too many failed logins; see Retry-After")
    def post(self, data):
        """Log in: a new session for this device, with an access token and a refresh token

        Failed logins are slowed per (account, client address) and per client address, with growing
        delays; an account is never locked: its right password from another address always works."""
        now = utcnow()
        with _uow() as s:  # commits the failure count even when the answer is no
            partner_id = sessions.check_login(
                s, _ctx()["hasher"], data["email"], data["password"], _client(), now
            )
            if partner_id is not None:
                session_id, refresh_token = sessions.start_session(
                    s, partner_id, data.get("device_name"), now
                )
        if partner_id is None:
            raise Unauthorized("Wrong email or password.")
        return _tokens(partner_id, session_id, refresh_token)


@accounts.route("/tokens/refresh")
class RefreshTokens(MethodView):
    @accounts.arguments(schemas.Refresh())
    @accounts.response(201, schemas.Token)
    @accounts.alt_response(
        401,
        description="Unknown, expired or already used refresh token (a used one ends its session)",
    )
    def post(self, data):
        """A new access token and a new refresh token for a refresh token, which is retired

        Presenting a retired refresh token again ends its whole session (reuse detection): log in again."""
        with _uow() as s:  # commits the session's end before the 401
            done = sessions.refresh(s, data["refresh_token"], utcnow())
        if done is None:
            raise Unauthorized(
                "This refresh token was already used; its session has ended. Log in again."
            )
        return _tokens(*done)


@accounts.route("/sessions")
class Sessions(MethodView):
    @accounts.doc(**AUTH_DOC)
    @require_auth
    @accounts.arguments(schemas.SessionQuery(), location="query")
    @accounts.response(200, schemas.SessionPage)
    @accounts.alt_response(401, description="No valid token")
    def get(self, query):
        """The caller's sessions (one per device logged in), newest first"""
        with _uow() as s:
            use_cases.current_account(s, g.partner_id)
            return sessions.list_sessions(s, g.partner_id, g.session_id, query, utcnow())


@accounts.route("/sessions/<uuid:session_id>")
class OneSession(MethodView):
    @accounts.doc(**AUTH_DOC)
    @accounts.response(204)
    @accounts.alt_response(401, description="No valid token")
    @accounts.alt_response(404, description="No such session of the caller's")
    @require_auth
    def delete(self, session_id):
        """End one of the caller's sessions (a lost phone's): its refresh token stops working at once, its
        access token when it expires"""
        with _uow() as s:
            use_cases.current_account(s, g.partner_id)
            sessions.logout(s, g.partner_id, str(session_id), g.session_id)
        return None


@accounts.route("/sessions/current")
class CurrentSession(MethodView):
    @accounts.doc(**AUTH_DOC)
    @accounts.response(204)
    @accounts.alt_response(401, description="No valid token")
    @accounts.alt_response(
        404, description="The token belongs to no session (issued before sessions existed)"
    )
    @require_auth
    def delete(self):
        """Log out: end the session of the token the request carries"""
        with _uow() as s:
            use_cases.current_account(s, g.partner_id)
            sessions.logout(s, g.partner_id, g.session_id, g.session_id)
        return None


@accounts.route("/accounts/me/password")
class Password(MethodView):
    @accounts.doc(**AUTH_DOC)
    @require_auth  # before the input is parsed: without a token, nothing is read
    @accounts.arguments(schemas.PasswordChange())
    @accounts.response(204)
    @accounts.alt_response(401, description="No valid token")
    @accounts.alt_response(403, description="The current password is wrong")
    @accounts.alt_response(
        429, description="Too many wrong passwords from this address; see Retry-After"
    )
    def post(self, data):
        """Change the password; every other session ends"""
        with _uow() as s:  # commits the failure count even when the answer is no
            changed = sessions.change_password(
                s,
                _ctx()["hasher"],
                g.partner_id,
                g.session_id,
                data["current_password"],
                data["new_password"],
                _client(),
                utcnow(),
            )
        if not changed:
            raise Forbidden(
                "The current password is wrong.", errors={"current_password": ["Wrong password."]}
            )
        return None


RESET_ANSWER_SECONDS = 0.25
RESET_ACCEPTED = {
    "detail": "If an account has this email address, a link to reset its password is on its way. "
    "It works once, for 30 minutes."
}


@accounts.route("/password-resets")
class PasswordResets(MethodView):
    @accounts.arguments(schemas.ResetRequest())
    @accounts.response(202, schemas.Accepted)
    @accounts.alt_response(429, description="Too many requests for this address; see Retry-After")
    def post(self, data):
        """Ask for a password reset link by email; the same answer whether or not an account has the address

        Answered no sooner than a fixed time after it came (``RESET_ANSWER_SECONDS``): a known address
        does more work (a link stored, an event), and its answer must not come measurably later."""
        started = time.monotonic()
        with _uow() as s:
            sessions.request_reset(s, data["email"], _client(), utcnow())
        time.sleep(max(0.0, started + RESET_ANSWER_SECONDS - time.monotonic()))
        return RESET_ACCEPTED


@accounts.route("/password-resets/confirm")
class PasswordResetConfirm(MethodView):
    @accounts.arguments(schemas.ResetConfirm())
    @accounts.response(204)
    @accounts.alt_response(422, description="The link's token is unknown, used or expired")
    @accounts.alt_response(
        429, description="Too many wrong tokens from this address; see Retry-After"
    )
    def post(self, data):
        """Set a new password with the reset link's token; every session ends"""
        with _uow() as s:  # commits the failure count even when the answer is no
            done = sessions.confirm_reset(
                s, _ctx()["hasher"], data["token"], data["new_password"], _client(), utcnow()
            )
        if not done:
            raise Invalid(
                "This reset link is unknown, used or expired; ask for a new one.",
                errors={"token": ["Unknown, used or expired."]},
            )
        return None


@couples.route("/couples")
class Couples(MethodView):
    @couples.doc(**AUTH_DOC)
    @couples.response(201, schemas.Couple)
    @couples.alt_response(401, description="No valid token")
    @couples.alt_response(409, description="Already in a couple")
    @require_auth
    def post(self):
        """Start a couple; share the invite code with your partner"""
        with _uow() as s:
            return use_cases.start_couple(s, g.partner_id)


@couples.route("/couples/join")
class Join(MethodView):
    @couples.doc(**AUTH_DOC)
    @require_auth  # before the input is parsed: without a token, nothing is read
    @couples.arguments(schemas.Join())
    @couples.response(200, schemas.Couple)
    @couples.alt_response(401, description="No valid token")
    @couples.alt_response(409, description="Already in a couple, or the couple is full")
    @couples.alt_response(422, description="No couple has this invite code, or it has expired")
    @couples.alt_response(429, description="Too many wrong codes; see Retry-After")
    def post(self, data):
        """Join your partner's couple with their invite code"""
        with _uow() as s:  # commits the failure count even when the answer is no
            joined = use_cases.join_couple(s, g.partner_id, data["invite_code"], _client())
        if isinstance(joined, str):
            raise Invalid(joined, errors={"invite_code": [joined]})
        return joined


@couples.route("/couples/me/invite")
class Invite(MethodView):
    @couples.doc(**AUTH_DOC)
    @couples.response(201, schemas.Couple)
    @couples.alt_response(401, description="No valid token")
    @couples.alt_response(404, description="Not in a couple yet")
    @couples.alt_response(409, description="The couple already has two partners")
    @require_auth
    def post(self):
        """A new invite code for the caller's couple, valid 7 days; the old one stops working"""
        with _uow() as s:
            return use_cases.reissue_invite(s, g.partner_id)


@couples.route("/couples/me")
class MyCouple(MethodView):
    @couples.doc(**AUTH_DOC)
    @couples.response(200, schemas.Couple)
    @couples.alt_response(401, description="No valid token")
    @couples.alt_response(404, description="Not in a couple yet")
    @require_auth
    def get(self):
        """The caller's couple"""
        with _uow() as s:
            return use_cases.my_couple(s, g.partner_id)


@entries.route("/entries")
class Entries(MethodView):
    @entries.doc(**AUTH_DOC)
    @require_auth  # before the input is parsed: without a token, nothing is read
    @entries.arguments(schemas.EntryQuery(), location="query")
    @entries.response(200, schemas.EntryPage)
    @entries.alt_response(401, description="No valid token")
    def get(self, query):
        """The caller's entries and the partner's shared ones, newest first"""
        with _uow() as s:
            return use_cases.list_entries(s, g.partner_id, query)

    @entries.doc(**AUTH_DOC)
    @require_auth  # before the input is parsed: without a token, nothing is read
    @entries.arguments(schemas.EntryCreate())
    @entries.response(201, schemas.EntryOut)
    @entries.alt_response(
        200, schema=schemas.EntryOut, description="The same id and body again: the same entry"
    )
    @entries.alt_response(401, description="No valid token")
    @entries.alt_response(409, description="The id is already used for other content")
    @entries.alt_response(413, description="The body is over 64 KiB")
    def post(self, data):
        """Record an entry (idempotent on the client-chosen id)"""
        with _one_statement_write() as db:
            entry, created = use_cases.record_entry(db, g.partner_id, data)
        return entry, (201 if created else 200)


_ENTRY = schemas.EntryCreate()
_BATCH_OUT = dumps.compiled(schemas.BatchOut())


def _item_problem(refused: Refused) -> dict:
    """One entry's RFC 9457 problem, as ``POST /v1/entries`` would answer it (never its note)."""
    problem = {
        "type": "about:blank",
        "title": HTTPStatus(refused.status).phrase,
        "status": refused.status,
        "detail": refused.detail,
    }
    if refused.errors:
        problem["errors"] = refused.errors
    return problem


def _loaded(raw: dict) -> dict | Refused:
    """One entry of a batch validated alone: as ``EntryCreate`` loads it, or what refuses it."""
    if (refused := nul_refusal(raw)) is not None:
        return Refused(refused[0], errors=refused[1])
    try:
        return _ENTRY.load(raw)
    except ValidationError as e:
        errors = e.messages if isinstance(e.messages, dict) else {"_schema": e.messages}
        return Invalid(
            "The request has invalid fields: " + ", ".join(sorted(errors)), errors=errors
        )


def _sent_id(raw: dict) -> str | None:
    try:
        return str(uuid.UUID(raw.get("id")))
    except (TypeError, ValueError, AttributeError):
        return None


@entries.route("/entries/batch")
class EntryBatch(MethodView):
    @entries.doc(**AUTH_DOC)
    @require_auth  # before the input is parsed: without a token, nothing is read
    @max_body(schemas.BATCH_MAX_BODY)
    @entries.arguments(schemas.EntryBatch())
    @entries.response(200, schemas.BatchOut)
    @entries.alt_response(401, description="No valid token")
    @entries.alt_response(413, description="The body is over 5 MiB")
    @entries.alt_response(
        422, description="The body is not a list of entry objects, or holds more than 500"
    )
    def post(self, body):
        """Record up to 500 entries at once: an offline app's sync, in one request

        Each entry is answered as ``POST /v1/entries`` would answer it (201 stored, 200 the same
        entry again, 409 the id holds another entry, 400 or 422 with the problem naming the field),
        in the request's order; one bad entry never refuses the others. The entries stored and
        their events commit together, in one transaction."""
        raws = body["entries"]
        loaded = [_loaded(raw) for raw in raws]
        valid = [d for d in loaded if not isinstance(d, Refused)]
        with _uow() as s:
            recorded = iter(use_cases.record_entries(s, g.partner_id, valid))
        results = []
        for raw, d in zip(raws, loaded):
            outcome = d if isinstance(d, Refused) else next(recorded)
            if isinstance(outcome, Refused):
                results.append(
                    {
                        "id": _sent_id(raw),
                        "status": outcome.status,
                        "problem": _item_problem(outcome),
                    }
                )
            else:
                entry, created = outcome
                results.append(
                    {"id": entry["id"], "status": 201 if created else 200, "entry": entry}
                )
        # BatchOut's dump, compiled (shared.dumps): the same answer, a fraction of the time.
        return jsonify(_BATCH_OUT({"results": results}))


@entries.route("/entries/<uuid:entry_id>")
class OneEntry(MethodView):
    @entries.doc(**AUTH_DOC)
    @entries.response(200, schemas.EntryOut)
    @entries.alt_response(401, description="No valid token")
    @entries.alt_response(404, description="No such entry the caller may see")
    @require_auth
    def get(self, entry_id):
        """One entry"""
        with _uow() as s:
            return use_cases.get_entry(s, g.partner_id, str(entry_id))

    @entries.doc(**AUTH_DOC)
    @require_auth  # before the input is parsed: without a token, nothing is read
    @entries.arguments(schemas.EntryPatch())
    @entries.response(200, schemas.EntryOut)
    @entries.alt_response(401, description="No valid token")
    @entries.alt_response(403, description="Only the author may change it")
    @entries.alt_response(404, description="No such entry the caller may see")
    def patch(self, changes, entry_id):
        """Change an entry's fields (the author only)"""
        with _uow() as s:
            return use_cases.revise_entry(s, g.partner_id, str(entry_id), changes)

    @entries.doc(**AUTH_DOC)
    @entries.response(204)
    @entries.alt_response(401, description="No valid token")
    @entries.alt_response(403, description="Only the author may delete it")
    @entries.alt_response(404, description="No such entry the caller may see")
    @require_auth
    def delete(self, entry_id):
        """Delete an entry (the author only)"""
        with _uow() as s:
            use_cases.delete_entry(s, g.partner_id, str(entry_id))
        return None


@entries.route("/export")
class ExportView(MethodView):
    @entries.doc(**AUTH_DOC)
    @entries.response(200, schemas.Export)
    @entries.alt_response(401, description="No valid token")
    @require_auth
    def get(self):
        """Everything the caller has recorded"""
        with _uow() as s:
            return use_cases.export(s, g.partner_id)
