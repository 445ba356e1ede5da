"""End to end: from `POST /v1/entries` returning to the notification in the
inbox, at a steady rate of entries.

`tandem run` (every service and worker as its own process) on RabbitMQ and
PostgreSQL, the bench's databases emptied first (no partner or due
evaluation left by another benchmark), the web services at two workers a
core (``--web-workers``, ``--web-threads``). Couples post rituals on a fixed
schedule (open loop: each request is sent when it is due, whatever the answers
before it); each couple's 10th and 25th ritual reach a `rituals_kept` level,
which the milestones consumer records at once and announces; the notify
consumer puts it in both partners' inboxes. The latency of a celebration is
from the moment the POST of the ritual that reached the level returned to the
moment the later of the two notifications was stored
(`notifications.created_at`, set in the notify consumer's transaction; the
same machine's clock). ``stages_ms`` says where that time went, stage by
stage (the journal's relay, the milestones consumer, the milestones relay,
the notify consumer), from the timestamps the services write.

Two schedules (``--schedule``), the same entries at the same rate: ``spread``
(the couples start one after another and reach their levels through the run,
a celebration about every 0.12 s) and ``lockstep`` (the couples post in turn,
so all reach a level within the same 1.2 s: a burst of 100 celebrations a
second, twice a run; what a backlog costs the later ones).

Usage: python -m bench.e2e [--rate R] [--seconds S] [--schedule spread|lockstep]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from bench import procs, setup

PASSWORD = "correct horse battery"
SERVICES_TO_EMPTY = ("journal", "milestones", "notify")


def _couple(journal: str, session: requests.Session) -> tuple[str, list[dict]]:
    partners = []
    for name in ("Ana", "Ben"):
        email = f"{name.lower()}-{uuid.uuid4().hex[:10]}@example.com"
        r = session.post(
            f"{journal}/v1/accounts",
            json={
                "email": email,
                "password": PASSWORD,
                "display_name": name,
                "timezone": "Europe/Paris",
            },
            timeout=30,
        )
        r.raise_for_status()
        t = session.post(
            f"{journal}/v1/tokens", json={"email": email, "password": PASSWORD}, timeout=30
        )
        partners.append(
            {
                "id": r.json()["id"],
                "headers": {"Authorization": f"Bearer {t.json()['access_token']}"},
            }
        )
    c = session.post(f"{journal}/v1/couples", headers=partners[0]["headers"], timeout=30).json()
    session.post(
        f"{journal}/v1/couples/join",
        headers=partners[1]["headers"],
        json={"invite_code": c["invite_code"]},
        timeout=30,
    ).raise_for_status()
    return c["id"], partners


def _processes(pid: int) -> dict[str, int]:
    """The pid of each process `tandem run` supervises, by name ("journal web", "milestones consumer"):
    by its process title (``tandem worker milestones consumer``, ``gunicorn: master [tandem-journal]``)
    or, from a `tandem run` that started commands, its command line."""
    out = {}
    for child in procs._all_descendants(pid):
        try:
            words = (
                Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode().split()
            )
        except OSError:
            continue
        if "worker" in words and words[0] in ("tandem", sys.executable):
            i = words.index("worker")
            name = f"{words[i + 1]} {words[i + 2]}"
            while name in out:
                name += "'"  # a replica
            out[name] = child
        elif master := next((w for w in words if w.startswith(("[tandem-", "tandem-"))), None):
            name = f"{master.strip('[]')[len('tandem-') :]} web"
            if (
                name not in out or child < out[name]
            ):  # the gunicorn master (its workers are its children)
                out[name] = child
    return dict(sorted(out.items()))


def _percentile(values: list[float], q: float) -> float:
    """The value at quantile q of values (sorted or not), by rank."""
    return sorted(values)[min(len(values) - 1, int(len(values) * q))]


def _stages(engines: dict, entry_of: dict, milestone_of: dict, done: dict) -> dict:
    """Where each measured celebration's time went, from the timestamps the
    services write (the same machine's clock): p50 and p95 of each stage, ms.
    `entry_of`: (couple, level) -> (when the POST returned, the entry's id);
    `milestone_of`: milestone id -> (couple, level); `done`: (couple, level) ->
    when the later notification was stored."""
    from sqlalchemy import select

    from services.journal.tables import outbox as journal_outbox
    from services.milestones.tables import outbox as milestones_outbox
    from services.milestones.tables import processed_events as milestones_processed
    from services.notify.tables import processed_events as notify_processed

    def rows(engine, statement):
        with engine.connect() as conn:
            return conn.execute(statement).all()

    wanted = {entry_id for _, entry_id in entry_of.values()}
    published = {}  # entry id -> (event id, published_at)
    for event_id, body, at in rows(
        engines["journal"],
        select(
            journal_outbox.c.event_id, journal_outbox.c.body, journal_outbox.c.published_at
        ).where(journal_outbox.c.routing_key == "journal.entry.recorded"),
    ):
        entry_id = json.loads(body)["data"]["entry_id"]
        if entry_id in wanted:
            published[entry_id] = (event_id, at)
    announced = {}  # milestone id -> (event id, created_at, published_at)
    for event_id, body, created, at in rows(
        engines["milestones"],
        select(
            milestones_outbox.c.event_id,
            milestones_outbox.c.body,
            milestones_outbox.c.created_at,
            milestones_outbox.c.published_at,
        ).where(milestones_outbox.c.routing_key == "milestones.milestone.achieved"),
    ):
        announced[json.loads(body)["data"]["id"]] = (event_id, created, at)
    applied = {}
    for name, table in (("milestones", milestones_processed), ("notify", notify_processed)):
        applied.update(rows(engines[name], select(table.c.event_id, table.c.processed_at)))
    names = (
        "journal relay: POST returned -> published",
        "milestones consumer: published -> applying",
        "milestones consumer: applying -> milestone recorded",
        "milestones relay: recorded -> published",
        "notify consumer: published -> applying",
        "notify consumer: applying -> both notifications stored",
    )
    spans: dict[str, list[float]] = {n: [] for n in names}
    for milestone_id, key in milestone_of.items():
        if key not in done or key not in entry_of or milestone_id not in announced:
            continue
        returned, entry_id = entry_of[key]
        event_id, journal_published = published.get(entry_id, (None, None))
        m_event, m_created, m_published = announced[milestone_id]
        points = (
            returned,
            journal_published,
            applied.get(event_id),
            m_created,
            m_published,
            applied.get(m_event),
            done[key],
        )
        if any(p is None for p in points):
            continue
        stamps = [p if isinstance(p, float) else p.timestamp() for p in points]
        for name, a, b in zip(names, stamps, stamps[1:]):
            spans[name].append((b - a) * 1000)

    return {
        name: {"p50": round(_percentile(v, 0.5), 1), "p95": round(_percentile(v, 0.95), 1)}
        for name, v in spans.items()
        if v
    }


def lockstep(n_couples: int, per_couple: int) -> list[tuple[int, int]]:
    """Couple k's j-th ritual is request j * n_couples + k: the couples post in
    turn, so every couple reaches a level within the same n_couples requests (at
    100 a second and 120 couples: 120 celebrations in 1.2 s, twice a run)."""
    return [(k, j) for j in range(per_couple) for k in range(n_couples)]


def spread(n_couples: int, per_couple: int) -> list[tuple[int, int]]:
    """Couple k's j-th ritual is due at step k + j: couple k starts a step after
    couple k - 1, about per_couple couples post at once, each once a step; the
    couples reach their levels one after another through the run (at 100 a
    second and 120 couples: a celebration about every 0.12 s)."""
    return sorted(
        ((k, j) for k in range(n_couples) for j in range(per_couple)),
        key=lambda kj: (kj[0] + kj[1], kj[0]),
    )


SCHEDULES = {"spread": spread, "lockstep": lockstep}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument(
        "--web-workers",
        default=str(2 * (os.cpu_count() or 1)),
        help="WEB_CONCURRENCY of the services (default: two a core, as the journal under load wants)",
    )
    ap.add_argument("--web-threads", default="4")
    ap.add_argument(
        "--schedule",
        choices=sorted(SCHEDULES),
        default="spread",
        help="which couple posts when: their levels reached spread through the run, or all in lock-step",
    )
    args = ap.parse_args(argv)
    env = setup.servers()
    for name in SERVICES_TO_EMPTY:
        setup.empty(env[f"{name.upper()}_DATABASE_URL"])
    from sqlalchemy import select

    from services.milestones.rules import RITUAL_LEVELS
    from services.milestones.tables import milestones
    from services.notify.tables import notifications
    from shared.db import make_engine

    total = int(args.rate * args.seconds)
    levels = [n for _, n in RITUAL_LEVELS if n <= 25]
    per_couple = levels[-1]
    n_couples = max(1, total // per_couple)
    tmp = Path(tempfile.mkdtemp(prefix="tandem-bench-e2e-"))
    run_env = dict(
        os.environ,
        **env,
        TANDEM_VAR_DIR=str(tmp / "var"),
        WEB_CONCURRENCY=args.web_workers,
        WEB_THREADS=args.web_threads,
        PYTHONUNBUFFERED="1",
    )
    proc, urls = procs.start_tandem(run_env, tmp)
    engines = {
        name: make_engine(env[f"{name.upper()}_DATABASE_URL"]) for name in ("milestones", "notify")
    }
    try:
        from sqlalchemy import func

        from services.journal.tables import outbox as journal_outbox

        journal_db = make_engine(env["JOURNAL_DATABASE_URL"])
        engines["journal"] = journal_db
        unpublished = (
            select(func.count())
            .select_from(journal_outbox)
            .where(journal_outbox.c.published_at.is_(None))
        )
        setup_session = requests.Session()
        couples = [_couple(urls["journal"], setup_session) for _ in range(n_couples)]
        deadline = time.monotonic() + 120  # nothing queued before the timing starts
        while True:
            with journal_db.connect() as conn:
                if conn.execute(unpublished).scalar() == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the journal's outbox did not drain before the run")
            time.sleep(0.5)
        from services.milestones.tables import partners
        from shared import broker, topology

        dirty = (
            select(func.count()).select_from(partners).where(partners.c.dirty_since.is_not(None))
        )
        while True:  # and the new partners' first evaluations done: set-up, not the run's work
            with engines["milestones"].connect() as conn:
                if conn.execute(dirty).scalar() == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the evaluator did not settle before the run")
            time.sleep(0.5)
        with (
            broker.connect() as conn
        ):  # and every queue empty: the sign-up events applied, nothing older
            queues = topology.declare(conn)
            while any(
                q(conn.default_channel).queue_declare(passive=True).message_count
                for q in queues.values()
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the queues did not empty before the run")
                time.sleep(0.5)
        schedule = SCHEDULES[args.schedule](n_couples, per_couple)
        reached: dict[
            tuple[str, int], tuple[float, str]
        ] = {}  # (couple, ritual count) -> (POST returned, entry)
        failures = [0]
        answered: list[
            float
        ] = []  # each POST's latency, from when it was due (open loop: a wait counts)

        def send(i, due, session):
            k, j = schedule[i]
            couple_id, partners = couples[k]
            body = {
                "id": str(uuid.uuid4()),
                "kind": "ritual",
                "ritual": "good_morning_text",
                "visibility": "shared",
                "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            }
            r = session.post(
                f"{urls['journal']}/v1/entries",
                json=body,
                headers=partners[j % 2]["headers"],
                timeout=30,
            )
            returned = time.time()
            answered.append(time.perf_counter() - due)
            failures[0] += r.status_code != 201
            if j + 1 in levels:
                reached[(couple_id, j + 1)] = (returned, body["id"])

        processes = _processes(proc.pid)
        cpu_before = {name: procs.cpu_seconds(p) for name, p in processes.items()}
        machine_before, pg_before = procs.machine_busy(), procs.postgres_cpu_seconds()
        generator_before = time.process_time()
        start = time.perf_counter()
        late = procs.open_loop(args.rate, len(schedule), send)
        sent_in = time.perf_counter() - start
        cpu = {
            name: round((procs.cpu_seconds(p) - cpu_before[name]) / sent_in, 2)
            for name, p in processes.items()
        }
        cpu["postgresql"] = round((procs.postgres_cpu_seconds() - pg_before) / sent_in, 2)
        cpu["the load generator (this process)"] = round(
            (time.process_time() - generator_before) / sent_in, 2
        )
        busy, total_cpu = (a - b for a, b in zip(procs.machine_busy(), machine_before))
        cpu["the whole machine (busy of all cores)"] = round(
            busy / total_cpu * (os.cpu_count() or 1), 2
        )
        level_of = dict((n, lv) for lv, n in RITUAL_LEVELS)
        entry_of = {(c, level_of[n]): at_and_entry for (c, n), at_and_entry in reached.items()}
        expected = {key: at for key, (at, _) in entry_of.items()}
        deadline = time.monotonic() + 120
        while True:
            with engines["milestones"].connect() as conn:
                ms = {
                    r.id: (r.owner_key, r.level)
                    for r in conn.execute(
                        select(milestones.c.id, milestones.c.owner_key, milestones.c.level).where(
                            milestones.c.type == "rituals_kept",
                            milestones.c.owner_key.in_([c for c, _ in couples]),
                        )
                    )
                }
            with engines["notify"].connect() as conn:
                stored: dict[str, list[datetime]] = {}
                for mid, created in conn.execute(
                    select(notifications.c.milestone_id, notifications.c.created_at).where(
                        notifications.c.milestone_id.in_(list(ms))
                    )
                ):
                    stored.setdefault(mid, []).append(created)
            done = {ms[m]: max(ts) for m, ts in stored.items() if len(ts) == 2}
            if set(expected) <= set(done) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        latencies = sorted(
            (done[key].timestamp() - at) for key, at in expected.items() if key in done
        )
        # the median of each level apart: level 1 is reached about a third into the run, level 2 at its end
        # (a backlog that grows through the run shows as a later level taking longer)
        by_level = {
            f"level_{lv}_p50_ms": round(
                statistics.median(
                    done[key].timestamp() - at
                    for key, at in expected.items()
                    if key in done and key[1] == lv
                )
                * 1000,
                1,
            )
            for lv in sorted({lv for _, lv in done})
        }
        memory = {name: procs.rss_mib(p) for name, p in processes.items()}
        pss = {name: procs.pss_mib(p) for name, p in processes.items()}
        node_pss = procs.pss_mib(proc.pid)
        node_processes = 1 + len(procs._all_descendants(proc.pid))
        stages = _stages(engines, entry_of, ms, done)
    finally:
        procs.stop(proc)
        for e in engines.values():
            e.dispose()
        shutil.rmtree(tmp, ignore_errors=True)

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return round(_percentile(latencies, q) * 1000, 1)

    result = {
        "schedule": args.schedule,
        "rate": args.rate,
        "seconds": args.seconds,
        "web": f"{args.web_workers} workers x {args.web_threads} threads",
        "achieved_rate": round(len(schedule) / sent_in, 1),
        "entries": len(schedule),
        "couples": n_couples,
        "failures": failures[0],
        "measured": len(latencies),
        "missing": len(expected) - len(latencies),
        "sent_late_p99_ms": round(sorted(late)[int(len(late) * 0.99)] * 1000, 1),
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "post_ms": {
            f"p{round(q * 100)}": round(_percentile(answered, q) * 1000, 1)
            for q in (0.5, 0.95, 0.99)
        },
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
        **by_level,
        "stages_ms": stages,
        "rss_mib": memory,
        "pss_mib": pss,
        "node": {"processes": node_processes, "pss_mib": node_pss},
        "cpu_cores_while_sending": cpu,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
