"""The ingest benchmark's anchor: bare Flask, one INSERT and COMMIT a request.

Served by the same gunicorn settings as the services (``shared.gunicorn_conf``)
on the same PostgreSQL, through the same engine settings (``shared.db``); the
table ``anchor_entries`` is made by the benchmark before it starts.
"""

from __future__ import annotations

import os
import uuid

from flask import Flask, request
from sqlalchemy import text

from shared.db import make_engine

app = Flask("anchor")
engine = make_engine(os.environ["ANCHOR_DATABASE_URL"])
INSERT = text("INSERT INTO anchor_entries (id, body) VALUES (:id, :body)")


@app.post("/v1/entries")
def create():
    with engine.begin() as conn:
        conn.execute(INSERT, {"id": str(uuid.uuid4()), "body": request.get_data(as_text=True)})
    return {"ok": True}, 201
