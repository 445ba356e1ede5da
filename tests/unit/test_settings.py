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
