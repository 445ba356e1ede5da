"""`docker compose up` as an operator runs it: the project's docker-compose.yml and Dockerfile on a
real Docker Engine, reached only through the ports the file publishes on this host.

`make test-compose` runs tests/compose/prepare.sh (the engine, the images) and then this module
(marked `compose`: `make test` leaves it out). Compose here is Debian's docker-compose 1.29,
which refuses the top-level `name:`: it runs a copy of the file without that line, as project
`tandem` (`-p`), with tests/compose/override.yml, which only swaps in the stand-in images of
RabbitMQ and PostgreSQL and adds an SMTP sink. Every other line is the file as shipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.e2e.test_walkthrough import check_walkthrough_output, walkthrough_script
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OUT = ROOT / "var/compose"
DOCKER = "/usr/bin/docker"  # Debian's CLI, as old as its engine
PROJECT = "tandem"
J, M, N = "http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://127.0.0.1:8003"
MANAGEMENT_PORT = 15672
PASSWORDS = (
    "RABBITMQ_PASSWORD",
    "POSTGRES_PASSWORD",
    "JOURNAL_BROKER_PASSWORD",
    "MILESTONES_BROKER_PASSWORD",
    "NOTIFY_BROKER_PASSWORD",
    "JOURNAL_DB_PASSWORD",
    "MILESTONES_DB_PASSWORD",
    "NOTIFY_DB_PASSWORD",
)
ONE_SHOT = {"broker-definitions", "journal-migrate", "milestones-migrate", "notify-migrate"}
TANDEM_PROCESSES = (
    "journal",
    "journal-relay",
    "milestones",
    "milestones-consumer",
    "milestones-evaluator",
    "milestones-relay",
    "notify",
    "notify-consumer",
    "notify-delivery",
    "notify-relay",
)
FIGURES: dict[str, object] = {}

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]


def until(predicate, timeout: float, what: str, every: float = 0.5):
    """Poll `predicate`: each poll runs docker or HTTP calls, so twice a second is enough."""
    return wait_until(predicate, timeout=timeout, what=what, every=every)


def _environment() -> dict[str, str]:
    """What an operator sets: the README's block (every password, a token key pair), run as it is,
    and the SMTP server."""
    readme = (ROOT / "README.md").read_text()
    [block] = re.findall(r"<!-- compose-env -->\s*```sh\n(.*?)```", readme, re.S)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block + "\nenv -0"],
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        check=True,
    )
    env = dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    assert set(PASSWORDS) | {"TOKEN_PRIVATE_KEY", "TOKEN_PUBLIC_KEY"} <= set(env)
    return {**env, "SMTP_URL": "smtp://smtp-sink:1025"}


def _v1_copy() -> Path:
    """docker-compose.yml less its `name:` line (Compose v1 refuses it; `-p` names the project)."""
    lines = (ROOT / "docker-compose.yml").read_text().splitlines(keepends=True)
    named = [line for line in lines if line.startswith("name:")]
    assert named == [f"name: {PROJECT}\n"], named
    OUT.mkdir(parents=True, exist_ok=True)
    copy = OUT / "docker-compose.yml"
    copy.write_text("".join(line for line in lines if not line.startswith("name:")))
    return copy


class Stack:
    def __init__(self):
        self.env = _environment()
        self.files = ["-f", str(_v1_copy()), "-f", str(HERE / "override.yml")]

    def compose(self, *args: str, timeout: float = 600) -> str:
        cmd = ["docker-compose", "-p", PROJECT, "--project-directory", str(ROOT), *self.files]
        done = subprocess.run(
            [*cmd, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"docker-compose {' '.join(args)}: {done.stderr[-3000:]}"
        return done.stdout

    def containers(self) -> dict[str, dict]:
        """Each service's container, as `docker inspect` tells it."""
        ids = subprocess.run(
            [DOCKER, "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if not ids:
            return {}
        found = json.loads(
            subprocess.run(
                [DOCKER, "inspect", *ids], capture_output=True, text=True, check=True
            ).stdout
        )
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in found}

    def services(self) -> set[str]:
        return set(self.compose("config", "--services").split())

    def unhealthy(self) -> dict[str, str]:
        """The services not (yet) as they should be: one-shots exited 0, health checks healthy,
        the others running without a restart."""
        have, bad = self.containers(), {}
        for name in self.services():
            c = have.get(name)
            if c is None:
                bad[name] = "no container"
                continue
            state = c["State"]
            if name in ONE_SHOT:
                if state["Status"] != "exited" or state["ExitCode"] != 0:
                    bad[name] = f"{state['Status']} (exit {state['ExitCode']})"
            elif state["Status"] != "running" or c["RestartCount"]:
                bad[name] = f"{state['Status']}, restarted {c['RestartCount']}x"
            elif "Health" in state and state["Health"]["Status"] != "healthy":
                bad[name] = state["Health"]["Status"]
        return bad

    def up(self) -> float:
        """`up -d`, then the seconds until every service is healthy."""
        start = time.monotonic()
        self.compose("up", "-d", "--no-build")
        until(lambda: not self.unhealthy(), 300, "every service healthy", every=1)
        return round(time.monotonic() - start, 1)

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service)


@pytest.fixture(scope="module")
def stack():
    assert (OUT / "prepare.env").is_file(), "run tests/compose/prepare.sh first (make test-compose)"
    FIGURES.update(
        line.split("=", 1) for line in (OUT / "prepare.env").read_text().split() if "=" in line
    )
    s = Stack()
    s.compose("down", "-v", "--remove-orphans")  # a new operator's first start: no volumes yet
    try:
        FIGURES["first_up_to_healthy_seconds"] = s.up()
        yield s
    finally:
        (OUT / "stack.log").write_text(s.compose("logs", "--no-color"))
        s.compose("down", "-v", "--remove-orphans")
        (OUT / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
        print("\ncompose figures:", json.dumps(FIGURES))


def _account(who: str) -> tuple[str, dict]:
    email = f"{who}-{uuid.uuid4().hex[:8]}@example.com"
    password = "a long compose passphrase"
    r = requests.post(
        J + "/v1/accounts",
        json={"email": email, "password": password, "display_name": who, "timezone": "UTC"},
        timeout=10,
    )
    assert r.status_code == 201, r.status_code
    return email, _login(email, password)


def _login(email: str, password: str = "a long compose passphrase") -> dict:
    r = requests.post(J + "/v1/tokens", json={"email": email, "password": password}, timeout=10)
    assert r.status_code == 201, r.status_code
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _entry_ids(headers: dict) -> list[str]:
    ids, cursor = [], None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = requests.get(J + "/v1/entries", headers=headers, params=params, timeout=10).json()
        ids += [item["id"] for item in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return ids


def _episodes_seen(headers: dict) -> int | None:
    """How many anxious moments the milestones service counted for the caller (its own read
    model, fed through the broker)."""
    r = requests.get(
        M + "/v1/progress", headers=headers, params={"metric": "anxious_episodes"}, timeout=10
    )
    if r.status_code != 200:
        return None
    return sum(p["value"] or 0 for p in r.json()["points"])


def _queues_settled(stack: Stack) -> bool:
    """Every queue empty with nothing unacknowledged, as RabbitMQ's management API tells the
    operators' user on the port published on 127.0.0.1."""
    r = requests.get(
        f"http://127.0.0.1:{MANAGEMENT_PORT}/api/queues",
        auth=("tandem", stack.env["RABBITMQ_PASSWORD"]),
        timeout=10,
    )
    return r.status_code == 200 and all(
        q.get("messages", 1) == 0 and q.get("messages_unacknowledged", 1) == 0 for q in r.json()
    )


def assert_no_failure_logged(stack: Stack) -> None:
    """No Tandem process logged an error, nor a job failing for good (a missing file, say)."""
    failures = [
        line[:300]
        for line in stack.compose("logs", "--no-color", *TANDEM_PROCESSES).splitlines()
        if '"level": "error"' in line
        or '"level": "critical"' in line
        or '"transient": false' in line
    ]
    assert not failures, "\n".join(failures[:10])


def test_every_service_comes_up_healthy_from_the_image_as_shipped(stack):
    assert not stack.unhealthy()
    assert stack.services() >= {"journal", "milestones", "notify", "rabbitmq", "postgres"}
    image = subprocess.run(
        [DOCKER, "image", "inspect", "tandem:latest"], capture_output=True, text=True, check=True
    )
    config = json.loads(image.stdout)[0]["Config"]
    assert config["User"] == "tandem", "the image runs as an unprivileged user"
    assert not any(
        word in "\n".join(config["Env"]).upper() for word in ("PASSWORD", "PRIVATE_KEY", "SECRET")
    )
    probe = subprocess.run(
        [DOCKER, "run", "--rm", "--network", "none", "tandem:latest", "sh", "-c",
         "id -u; for c in gcc cc g++ clang make; do command -v $c; done; true"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.split() == [probe.stdout.split()[0]] and probe.stdout.split()[0] != "0", (
        f"root, or a compiler in the image: {probe.stdout}"
    )


def test_only_the_http_services_and_the_management_ui_are_published_and_on_this_host(stack):
    published = {}
    for name, c in stack.containers().items():
        for port, binds in (c["NetworkSettings"]["Ports"] or {}).items():
            for b in binds or []:
                published.setdefault(name, set()).add((b["HostIp"], b["HostPort"], port))
    assert published.pop("rabbitmq") == {("127.0.0.1", str(MANAGEMENT_PORT), "15672/tcp")}
    anywhere = {"0.0.0.0", "::"}  # the HTTP services: on every interface, IPv4 and IPv6
    assert published == {
        name: {(ip, port, f"{port}/tcp") for ip in anywhere}
        for name, port in (("journal", "8001"), ("milestones", "8002"), ("notify", "8003"))
    }


def test_the_readme_walkthrough_through_the_published_ports(stack, tmp_path):
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough_script()],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    check_walkthrough_output(done.stdout, tmp_path)
    # Ana's entries crossed the broker into the milestones service's own database.
    ana = _login("ana@example.com", "a long passphrase")
    assert until(lambda: _episodes_seen(ana) == 1, 60, "Ana's anxious moment in milestones")
    assert_no_failure_logged(stack)


def test_a_password_reset_email_reaches_the_smtp_server(stack):
    email, _ = _account("mail")
    r = requests.post(J + "/v1/password-resets", json={"email": email}, timeout=10)
    assert r.status_code == 202
    until(
        lambda: (
            email in stack.logs("smtp-sink")
            and "Reset your Tandem password" in stack.logs("smtp-sink")
        ),
        60,
        "the reset email at the SMTP sink",
        every=1,
    )


def test_restarting_the_consumer_and_the_broker_while_entries_arrive_loses_nothing(stack):
    """Entries posted without a pause while `docker compose restart` stops and starts the
    milestones consumer, then RabbitMQ: each is stored once and counted once by milestones."""
    _, headers = _account("restarts")
    posted: list[str] = []
    refused = {"count": 0}
    stop = threading.Event()
    start = datetime.now(UTC) - timedelta(hours=1)

    def post():
        while not stop.is_set() and len(posted) < 3000:
            entry_id = str(uuid.uuid4())
            body = {
                "id": entry_id,
                "kind": "anxious_episode",
                "occurred_at": (start + timedelta(seconds=len(posted))).isoformat(),
                "intensity": 3,
            }
            while True:  # as a phone does: the same entry again until it is taken
                try:
                    r = requests.post(J + "/v1/entries", headers=headers, json=body, timeout=10)
                    if r.status_code in (200, 201):
                        break
                except requests.RequestException:
                    pass
                refused["count"] += 1
                stop.wait(0.2)
            posted.append(entry_id)
            stop.wait(0.05)  # about 15 entries a second: a busy phone fleet, not a flood

    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    try:
        for service in ("milestones-consumer", "rabbitmq"):
            before = len(posted)
            until(lambda b=before: len(posted) >= b + 30, 60, "entries posted", every=0.1)
            began = time.monotonic()
            stack.compose("restart", service)
            FIGURES[f"restart_{service}_seconds"] = round(time.monotonic() - began, 1)
            FIGURES[f"posted_during_restart_{service}"] = len(posted) - before
        until(lambda: not stack.unhealthy(), 120, "every service healthy again", every=1)
        after = len(posted)
        until(lambda: len(posted) >= after + 30, 60, "entries posted after the restarts", every=0.1)
    finally:
        stop.set()
        poster.join(timeout=30)
    stored = _entry_ids(headers)
    until(lambda: _episodes_seen(headers) == len(posted), 180, "milestones to count every entry")
    until(lambda: _queues_settled(stack), 120, "every queue drained and acknowledged")
    FIGURES.update(
        restart_entries_posted=len(posted),
        restart_entries_stored=len(stored),
        restart_entries_counted_by_milestones=_episodes_seen(headers),
        restart_posts_retried=refused["count"],
    )
    assert sorted(stored) == sorted(posted), "each entry stored exactly once"
    assert _episodes_seen(headers) == len(posted), "each entry counted exactly once"


def test_down_and_up_again_keeps_every_service_s_data(stack):
    ana = _login("ana@example.com", "a long passphrase")
    entries, seen = sorted(_entry_ids(ana)), _episodes_seen(ana)
    assert entries and seen == 1
    stack.compose("down")
    assert not stack.containers()
    FIGURES["down_up_to_healthy_seconds"] = stack.up()
    ana = _login("ana@example.com", "a long passphrase")
    assert sorted(_entry_ids(ana)) == entries
    assert _episodes_seen(ana) == seen
    r = requests.get(N + "/v1/devices", headers=ana, timeout=10)
    assert r.status_code == 200 and len(r.json()["items"]) == 1  # the phone of the walk-through
    assert_no_failure_logged(stack)
