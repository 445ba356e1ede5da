"""The journal's HTTP entrypoint: one blueprint per resource."""
from __future__ import annotations

from flask import current_app, g
from flask.views import MethodView

from shared.db import unit_of_work, utcnow
from shared.errors import Unauthorized
from shared.web import AUTH_DOC, Blueprint, require_auth

from . import schemas, use_cases


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
    if engine.dialect.name == "postgresql":
        return engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    return _uow()


accounts = Blueprint("accounts", __name__, url_prefix="/v1", description="Sign up, log in, erase")
couples = Blueprint("couples", __name__, url_prefix="/v1", description="Form a couple with an invite code")
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
        """Log in"""
        ctx = _ctx()
        with _uow() as s:  # commits the failure count even when the answer is no
            partner_id = use_cases.check_login(s, ctx["hasher"], data["email"], data["password"], utcnow())
        if partner_id is None:
            raise Unauthorized("Wrong email or password.")
        return {"access_token": ctx["issuer"].issue(partner_id), "token_type": "Bearer",
                "expires_in": ctx["issuer"].ttl}


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
    def post(self, data):
        """Join your partner's couple with their invite code"""
        with _uow() as s:
            return use_cases.join_couple(s, g.partner_id, data["invite_code"])


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
    @entries.alt_response(200, schema=schemas.EntryOut, description="The same id and body again: the same entry")
    @entries.alt_response(401, description="No valid token")
    @entries.alt_response(409, description="The id is already used for other content")
    @entries.alt_response(413, description="The body is over 64 KiB")
    def post(self, data):
        """Record an entry (idempotent on the client-chosen id)"""
        with _one_statement_write() as db:
            entry, created = use_cases.record_entry(db, g.partner_id, data)
        return entry, (201 if created else 200)


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
