"""docker-compose.yml, checked the way we can without Docker: against the
Compose Specification's JSON schema, and every command it runs exists."""
from __future__ import annotations

import json
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
