"""Prometheus metrics every service shares, and the /metrics exposition.

Under gunicorn several worker processes serve one service: with
``PROMETHEUS_MULTIPROC_DIR`` set, each process writes its own figures there and
/metrics adds them up.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from shared import config

REQUEST_SECONDS = Histogram(
    "tandem_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_CONSUMED = Counter(
    "tandem_events_consumed_total", "Events applied by a consumer", ["queue", "type"]
)
EVENTS_DUPLICATE = Counter(
    "tandem_events_duplicate_total", "Redelivered events skipped", ["queue", "type"]
)
EVENTS_FAILED = Counter(
    "tandem_events_failed_total", "Handler failures (each attempt)", ["queue", "type"]
)
EVENTS_DEAD_LETTERED = Counter(
    "tandem_events_dead_lettered_total", "Events sent to a dead-letter queue", ["queue", "reason"]
)
OUTBOX_PUBLISHED = Counter("tandem_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_BACKLOG = Gauge(
    "tandem_outbox_backlog", "Unpublished outbox rows", ["service"], multiprocess_mode="max"
)
OUTBOX_OLDEST_AGE = Gauge(
    "tandem_outbox_oldest_age_seconds",
    "Age of the oldest unpublished row",
    ["service"],
    multiprocess_mode="max",
)

DELIVERIES = Counter(
    "tandem_deliveries_total",
    "Notification sends settled, by channel and outcome (delivered, retry, failed)",
    ["channel", "outcome"],
)
DEAD_LETTER_DEPTH = Gauge(
    "tandem_dead_letter_depth",
    "Messages waiting in a dead-letter queue",
    ["queue"],
    multiprocess_mode="mostrecent",
)


def exposition() -> tuple[bytes, str]:
    if config.prometheus_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
