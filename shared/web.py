"""What every service's Flask app shares: RFC 9457 problems, the OpenAPI
document, bearer-token checks, /healthz, /readyz, /metrics and request logs."""

from __future__ import annotations

import functools
import hmac
import importlib.util
import ipaddress
import time
from collections.abc import Callable
from pathlib import Path

import flask_smorest
import marshmallow as ma
import structlog
from flask import Flask, Response, current_app, g, jsonify, request, send_from_directory
from flask_smorest import Api
from sqlalchemy import exc as sa_exc
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from shared import auth, broker, metrics
from shared.db import is_transient
from shared.errors import Refused

log = structlog.get_logger("http")

PROBLEM = "application/problem+json"
MAX_BODY = 64 * 1024

# /docs's scripts and style, served by the service itself from the pinned flask-swagger-ui package (its
# dist/ is swagger-ui-dist's): the page works offline, and no third party's script runs on a page that
# holds a bearer token. Found without importing the package (it would import a blueprint we do not use).
SWAGGER_UI_URL = "/docs/assets/"
SWAGGER_UI_DIR = (
    Path(importlib.util.find_spec("flask_swagger_ui").submodule_search_locations[0]) / "dist"
)
SWAGGER_UI_FILES = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"}
)


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details (documentation of every error response)."""

    type = ma.fields.String(metadata={"example": "about:blank"})
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Raw(),
        metadata={"description": "field name -> messages"},
    )


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    errors: dict | None = None,
    headers: dict | None = None,
    type_: str = "about:blank",
) -> Response:
    from http import HTTPStatus

    body = {"type": type_, "title": title or HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    resp = jsonify(body)
    resp.status_code = status
    resp.mimetype = PROBLEM
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


class ProblemError(HTTPException):
    """Raise to answer with a problem; carries field errors and headers."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        errors: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(description=detail)
        self.code = status
        self.data = {"message": detail, "errors": errors, "headers": headers or {}}


def _flatten(messages) -> dict:
    """webargs keys errors by location ({"json": {...}}); clients want field names."""
    if not isinstance(messages, dict):
        return {"_schema": messages if isinstance(messages, list) else [str(messages)]}
    out: dict = {}
    for location, errs in messages.items():
        if location in (
            "json",
            "query",
            "querystring",
            "view_args",
            "form",
            "headers",
        ) and isinstance(errs, dict):
            out.update(errs)
        else:
            out[location] = errs
    return out


class ProblemApi(Api):
    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self):
        """The error responses flask-smorest documents are problems (RFC 9457)."""
        default, self.DEFAULT_RESPONSE_CONTENT_TYPE = self.DEFAULT_RESPONSE_CONTENT_TYPE, PROBLEM
        try:
            super()._register_responses()
        finally:
            self.DEFAULT_RESPONSE_CONTENT_TYPE = default

    def handle_http_exception(self, error):
        data = getattr(error, "data", None) or {}
        errors = data.get("errors") or data.get("messages")
        headers = dict(data.get("headers") or {})
        if getattr(error, "code", None) == 401:
            headers.setdefault("WWW-Authenticate", "Bearer")
        detail = data.get("message") or error.description
        if errors:
            errors = _flatten(errors)
            if error.code == 422 and not data.get("message"):
                detail = "The request has invalid fields: " + ", ".join(sorted(map(str, errors)))
        return problem(error.code or 500, detail, errors=errors, headers=headers)


def _field_with_nul(data) -> str | None:
    """The name of the first top-level field whose value holds a NUL character anywhere."""

    def has_nul(value) -> bool:
        if isinstance(value, str):
            return "\x00" in value
        if isinstance(value, dict):
            return any(has_nul(k) or has_nul(v) for k, v in value.items())
        if isinstance(value, list):
            return any(has_nul(v) for v in value)
        return False

    if isinstance(data, dict) or hasattr(data, "items"):
        for key, value in data.items(multi=True) if hasattr(data, "getlist") else data.items():
            if has_nul(key) or has_nul(value):
                return key.replace("\x00", "\\u0000") if isinstance(key, str) else str(key)
        return None
    return "body" if has_nul(data) else None


def nul_refusal(data) -> tuple[str, dict] | None:
    """(detail, errors) of the 400 for the first top-level field holding a NUL character, or None."""
    named = _field_with_nul(data)
    if named is None:
        return None
    return (
        f"The field {named!r} contains a NUL character.",
        {named: ["Must not contain a NUL (\\u0000) character."]},
    )


def _refuse_nul(data) -> None:
    refused = nul_refusal(data)
    if refused is not None:
        raise ProblemError(400, refused[0], errors=refused[1])


class ArgumentsParser(FlaskParser):
    """webargs' parser, refusing text with a NUL character (no database here
    stores one; PostgreSQL errs) as a 400 that names the field. It runs where
    the arguments are read: after authentication, so nothing is read without a token.
    A schema whose ``Meta.items_checked_alone`` names a list field leaves the NUL
    check of that list's items to its view (a batch answers each item on its own)."""

    def load_json(self, req, schema):
        data = super().load_json(req, schema)
        alone = getattr(getattr(schema, "Meta", None), "items_checked_alone", ())
        _refuse_nul(
            {k: v for k, v in data.items() if k not in alone} if isinstance(data, dict) else data
        )
        return data

    def load_querystring(self, req, schema):
        _refuse_nul(req.args)
        return super().load_querystring(req, schema)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the arguments parser above."""

    ARGUMENTS_PARSER = ArgumentsParser()


def _readyz_checks() -> dict[str, bool]:
    ext = current_app.extensions["tandem"]
    checks = {}
    try:
        with ext["engine"].connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        checks["database"] = True
    except Exception:
        checks["database"] = False
    checks["broker"] = broker.ping(ext["settings"].broker_url)
    return checks


def _from_this_host() -> bool:
    """The client is on this machine, and no proxy relays it for someone else."""
    if request.headers.get("Forwarded") or request.headers.get("X-Forwarded-For"):
        return False
    try:
        addr = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return addr.is_loopback or bool(
        getattr(addr, "ipv4_mapped", None) and addr.ipv4_mapped.is_loopback
    )


def _metrics_refusal(token: str | None) -> Response | None:
    """None when /metrics may be served: with ``METRICS_TOKEN`` set, to a bearer of it only (compared in
    constant time); without, to clients on this host only. Else the problem to answer with."""
    if token is None:
        if _from_this_host():
            return None
        return problem(
            403,
            "The metrics are served to this host only; set METRICS_TOKEN to scrape them "
            "from elsewhere.",
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    return problem(401, "The metrics token is required.", headers={"WWW-Authenticate": "Bearer"})


def create_base_app(settings, *, title: str, description: str, engine) -> tuple[Flask, Api]:
    app = Flask(
        settings.service, static_folder=None
    )  # no /static route: nothing is served from disk
    app.config.update(
        API_TITLE=title,
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_URL,
        API_SPEC_OPTIONS={"info": {"description": description}},
        MAX_CONTENT_LENGTH=MAX_BODY,
    )
    app.json.sort_keys = False
    app.extensions["tandem"] = {
        "settings": settings,
        "engine": engine,
        "verifier": auth.TokenVerifier(auth.public_key_pem(settings.var_dir)),
    }
    api = ProblemApi(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "service": settings.service}

    @app.get("/readyz")
    def readyz():
        checks = _readyz_checks()
        ok = all(checks.values())
        return {"status": "ready" if ok else "unavailable", "checks": checks}, (200 if ok else 503)

    @app.get("/metrics")
    def metrics_view():
        refused = _metrics_refusal(settings.metrics_token)
        if refused is not None:
            return refused
        data, ctype = metrics.exposition()
        return Response(data, mimetype=ctype.split(";")[0], headers={"Content-Type": ctype})

    @app.get(SWAGGER_UI_URL + "<name>")
    def swagger_ui_asset(name: str):
        if name not in SWAGGER_UI_FILES:
            return problem(404, "No such file of the API documentation's page.")
        return send_from_directory(SWAGGER_UI_DIR, name)

    @app.before_request
    def _start_timer():
        g.t0 = time.perf_counter()

    @app.before_request
    def _json_bodies_only():
        # Every body this API takes is JSON: anything else is refused plainly, not read as no fields at all
        # (a form posted to PATCH would otherwise be a 200 that changed nothing).
        if (
            request.method in ("POST", "PATCH", "PUT")
            and request.content_length
            and not request.is_json
        ):
            return problem(
                415,
                "The body must be JSON (Content-Type: application/json).",
                headers={"Accept-Patch": "application/json"} if request.method == "PATCH" else None,
            )

    @app.after_request
    def _observe(resp):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("t0", time.perf_counter())
        metrics.REQUEST_SECONDS.labels(
            settings.service, request.method, route, resp.status_code
        ).observe(elapsed)
        if resp.status_code >= 500:
            log.warning(
                "request",
                method=request.method,
                route=route,
                status=resp.status_code,
                ms=round(elapsed * 1000, 1),
            )
        return resp

    @app.after_request
    def _never_kept_nor_sniffed(resp):
        # Answers hold people's private words: no cache, shared or the phone's own, keeps one; and no
        # browser reads a JSON or a problem body as anything but its declared type.
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    @app.errorhandler(Refused)
    def _refused(e: Refused):
        headers = dict(e.headers)
        if e.status == 401:
            headers.setdefault("WWW-Authenticate", "Bearer")
        return problem(e.status, e.detail, errors=e.errors, headers=headers)

    @app.errorhandler(RecursionError)
    def _too_deep(_e):
        return problem(400, "The JSON body is nested too deeply.")

    @app.errorhandler(sa_exc.DBAPIError)
    def _database_error(e):
        if is_transient(e):
            return problem(
                503,
                "The service is briefly unavailable; try again shortly.",
                headers={"Retry-After": "5"},
            )
        log.error("database_error", error=type(e).__name__, route=str(request.url_rule))
        return problem(500, "Something went wrong on our side.")

    app.register_error_handler(
        sa_exc.TimeoutError, _database_error
    )  # no pooled connection came in time

    @app.errorhandler(Exception)
    def _unexpected(e):
        if isinstance(e, HTTPException):
            return api.handle_http_exception(e)
        log.error(
            "unhandled_error", error=type(e).__name__, route=str(request.url_rule), exc_info=e
        )
        return problem(500, "Something went wrong on our side.")

    return app, api


AUTH_DOC = {"security": [{"bearerAuth": []}]}


def max_body(limit: int) -> Callable:
    """A view that takes a larger body than ``MAX_BODY`` (a batch): set before the body is read,
    so a longer one is still a 413 problem without being read whole."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            request.max_content_length = limit
            return view(*args, **kwargs)

        return wrapper

    return decorate


def require_auth(view: Callable) -> Callable:
    """Verify the bearer token; the partner id is in ``g.partner_id``, the Unix time
    after which the token is refused in ``g.token_valid_until``, its login session
    in ``g.session_id`` (None for a token issued without one)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ProblemError(401, "A bearer token is required.")
        try:
            claims = current_app.extensions["tandem"]["verifier"].claims(token.strip())
        except auth.InvalidToken:
            raise ProblemError(401, "The token is invalid or has expired.") from None
        g.partner_id, g.session_id = claims.partner_id, claims.session_id
        g.token_valid_until = claims.expires + auth.TokenVerifier.LEEWAY
        return view(*args, **kwargs)

    return wrapper
