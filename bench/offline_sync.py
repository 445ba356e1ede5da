"""An offline phone's sync: 90 days of a couple's history sent as batches against the same
entries as single POSTs, in the same run.

`tandem run` (every service and worker as its own process) on RabbitMQ and PostgreSQL, the
bench's databases emptied first. Two couples, each with the same 90 days of both partners'
history (``couple_history``: about 500 entries, relabelled with new ids for the second): one
couple's phones send every entry as its own ``POST /v1/entries``, one after another on one
kept-alive connection each, as a phone does; the other's send them as ``POST /v1/entries/batch``
of 100. Both ways take their entries in the same shuffled order (a late sync), the two partners'
phones at once (a thread each), and the two ways alternate through the rounds.

Measured for each way, from its first request: the time to the last answer, and the time until
the couple's final milestones (``final_milestones``: what both partners see once every event is
applied and evaluated) are all visible in ``GET /v1/milestones``. The singles and the batches
must reach the same milestones; the settle time (``MILESTONES_SETTLE_SECONDS``) is the
service's default.

Usage: python -m bench.offline_sync [--rounds N] [--batch 100]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import requests

from bench import procs, setup
from bench.e2e import SERVICES_TO_EMPTY, _couple
from shared.db import make_engine

ZONE = ZoneInfo("Europe/Paris")


def _at(day: date, hour: int, minute: int = 0) -> str:
    return datetime.combine(day, dtime(hour, minute), ZONE).isoformat()


def couple_history(today: date, days: int = 90, seed: int = 1) -> tuple[list[dict], list[dict]]:
    """Ana's and Ben's last `days` days (ending yesterday) as their phones hold them, about 500
    entries: a shared reflection each a day (communication rated 2-3, then 4-5 from halfway),
    anxious moments (private) frequent in the first month and rare after, a shared good-morning
    ritual every other day, a weekly shared check-in each, and Ana's independence steps from
    halfway. Enough for both partners' own milestones and the couple's."""
    rng = random.Random(seed)
    ana: list[dict] = []
    ben: list[dict] = []
    for i in range(days):
        day = today - timedelta(days=days - i)
        late = i >= days // 2
        for mine, per_day in ((ana, 3), (ben, 3)):
            mine.append(
                {
                    "kind": "daily_reflection",
                    "occurred_at": _at(day, 21),
                    "mood": rng.randint(5, 7),
                    "communication": rng.choice((4, 5) if late else (2, 3)),
                    "visibility": "shared",
                }
            )
            episodes = per_day if i < 30 else int(rng.random() < 0.15)
            for k in range(episodes):
                mine.append(
                    {
                        "kind": "anxious_episode",
                        "occurred_at": _at(day, 8 + 4 * k),
                        "intensity": rng.randint(5, 8) if i < 30 else rng.randint(2, 4),
                    }
                )
            if i % 7 == 6:
                mine.append(
                    {
                        "kind": "check_in",
                        "occurred_at": _at(day, 20),
                        "connection": rng.choice((4, 5) if late else (2, 3)),
                        "understanding": rng.choice((4, 5) if late else (2, 3)),
                        "visibility": "shared",
                    }
                )
        if i % 2 == 0:
            (ana if i % 4 == 0 else ben).append(
                {
                    "kind": "ritual",
                    "occurred_at": _at(day, 7, 30),
                    "ritual": "good_morning_text",
                    "visibility": "shared",
                }
            )
        if late and i % 2:
            ana.append(
                {"kind": "independence_activity", "occurred_at": _at(day, 18), "activity": "hobby"}
            )
    return [dict(e, id=str(uuid.uuid4())) for e in ana], [
        dict(e, id=str(uuid.uuid4())) for e in ben
    ]


def in_batches(bodies: list[dict], size: int) -> list[list[dict]]:
    return [bodies[i : i + size] for i in range(0, len(bodies), size)]


def _milestones(url: str, headers: dict) -> dict[str, str]:
    """What a partner sees: "type:level" -> the local date it was seen on."""
    r = requests.get(f"{url}/v1/milestones?limit=200", headers=headers, timeout=30)
    r.raise_for_status()
    return {f"{m['type']}:{m['level']}": m["as_of"] for m in r.json()["items"]}


def _sync(journal: str, partners: list[dict], histories: list[list[dict]], batch: int) -> float:
    """Each partner's phone sends their history (batches of `batch`, or singles with 0), the two at
    once; returns the seconds from the first request to the last answer."""
    errors: list[str] = []

    def phone(who: dict, bodies: list[dict]) -> None:
        session = procs.HttpSession()
        if batch:
            for chunk in in_batches(bodies, batch):
                r = session.post(
                    f"{journal}/v1/entries/batch", json={"entries": chunk}, headers=who["headers"]
                )
                results = json.loads(r.content)["results"] if r.status_code == 200 else []
                if r.status_code != 200 or any(x["status"] != 201 for x in results):
                    errors.append(f"batch: {r.status_code}")
        else:
            for body in bodies:
                r = session.post(f"{journal}/v1/entries", json=body, headers=who["headers"])
                if r.status_code != 201:
                    errors.append(f"single: {r.status_code}")

    threads = [
        threading.Thread(target=phone, args=(who, bodies))
        for who, bodies in zip(partners, histories)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, the first: {errors[0]}")
    return took


def _quiet(engines: dict, partner_ids: list[str], entries: int) -> bool:
    """The couple formed and `entries` of the partners' entries applied in the milestones service,
    and both partners evaluated since (none waiting for a settle time or a batch)."""
    from sqlalchemy import func, select

    from services.milestones.tables import batches, partners
    from services.milestones.tables import entries as applied

    with engines["milestones"].connect() as conn:
        coupled = conn.execute(
            select(func.count())
            .select_from(partners)
            .where(
                partners.c.id.in_(partner_ids),
                partners.c.couple_id.is_not(None),
                partners.c.dirty_since.is_(None),
            )
        ).scalar()
        stored = conn.execute(
            select(func.count()).select_from(applied).where(applied.c.partner_id.in_(partner_ids))
        ).scalar()
        in_flight = conn.execute(select(func.count()).select_from(batches)).scalar()
    return coupled == len(partner_ids) and stored == entries and in_flight == 0


def _final_milestones(
    milestones: str, partners: list[dict], engines: dict, entries: int, start: float
) -> tuple[list[dict[str, str]], float]:
    """What each partner sees once the sync is wholly applied and evaluated, and the seconds from
    `start` to the moment it was first all visible (polled every 0.1 s)."""
    seen, changed = None, time.perf_counter()
    deadline = time.monotonic() + 300
    while True:
        # quiet first, then read: what is read after a quiet moment is final
        quiet = _quiet(engines, [who["id"] for who in partners], entries)
        now = [_milestones(milestones, who["headers"]) for who in partners]
        if now != seen:
            seen, changed = now, time.perf_counter()
        elif quiet:
            return seen, changed - start
        if time.monotonic() > deadline:
            raise RuntimeError("the sync was not applied and evaluated within 5 minutes")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--days", type=int, default=90)
    args = ap.parse_args(argv)
    env = setup.servers()
    for name in SERVICES_TO_EMPTY:
        setup.empty(env[f"{name.upper()}_DATABASE_URL"])
    tmp = Path(tempfile.mkdtemp(prefix="tandem-bench-sync-"))
    run_env = dict(os.environ, **env, TANDEM_VAR_DIR=str(tmp / "var"), PYTHONUNBUFFERED="1")
    proc, urls = procs.start_tandem(run_env, tmp)
    runs: dict[str, list[dict]] = {"singles": [], "batches": []}
    engines: dict = {}
    try:
        today = datetime.now(ZONE).date()
        ana, ben = couple_history(today, args.days)
        entries = len(ana) + len(ben)
        setup_session = requests.Session()
        finals: list[list[dict[str, str]]] = []
        engines["milestones"] = make_engine(env["MILESTONES_DATABASE_URL"])
        for r in range(args.rounds):
            order = ("singles", "batches") if r % 2 == 0 else ("batches", "singles")
            for way in order:
                _, partners = _couple(urls["journal"], setup_session)
                while not _quiet(engines, [who["id"] for who in partners], 0):
                    time.sleep(
                        0.2
                    )  # the sign-ups' events applied and evaluated: not the sync's work
                rng = random.Random(r)
                histories = []
                for history in (ana, ben):
                    late = [dict(e, id=str(uuid.uuid4())) for e in history]
                    rng.shuffle(late)
                    histories.append(late)
                start = time.perf_counter()
                answered = _sync(
                    urls["journal"], partners, histories, args.batch if way == "batches" else 0
                )
                seen, visible = _final_milestones(
                    urls["milestones"], partners, engines, entries, start
                )
                finals.append(seen)
                runs[way].append(
                    {"last_answer_s": round(answered, 3), "milestones_visible_s": round(visible, 2)}
                )
    finally:
        procs.stop(proc)
        for e in engines.values():
            e.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    if any(f != finals[0] for f in finals):
        raise RuntimeError(f"the ways ended with different milestones: {finals}")

    def median(way: str, key: str) -> float:
        return round(statistics.median(x[key] for x in runs[way]), 3)

    result = {
        "entries": entries,
        "days": args.days,
        "batch": args.batch,
        "rounds": args.rounds,
        "singles_last_answer_s": median("singles", "last_answer_s"),
        "batches_last_answer_s": median("batches", "last_answer_s"),
        "singles_milestones_s": median("singles", "milestones_visible_s"),
        "batches_milestones_s": median("batches", "milestones_visible_s"),
        "milestones": sorted(set(finals[0][0]) | set(finals[0][1])),
        "runs": runs,
    }
    result["speedup"] = round(result["singles_last_answer_s"] / result["batches_last_answer_s"], 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
