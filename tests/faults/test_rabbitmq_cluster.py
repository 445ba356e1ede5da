"""A real three-node RabbitMQ cluster (`tools/rabbitmq-cluster`, beside the
machine's own broker), quorum queues replicated on all three, and `tandem
run` given the cluster as a Kombu failover URL list. Two partners post
without pause; the node every process is connected to (the first of the
list) is stopped in the middle of the flow; the other two carry on.

- the journal keeps answering 201 throughout;
- every process carries on by itself (relays publish on another node,
  consumers reconnect to one, queues elect a new leader);
- nothing lost or done twice: each entry applied once, each ritual level
  once, one notification per recipient, her live inbox open throughout
  (tests/faults/load.py).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import Backend, _truncate
from tests.e2e.conftest import ROOT
from tests.faults.load import (
    Live,
    Load,
    check_nothing_lost_or_twice,
    couple,
    stop_cleanly,
    tandem_on,
)
from tests.support import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]  # processes killed, servers stopped

TOOL = ROOT / "tools" / "rabbitmq-cluster"


def _cluster(*args: str) -> str:
    out = subprocess.run([str(TOOL), *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"rabbitmq-cluster {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout.strip()


@pytest.fixture
def cluster(tmp_path):
    """The failover URL list of a fresh three-node cluster; stopped and deleted afterwards."""
    _cluster("down")
    try:
        urls = _cluster("up", "3").splitlines()[-1]
        assert urls.count(";") == 2, urls
        yield urls
    finally:
        _cluster("down")


def test_the_node_every_process_is_connected_to_stops_and_nothing_is_lost_or_done_twice(
    cluster, pg_databases, tmp_path
):
    for url in pg_databases.values():
        _truncate(url)
    backend = Backend("cluster", cluster, dict(pg_databases), tmp_path / "var")
    backend.var_dir.mkdir()
    with tandem_on(backend) as (run, urls, db):
        a, b = couple(urls["journal"])
        live = Live(urls["notify"], a["headers"])
        with Load(urls, [a, b]) as load:
            wait_until(
                lambda: load.taken() >= 30, timeout=60, what="entries taken before the node stops"
            )
            _cluster("stop", "1")  # the first URL of the list: where every process connected
            stopped_at = load.taken()
            wait_until(
                lambda: load.taken() >= stopped_at + 60,
                timeout=120,
                what="entries taken while node 1 is down",
            )
        assert load.bad == [], "\n".join(load.bad[:20])
        assert sum(load.unavailable.values()) == 0, (
            f"no service answered 503: {dict(load.unavailable)}"
        )
        check_nothing_lost_or_twice(run, urls, db, load, a, b, live, cluster)
        output = stop_cleanly(run)
    for queue in (
        "milestones.events",
        "notify.events",
    ):  # connected to node 1, then to another: twice
        connected = [
            line
            for line in output.splitlines()
            if '"event": "broker_connected"' in line and f'"queue": "{queue}"' in line
        ]
        assert len(connected) >= 2, f"the {queue} consumer connected {len(connected)} time(s)"
