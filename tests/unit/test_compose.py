"""docker-compose.yml, checked the way we can without Docker: against the
Compose Specification's JSON schema, and every command it runs exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml

from services import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_specification():
    schema = json.loads((ROOT / "tests/data/compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(_compose())


def test_every_tandem_command_in_compose_exists():
    from click.testing import CliRunner

    from services.cli import main

    for name, svc in _compose()["services"].items():
        cmd = svc.get("command")
        if not cmd or cmd[0] != "tandem":
            continue
        args = cmd[1:]
        if args[0] in ("serve",):
            assert args[1] in SERVICES, f"{name}: unknown service {args[1]}"
        elif args[0] == "worker":
            assert args[2] in SERVICES[args[1]].workers, f"{name}: no worker {args[1]} {args[2]}"
        else:
            result = CliRunner().invoke(main, [args[0], "--help"])
            assert result.exit_code == 0, f"{name}: `tandem {args[0]}` does not exist"


def test_every_service_and_worker_runs_in_compose():
    services = _compose()["services"]
    commands = {tuple(s["command"]) for s in services.values() if s.get("command")}
    for name, spec in SERVICES.items():
        assert ("tandem", "serve", name) in commands
        for worker in spec.workers:
            assert ("tandem", "worker", name, worker) in commands


def test_compose_builds_from_the_dockerfile_in_the_project():
    assert (ROOT / "Dockerfile").is_file()
    assert (ROOT / "docker/postgres-init.sql").is_file()


def test_each_services_metrics_gather_its_web_and_its_workers():
    """Workers have no HTTP server: their figures reach the operator through
    the service's /metrics, from a multiprocess directory on a shared volume."""
    compose = _compose()
    services = compose["services"]
    for name, spec in SERVICES.items():
        names = [name] + [f"{name}-{worker}" for worker in spec.workers]
        for svc in names:
            env = services[svc].get("environment") or {}
            assert env.get("PROMETHEUS_MULTIPROC_DIR") == "/var/lib/tandem/metrics", svc
            assert f"{name}-metrics:/var/lib/tandem/metrics" in services[svc]["volumes"], svc
        assert f"{name}-metrics" in compose["volumes"]


def test_only_the_web_containers_take_the_metrics_scrapers_token():
    """/metrics answers a scraper from another container only with METRICS_TOKEN (else the container
    itself): the web containers serve it, and nothing else needs the token."""
    services = _compose()["services"]
    holders = {
        name for name, svc in services.items() if "METRICS_TOKEN" in (svc.get("environment") or {})
    }
    assert holders == set(SERVICES)


def _containers_of(services: dict, name: str) -> list[str]:
    """A service's containers: its web, its workers and its migration."""
    return [name, f"{name}-migrate"] + [f"{name}-{worker}" for worker in SERVICES[name].workers]


def _user(url: str) -> str:
    return url.split("://", 1)[1].split(":", 1)[0]


def test_only_the_journal_web_holds_the_key_that_mints_tokens_and_the_other_webs_verify():
    services = _compose()["services"]
    holders = {
        name
        for name, svc in services.items()
        if "TOKEN_PRIVATE_KEY" in (svc.get("environment") or {})
    }
    assert holders == {"journal"}
    for name in SERVICES:
        assert "TOKEN_PUBLIC_KEY" in services[name]["environment"], (
            f"{name} verifies tokens on its own"
        )


def test_only_the_notify_delivery_worker_holds_the_push_credentials():
    """The FCM service account's key sends pushes: the one process that sends them has it; the
    consumer, which plans them, knows only the project."""
    services = _compose()["services"]
    holders = {
        name
        for name, svc in services.items()
        if "FCM_CREDENTIALS_FILE" in (svc.get("environment") or {})
    }
    assert holders == {"notify-delivery"}
    assert "FCM_PROJECT_ID" in services["notify-consumer"]["environment"]


def test_each_services_containers_get_only_its_own_database_role_and_broker_user():
    services = _compose()["services"]
    db_users, broker_users = {}, {}
    for name in SERVICES:
        for container in _containers_of(services, name):
            env = services[container].get("environment") or {}
            assert "BROKER_URL" not in env, f"{container}: the operators' broker user"
            dbs = {k for k in env if k.endswith("_DATABASE_URL")}
            brokers = {k for k in env if k.endswith("_BROKER_URL")}
            assert dbs == {f"{name.upper()}_DATABASE_URL"}, container
            assert brokers <= {f"{name.upper()}_BROKER_URL"}, container
            db_users.setdefault(name, set()).add(_user(env[f"{name.upper()}_DATABASE_URL"]))
            if brokers:
                broker_users.setdefault(name, set()).add(_user(env[f"{name.upper()}_BROKER_URL"]))
            assert "SMTP_URL" not in env or name == "notify", container
    assert all(len(users) == 1 for users in db_users.values())
    assert all(len(users) == 1 for users in broker_users.values())
    assert len({u for users in db_users.values() for u in users}) == len(SERVICES), (
        "a database role each"
    )
    assert len({u for users in broker_users.values() for u in users}) == len(SERVICES), (
        "a broker user each"
    )
    # The roles the URLs name own their databases, and only they may connect to them.
    init = (ROOT / "docker/postgres-init.sql").read_text()
    for name, (user,) in db_users.items():
        assert f"CREATE ROLE {user} LOGIN" in init
        assert f"CREATE DATABASE tandem_{name} OWNER {user};" in init
        assert f"REVOKE ALL ON DATABASE tandem_{name} FROM PUBLIC;" in init


def test_the_broker_loads_definitions_made_from_the_same_service_users_before_any_service_starts():
    from click.testing import CliRunner

    from services.cli import main

    services = _compose()["services"]
    setup = services["broker-definitions"]
    assert setup["command"][:2] == ["tandem", "broker-users"]
    assert (
        services["rabbitmq"]["depends_on"]["broker-definitions"]["condition"]
        == "service_completed_successfully"
    )
    assert (
        "./docker/rabbitmq.conf:/etc/rabbitmq/conf.d/20-tandem.conf:ro"
        in services["rabbitmq"]["volumes"]
    )
    path = setup["command"][setup["command"].index("--output") + 1]
    conf = (ROOT / "docker/rabbitmq.conf").read_text()
    assert f"load_definitions = /etc/rabbitmq/tandem/{path.rsplit('/', 1)[1]}" in conf
    for name in SERVICES:
        key = f"{name.upper()}_BROKER_URL"
        assert setup["environment"][key] == services[name]["environment"][key]
    # What it makes of them (passwords filled in as compose would): each user publishes only its own events.
    env = {k: re.sub(r"\$\{[^}]*\}", "secret", v) for k, v in setup["environment"].items()}
    result = CliRunner().invoke(main, ["broker-users"], env=env)
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)
    topic = {
        p["user"]: p["write"] for p in made["topic_permissions"] if p["exchange"] == "progress"
    }
    assert topic == {_user(env[f"{n.upper()}_BROKER_URL"]): f"^{n}\\." for n in SERVICES}
    assert "secret" not in result.output, "passwords are only hashed in"
    assert [u["tags"] for u in made["users"] if u["name"] == _user(env["BROKER_URL"])] == [
        ["administrator"]
    ]


def test_no_password_has_a_default_and_the_broker_answers_on_this_host_only():
    """Compose refuses to start without each password; RabbitMQ's ports (AMQP stays on the
    Compose network) are published on 127.0.0.1 alone, under a fixed node name."""
    text = (ROOT / "docker-compose.yml").read_text()
    for name in re.findall(r"\$\{(\w*PASSWORD\w*)", text):
        assert f"${{{name}:?set {name}}}" in text and f"${{{name}:-" not in text, name
    rabbitmq = _compose()["services"]["rabbitmq"]
    assert rabbitmq["hostname"] == "rabbitmq"  # its data directory is named after the node
    assert rabbitmq["ports"] and all(p.startswith("127.0.0.1:") for p in rabbitmq["ports"])
    assert not any(p.endswith(":5672") for p in rabbitmq["ports"])
    assert "ports" not in _compose()["services"]["postgres"]
