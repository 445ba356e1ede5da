"""Two processes of every worker (`<SERVICE>_<WORKER>_REPLICAS=2`: two relays
per service, two consumers per queue, two evaluators, two delivery workers)
under `tandem run` on RabbitMQ and PostgreSQL, while two partners post without
pause and all three services are read.

What one process would give, with nothing lost or done twice: each entry
taken applied once, per-partner day totals that match the entries, each
ritual level reached once (the count crossed by both partners' rituals, which
two consumers take at once), announced once, one notification per recipient,
each shown once in her live inbox (tests/faults/load.py).
"""

from __future__ import annotations

import pytest

from services import SERVICES
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


def test_two_of_every_worker_give_what_one_would(rabbit_backend):
    replicas = {
        f"{name.upper()}_{worker.upper()}_REPLICAS": "2"
        for name, spec in SERVICES.items()
        for worker in spec.workers
    }
    with tandem_on(rabbit_backend, **replicas) as (run, urls, db):
        a, b = couple(urls["journal"])
        live = Live(urls["notify"], a["headers"])
        with Load(urls, [a, b]) as load:
            # past the first two ritual levels (10 and 25), with rituals of both partners interleaved
            wait_until(lambda: load.taken() >= 150, timeout=120, what="150 entries taken")
        assert load.bad == [], "\n".join(load.bad[:20])
        check_nothing_lost_or_twice(run, urls, db, load, a, b, live, rabbit_backend.broker_url)
        stop_cleanly(run, replicas=2)
