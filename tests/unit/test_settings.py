"""Every setting is read through shared/config.py, once, at start: a value that
is malformed, or of a kind the service does not know, stops the process there
with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.config import Settings

MALFORMED = [
    ("NOTIFY_SEND_TIMEOUT_SECONDS", "ten"),
    ("NOTIFY_RETRY_BASE_SECONDS", "-1"),
    ("NOTIFY_DELIVERY_LEASE_SECONDS", "0"),
    ("NOTIFY_DELIVERY_LEASE_SECONDS", "inf"),
    ("SMTP_URL", "mail.example.com:25"),
    ("SMTP_URL", "https://mail.example.com"),
    ("TOKEN_TTL_SECONDS", "15m"),
    ("NOTIFY_ALLOW_PRIVATE_TARGETS", "sometimes"),
]


@pytest.mark.parametrize("name,value", MALFORMED)
def test_a_malformed_setting_stops_the_start_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=name):
        Settings.from_env("notify")


def test_the_settings_are_read_once_at_start(monkeypatch):
    monkeypatch.setenv("NOTIFY_SEND_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("SMTP_URL", "smtps://mail.example.com")
    settings = Settings.from_env("notify")
    monkeypatch.setenv("NOTIFY_SEND_TIMEOUT_SECONDS", "ten")
    assert settings.send_timeout_seconds == 2.5
    assert settings.smtp_url == "smtps://mail.example.com"
    assert settings.retry_base_seconds == 5.0 and settings.delivery_lease_seconds == 60.0


def test_the_delivery_worker_does_not_start_on_a_malformed_setting(tmp_path):
    env = {**os.environ, "TANDEM_VAR_DIR": str(tmp_path), "SMTP_URL": "mail.example.com"}
    env.pop("NOTIFY_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "worker", "notify", "delivery"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "SMTP_URL must start with smtp:// or smtps://" in done.stderr
    assert not any(tmp_path.iterdir())  # stopped before it opened anything


PROCESS_SETTINGS = [
    ("JOURNAL_PORT", "eighty", lambda c: c.port("journal")),
    ("MILESTONES_PORT", "70000", lambda c: c.port("milestones")),
    ("WEB_NICE", "20", lambda c: c.web_nice()),
    ("WEB_CONCURRENCY", "0", lambda c: c.web_concurrency()),
    ("WEB_THREADS", "many", lambda c: c.web_threads()),
    ("MILESTONES_CONSUMER_REPLICAS", "-2", lambda c: c.replicas("milestones", "consumer")),
    ("MILESTONES_SETTLE_SECONDS", "soon", lambda c: c.settle_seconds()),
    ("TANDEM_LOG_FORMAT", "xml", lambda c: c.log_format()),
    ("TANDEM_SERVICE", "billing", lambda c: c.service_name()),
]


@pytest.mark.parametrize("name,value,read", PROCESS_SETTINGS, ids=[p[0] for p in PROCESS_SETTINGS])
def test_a_malformed_process_setting_stops_its_reader_naming_the_variable(
    monkeypatch, name, value, read
):
    from shared import config

    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=name):
        read(config)
    monkeypatch.delenv(name)
    read(config)  # unset: its default


def test_no_module_of_the_services_reads_the_environment_but_the_settings():
    """Every variable is read in shared/config.py; a process may only hand its environment on."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    reads = re.compile(r"os\.environ(\.get|\[)|os\.getenv")
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("services", "shared")
        for path in (root / folder).rglob("*.py")
        if path.name != "config.py" and "migrations" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if reads.search(line)
    ]
    assert offenders == []
