"""Structured JSON logs that never carry a note, an email address or a token.

Redaction is by key (anything named like a secret or personal text) and by
pattern (anything that looks like an email address or a JWT), so a careless
``log.info(..., body=...)`` still cannot leak.
"""
from __future__ import annotations

import logging
import re
import sys

import structlog

SENSITIVE_KEYS = {
    "note", "notes", "email", "address", "password", "token", "access_token", "authorization",
    "invite_code", "body", "display_name", "url", "secret",
}
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REDACTED = "[redacted]"


def scrub_text(text: str) -> str:
    return JWT.sub(REDACTED, EMAIL.sub(REDACTED, text))


def _scrub(value):
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower() in SENSITIVE_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def redact(_logger, _method, event_dict):
    return _scrub(event_dict)


_configured = False


def configure(service: str, level: str = "INFO") -> None:
    """JSON lines on stderr for structlog and stdlib loggers alike, all redacted."""
    global _configured
    if _configured:
        return
    _configured = True
    pre = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=pre + [structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(),
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("amqp", "kombu", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel("WARNING")
