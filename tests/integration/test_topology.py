"""The broker topology as RabbitMQ sees it."""
from __future__ import annotations

import json
import subprocess

from shared import topology


def _queues(vhost: str) -> dict[str, dict]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type", "arguments", "durable",
                          "--formatter", "json"], capture_output=True, text=True, timeout=60, check=True)
    return {q["name"]: q for q in json.loads(out.stdout)}


def test_each_consumer_has_a_durable_quorum_queue_with_a_dead_letter_queue(rabbit_backend):
    vhost = rabbit_backend.broker_url.rsplit("/", 1)[-1] or "/"
    queues = _queues(vhost)
    for name in topology.SUBSCRIPTIONS:
        q, dead = queues[name], queues[f"{name}.dead"]
        assert q["type"] == "quorum" and q["durable"] and dead["type"] == "quorum" and dead["durable"]
        args = {k: v for k, _type, v in q["arguments"]}
        assert args["x-dead-letter-exchange"] == "progress.dead"
        assert args["x-dead-letter-routing-key"] == name
        assert int(args["x-delivery-limit"]) == topology.DELIVERY_LIMIT
