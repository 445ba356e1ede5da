"""What the fault tests share: a couple signed up through the API, a load of
entries and reads that checks every answer, a live inbox kept open, and the
check, once the fault is over, that nothing was lost or done twice."""

from __future__ import annotations

import contextlib
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy import func, select

from services import SERVICES
from services.journal.tables import outbox as journal_outbox
from services.milestones.rules import RITUAL_LEVELS
from services.milestones.tables import days, milestones
from services.milestones.tables import entries as milestones_entries
from services.milestones.tables import outbox as milestones_outbox
from services.milestones.tables import processed_events as milestones_processed
from services.notify.tables import notifications
from services.notify.tables import outbox as notify_outbox
from shared import broker, topology
from shared.db import make_engine
from tests.conftest import NOTE_MARKER
from tests.e2e.conftest import process_env, start_tandem
from tests.support import drain, wait_until

PROBLEM = "application/problem+json"


def sign_up(journal: str, name: str) -> dict:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    r = requests.post(
        f"{journal}/v1/accounts",
        json={
            "email": email,
            "password": "correct horse battery",
            "display_name": name,
            "timezone": "Europe/Paris",
        },
        timeout=10,
    )
    assert r.status_code == 201, r.text
    t = requests.post(
        f"{journal}/v1/tokens",
        json={"email": email, "password": "correct horse battery"},
        timeout=10,
    )
    assert t.status_code == 201, t.text
    return {
        "id": r.json()["id"],
        "headers": {"Authorization": f"Bearer {t.json()['access_token']}"},
    }


def couple(journal: str) -> tuple[dict, dict]:
    a, b = sign_up(journal, "Ana"), sign_up(journal, "Ben")
    c = requests.post(f"{journal}/v1/couples", headers=a["headers"], timeout=10)
    assert c.status_code == 201, c.text
    j = requests.post(
        f"{journal}/v1/couples/join",
        headers=b["headers"],
        json={"invite_code": c.json()["invite_code"]},
        timeout=10,
    )
    assert j.status_code == 200, j.text
    return a, b


class Load:
    """Entries posted without pause by one thread per partner, and reads of every
    service from another. A 503 is retried with the same entry until it is taken;
    every answer is checked, and anything but 200/201/proper 503 is kept in `bad`."""

    def __init__(self, urls: dict[str, str], partners: list[dict]):
        self.urls = urls
        self.partners = partners
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.accepted: dict[str, tuple[str, str]] = {}  # entry id -> (author id, kind)
        self.unavailable: Counter = Counter()  # service -> proper 503s seen
        self.bad: list[str] = []
        self.threads = [
            threading.Thread(target=self._post, args=(p,), daemon=True) for p in partners
        ]
        self.threads.append(threading.Thread(target=self._read, daemon=True))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads), "a load thread is stuck"

    def _check(self, service: str, r: requests.Response) -> bool:
        """True if the answer is a success; a 503 must be a problem with Retry-After."""
        if r.status_code in (200, 201):
            return True
        if r.status_code == 503:
            body = r.json() if r.headers.get("Content-Type", "").startswith(PROBLEM) else None
            if (
                r.headers.get("Retry-After", "").isdigit()
                and body
                and body.get("status") == 503
                and body.get("title")
            ):
                with self.lock:
                    self.unavailable[service] += 1
                return False
        with self.lock:
            self.bad.append(
                f"{service} {r.request.method} {r.request.path_url}: {r.status_code} "
                f"{r.headers.get('Content-Type')} Retry-After={r.headers.get('Retry-After')} {r.text[:300]}"
            )
        return False

    def _entry(self, i: int) -> dict:
        when = datetime.now(UTC) - timedelta(days=i % 40, hours=random.randint(1, 20))
        body = {
            "id": str(uuid.uuid4()),
            "occurred_at": when.isoformat(),
            "note": f"{NOTE_MARKER} {i}",
        }
        if i % 3 == 0:
            body.update(
                kind="ritual", ritual="good_morning_text", visibility="shared"
            )  # the couple's count
        else:
            body.update(kind="anxious_episode", intensity=random.randint(0, 10))
        return body

    def _post(self, partner: dict) -> None:
        session = requests.Session()
        i = 0
        while not self.stop_event.is_set():
            body = self._entry(i)
            i += 1
            deadline = (
                time.monotonic() + 60
            )  # the same entry until it is taken (or the test gives up)
            while time.monotonic() < deadline:
                try:
                    r = session.post(
                        f"{self.urls['journal']}/v1/entries",
                        json=body,
                        headers=partner["headers"],
                        timeout=15,
                    )
                except requests.RequestException as e:
                    with self.lock:
                        self.bad.append(f"journal POST /v1/entries: {type(e).__name__}")
                    time.sleep(0.1)
                    continue
                if self._check("journal", r):
                    with self.lock:
                        self.accepted[body["id"]] = (partner["id"], body["kind"])
                    break
                time.sleep(0.05)  # Retry-After is honoured loosely: the test wants load

    def _read(self) -> None:
        session = requests.Session()
        a = self.partners[0]["headers"]
        reads = [
            ("journal", "/v1/entries?limit=5"),
            ("milestones", "/v1/progress?metric=anxious_episodes"),
            ("milestones", "/v1/milestones"),
            ("notify", "/v1/notifications"),
            ("notify", "/v1/preferences"),
            ("notify", "/v1/notifications/stream"),
        ]
        while not self.stop_event.is_set():
            for service, path in reads:
                try:  # streamed: the live inbox's answer never ends, only its status is read
                    with session.get(
                        self.urls[service] + path, headers=a, timeout=15, stream=True
                    ) as r:
                        self._check(service, r)
                except requests.RequestException as e:
                    with self.lock:
                        self.bad.append(f"{service} GET {path}: {type(e).__name__}")
            time.sleep(0.02)

    def taken(self) -> int:
        with self.lock:
            return len(self.accepted)


class Live:
    """A partner's live inbox (server-sent events), open from before the faults
    to the end: the notification ids it was sent, and whether it was cut."""

    def __init__(self, notify: str, headers: dict):
        self.ids: list[str] = []
        self.cut: str | None = None
        self.closing = False
        self.response = requests.get(
            f"{notify}/v1/notifications/stream", headers=headers, stream=True, timeout=(5, 60)
        )  # a keep-alive comes every 15 s
        assert self.response.status_code == 200, self.response.text
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line.startswith("id: "):
                    self.ids.append(line[4:])
            self.cut = None if self.closing else "the stream ended"
        except Exception as e:
            self.cut = None if self.closing else type(e).__name__

    def close(self) -> None:
        self.closing = True
        self.response.close()
        self.thread.join(timeout=10)


def ready(urls: dict[str, str]) -> dict[str, int]:
    return {s: requests.get(u + "/readyz", timeout=5).status_code for s, u in urls.items()}


@contextlib.contextmanager
def tandem_on(backend, **extra: str):
    """`tandem run` on `backend` (with `extra` in its environment), and an
    engine on each service's database: (the run, its URLs, the engines)."""
    run = start_tandem(
        process_env(backend, WEB_CONCURRENCY="2", MILESTONES_SETTLE_SECONDS="1", **extra)
    )
    engines = {svc: make_engine(url) for svc, url in backend.db_urls.items()}
    try:
        yield run, run.urls, engines
    finally:
        for e in engines.values():
            e.dispose()
        if run.proc.returncode is None:
            sys.stderr.write(
                run.stop()
            )  # read for secrets like every test's output (tests/conftest.py)


def scalar(engine, stmt):
    with engine.connect() as conn:
        return conn.execute(stmt).scalar()


def check_nothing_lost_or_twice(
    run, urls: dict[str, str], db: dict, load: Load, a: dict, b: dict, live: Live, rabbit_url: str
) -> None:
    """After a fault and the load: every process still running and ready,
    every outbox drained; each entry taken is in the journal once, announced
    once and applied once by the milestones service; each milestone reached
    once, announced once, one notification per recipient, each shown once in
    her live inbox, which stayed open; nothing dead-lettered."""
    # Carried on by themselves: nothing exited, everything ready, every outbox drained.
    assert run.proc.poll() is None, (
        "tandem run (and so every process it supervises) is still running"
    )
    wait_until(
        lambda: set(ready(urls).values()) == {200}, timeout=30, what="every service ready again"
    )
    taken = dict(load.accepted)
    recorded = (
        select(func.count())
        .select_from(milestones_processed)
        .where(milestones_processed.c.type == "journal.entry.recorded")
    )
    wait_until(
        lambda: scalar(db["milestones"], recorded) >= len(taken),
        timeout=60,
        what="every entry's event to reach the milestones service",
    )
    for svc, outbox in (
        ("journal", journal_outbox),
        ("milestones", milestones_outbox),
        ("notify", notify_outbox),
    ):
        wait_until(
            lambda: (
                scalar(
                    db[svc],
                    select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None)),
                )
                == 0
            ),
            timeout=30,
            what=f"the {svc} outbox to drain",
        )

    # No entry lost: each one taken is there, once, in the journal...
    headers = {a["id"]: a["headers"], b["id"]: b["headers"]}
    session = requests.Session()
    for entry_id, (author, _) in taken.items():
        r = session.get(
            f"{urls['journal']}/v1/entries/{entry_id}", headers=headers[author], timeout=10
        )
        assert r.status_code == 200, (entry_id, r.status_code, r.text)
    with db["journal"].connect() as conn:
        bodies = (
            conn.execute(
                select(journal_outbox.c.body).where(
                    journal_outbox.c.routing_key == "journal.entry.recorded"
                )
            )
            .scalars()
            .all()
        )
    announced = Counter(json.loads(body)["data"]["entry_id"] for body in bodies)
    assert set(announced) == set(taken) and set(announced.values()) == {1}, (
        "one event per entry, no other"
    )

    # ... and reached the milestones service exactly once.
    assert scalar(db["milestones"], recorded) == len(taken)
    with db["milestones"].connect() as conn:
        there = Counter(conn.execute(select(milestones_entries.c.id)).scalars())
        per_partner = dict(
            conn.execute(
                select(days.c.partner_id, func.sum(days.c.entries)).group_by(days.c.partner_id)
            ).all()
        )
        reached = conn.execute(
            select(milestones.c.id, milestones.c.type, milestones.c.level, milestones.c.owner_key)
        ).all()
    assert there == Counter(taken.keys()), "every entry, once, and no other"
    assert per_partner == dict(Counter(author for author, _ in taken.values()))
    episodes = sum(
        1 for author, kind in taken.values() if author == a["id"] and kind == "anxious_episode"
    )
    r = requests.get(
        f"{urls['milestones']}/v1/progress?metric=anxious_episodes",
        headers=a["headers"],
        timeout=10,
    )
    assert sum(p["value"] or 0 for p in r.json()["points"]) == episodes

    # Each milestone once, announced once, and one notification per recipient of it.
    rituals_kept = sum(1 for _, kind in taken.values() if kind == "ritual")
    assert {(m.type, m.level) for m in reached if m.type == "rituals_kept"} == {
        ("rituals_kept", level) for level, n in RITUAL_LEVELS if rituals_kept >= n
    }
    assert len({(m.type, m.level, m.owner_key) for m in reached}) == len(reached)
    with db["milestones"].connect() as conn:
        achieved = [
            json.loads(body)["data"]
            for body in conn.execute(
                select(milestones_outbox.c.body).where(
                    milestones_outbox.c.routing_key == "milestones.milestone.achieved"
                )
            ).scalars()
        ]
    assert sorted(m["id"] for m in achieved) == sorted(m.id for m in reached)
    expected = Counter((m["id"], pid) for m in achieved for pid in m["audience"])

    def made():
        with db["notify"].connect() as conn:
            return Counter(
                map(
                    tuple,
                    conn.execute(select(notifications.c.milestone_id, notifications.c.partner_id)),
                )
            )

    wait_until(
        lambda: made() == expected, timeout=30, what="one notification per milestone and recipient"
    )
    with db["notify"].connect() as conn:
        hers = set(
            conn.execute(
                select(notifications.c.id).where(notifications.c.partner_id == a["id"])
            ).scalars()
        )
    wait_until(
        lambda: set(live.ids) == hers or live.cut,
        timeout=30,
        what="her live inbox to show each of hers",
    )
    live.close()
    assert live.cut is None and sorted(live.ids) == sorted(hers), (
        "her live inbox stayed open through it all, each once"
    )

    with broker.connect(rabbit_url) as conn:
        assert [drain(f"{q}.dead", conn) for q in topology.SUBSCRIPTIONS] == [[], []], (
            "nothing dead-lettered"
        )


def stop_cleanly(run, replicas: int = 1) -> str:
    """`tandem run` stops on request, every process with it (each of
    `replicas` of every worker), and no process logged a failed handler, a
    dead letter, an unhandled error or a traceback."""
    output = run.stop()
    sys.stderr.write(output)
    for name, spec in SERVICES.items():  # stopped by us, not before
        names = [f"{name}.web"] + [
            f"{name}.{w}" + (f".{k}" if replicas > 1 else "")
            for w in spec.workers
            for k in range(1, replicas + 1)
        ]
        for process in names:
            assert f"{process} stopped" in output, (process, output[-3000:])
    trouble = [
        line
        for line in output.splitlines()
        if any(
            f'"event": "{e}"' in line
            for e in ("handler_failed", "event_dead_lettered", "unhandled_error", "database_error")
        )
        or "Traceback" in line
    ]
    assert trouble == [], "\n".join(trouble[:10])
    return output
