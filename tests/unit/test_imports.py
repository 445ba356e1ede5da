"""Each process loads what it uses: numpy and scipy (some 50 MiB and a good part
of a second a process) only in the two milestones processes that run the
rules, the consumer and the evaluator. Each process's entry is built in a
fresh interpreter, as `tandem run` starts it (the command module, then the
service's app factory or worker), on the embedded default in a temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services import SERVICES

ROOT = Path(__file__).resolve().parents[2]
NUMERICAL = ("numpy", "scipy")
RUN_THE_RULES = {("milestones", "consumer"), ("milestones", "evaluator")}

# What each worker's `run_*` builds before its loop (the loop itself never returns).
BUILDS = {
    "run_relay": "make_relay()",
    "run_consumer": "make_consumer()",
    "run_delivery": "make_deliverer()",
    "run_evaluator": "make_evaluator().tick()",  # its first look loads what evaluating needs
}

PROBE = """
import importlib, json, sys
import services.cli
from shared import migrate
for name in {services!r}:
    migrate.upgrade(name, __import__("shared.config").config.database_url(name))
already = {{m for m in sys.modules if m.split(".")[0] in {numerical!r}}}
module = importlib.import_module({module!r})
eval({call!r}, vars(module))
print(json.dumps({{"before": sorted(already), "loaded": sorted(
    {{m.split(".")[0] for m in sys.modules if m.split(".")[0] in {numerical!r}}})}}))
"""


def _entries():
    for name, spec in SERVICES.items():
        module, _, call = spec.wsgi.partition(":")
        yield pytest.param(name, "web", module, call, id=f"{name}.web")
        for worker, target in spec.workers.items():
            module, _, fn = target.partition(":")
            yield pytest.param(name, worker, module, BUILDS[fn], id=f"{name}.{worker}")


def _loaded(tmp_path: Path, module: str, call: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_DATABASE_URL", "BROKER_URL", "TANDEM_VAR_DIR"))
    }
    env["TANDEM_VAR_DIR"] = str(tmp_path / "var")
    code = PROBE.format(services=tuple(SERVICES), numerical=NUMERICAL, module=module, call=call)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("service", "process", "module", "call"), list(_entries()))
def test_only_the_processes_that_run_the_rules_load_numpy_and_scipy(
    tmp_path, service, process, module, call
):
    seen = _loaded(tmp_path, module, call)
    assert seen["before"] == [], seen  # `tandem run` and `tandem worker` load neither themselves
    if (service, process) in RUN_THE_RULES:
        assert seen["loaded"] == sorted(NUMERICAL), seen  # the check sees them where they are
    else:
        assert seen["loaded"] == [], f"{service}.{process} loads {seen['loaded']}"
