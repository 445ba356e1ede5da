"""The ingest benchmark's second anchor: the journal's own framework around the anchor's one INSERT.

What every ``POST /v1/entries`` pays before and after its entry's work, and
nothing else: the journal's Flask app as ``shared.web`` builds it (request
metrics, JSON-only bodies, RFC 9457 problems), the bearer token checked
(``require_auth``), the body parsed and validated by the journal's own
``EntryCreate`` schema (webargs), the answer dumped by its ``EntryOut``
(flask-smorest), then the bare anchor's one INSERT and COMMIT
(``bench/anchor_app.py``) in place of the entry's own work. Its rate against
the bare anchor is how close any journal can come under this stack;
the journal against it is what the entry's own work costs.

Served like the others: gunicorn, ``shared.gunicorn_conf``, the same
database (``ANCHOR_DATABASE_URL``, table ``anchor_entries``); tokens made by
the journal of the same ``TANDEM_VAR_DIR`` are valid here.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from flask import g, request
from flask.views import MethodView
from sqlalchemy import text

from services.journal import schemas
from shared.config import Settings
from shared.db import make_engine
from shared.web import AUTH_DOC, Blueprint, create_base_app, require_auth

engine = make_engine(os.environ["ANCHOR_DATABASE_URL"])
INSERT = text("INSERT INTO anchor_entries (id, body) VALUES (:id, :body)")
app, api = create_base_app(
    Settings.from_env("journal"),
    engine=engine,
    title="Ingest anchor",
    description="The journal's framework around one INSERT",
)
entries = Blueprint("entries", __name__, url_prefix="/v1")


@entries.route("/entries")
class Entries(MethodView):
    @entries.doc(**AUTH_DOC)
    @require_auth
    @entries.arguments(schemas.EntryCreate())
    @entries.response(201, schemas.EntryOut)
    def post(self, data):
        with engine.begin() as conn:
            conn.execute(INSERT, {"id": str(uuid.uuid4()), "body": request.get_data(as_text=True)})
        now = datetime.now(UTC)
        occurred_at = data["occurred_at"]
        view = {
            "id": str(data["id"]),
            "kind": data["kind"],
            "author_id": g.partner_id,
            "occurred_at": occurred_at.isoformat(),
            "local_date": occurred_at.date(),
            "visibility": data["visibility"],
            "note": data.get("note"),
            "created_at": now,
            "updated_at": now,
        }
        view.update((k, v) for k, v in data.items() if k not in view)  # the kind's measures
        return view, 201


api.register_blueprint(entries)
