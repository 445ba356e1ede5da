"""How long a 52-week progress report takes (GET /v1/report?weeks=52), as a PDF and as JSON.

Builds one couple with 400 days of every partner's entries in the milestones
database (via the real projection, event by event, as
``bench.evaluation_growth`` does), evaluated as of today so their milestones
are there, the second partner sharing theirs (so the report has all three
sections). Then times the whole request through the milestones app in this
process (its WSGI stack: the token checked, the account looked up, the
tables read, the content built and, for the PDF, laid out), alternating PDF
and JSON, after one request of each to warm up (the first report imports
reportlab and the rules' registry). The goal: under 1 second, PDF and JSON.

Usage: python -m bench.report [--repeat N]   (uses MILESTONES_DATABASE_URL, or SQLite under ./var)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime

from bench.evaluation_growth import _event, build, open_milestones
from shared import auth, config
from shared.db import unit_of_work

DAYS = 400  # more than the 52 weeks a report reads


def main(argv: list[str] | None = None) -> dict:
    from services.milestones import app as milestones_app
    from services.milestones import evaluation

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    _, engine, sessions, handlers = open_milestones()
    a, b, _ = build(sessions, handlers, DAYS, random.Random(52))
    now = datetime.now(UTC)
    with unit_of_work(sessions) as s:
        handlers["notify.preferences.changed"](
            s,
            _event(
                "notify.preferences.changed",
                {"partner_id": b, "share_milestones_with_partner": True},
                now,
            ),
        )
        for pid in (a, b):
            evaluation.evaluate_partner(s, pid, now)
    engine.dispose()

    app = milestones_app.create_app()
    client = app.test_client()
    token = auth.TokenIssuer(auth.private_key_pem(config.var_dir()), 3600).issue(a)
    kinds = {"pdf": "application/pdf", "json": "application/json"}

    def get(kind: str):
        r = client.get(
            "/v1/report?weeks=52",
            headers={"Authorization": f"Bearer {token}", "Accept": kinds[kind]},
        )
        assert r.status_code == 200 and r.mimetype == kinds[kind], r.status_code
        return r

    body = get("json").get_json()
    pdf = get("pdf").data
    seconds = {kind: [] for kind in kinds}
    for _ in range(args.repeat):  # alternating, so a busy moment falls on both alike
        for kind in kinds:
            t0 = time.perf_counter()
            get(kind)
            seconds[kind].append(time.perf_counter() - t0)
    out = {
        "weeks": 52,
        "days_of_history": DAYS,
        "repeat": args.repeat,
        "charts": sum(len(s["charts"]) for s in body["sections"]),
        "sections": len(body["sections"]),
        "milestones": len(body["milestones"]),
        "pdf_bytes": len(pdf),
        "database": engine.dialect.name,
    }
    for kind, xs in seconds.items():
        xs.sort()
        out[f"{kind}_p50_ms"] = round(statistics.median(xs) * 1000, 1)
        out[f"{kind}_max_ms"] = round(xs[-1] * 1000, 1)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
