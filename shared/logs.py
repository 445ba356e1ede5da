"""Structured logs that never carry a note, an email address or a token.

JSON lines, one an event, unless a person reads them: ``TANDEM_LOG_FORMAT=console``
(what ``tandem run`` sets when its output is a terminal, and the default when
stderr is one) gives one coloured, readable line an event instead.

Redaction is by key (anything named like a secret or personal text) and by
pattern (anything that looks like an email address or a JWT), so a careless
``log.info(..., body=...)`` still cannot leak.
"""

from __future__ import annotations

import logging
import re
import sys

import structlog

from shared import config

SENSITIVE_KEYS = {
    "note",
    "notes",
    "email",
    "address",
    "password",
    "token",
    "access_token",
    "authorization",
    "invite_code",
    "body",
    "display_name",
    "url",
    "secret",
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
        return {
            k: (REDACTED if str(k).lower() in SENSITIVE_KEYS else _scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def safe_exception(_logger, _method, event_dict):
    """Keep an exception's type and where it happened, never its message: a
    message can quote anything the code had in hand (a note, an address)."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        import traceback

        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if exc_info and exc_info[0] is not None:
            frames = traceback.extract_tb(exc_info[2])
            event_dict["exception"] = exc_info[0].__name__
            event_dict["stack"] = [
                f"{f.filename.rsplit('/site-packages/', 1)[-1]}:{f.lineno} {f.name}"
                for f in frames[-12:]
            ]
    return event_dict


def redact(_logger, _method, event_dict):
    return _scrub(event_dict)


class _Stderr:
    """Whatever sys.stderr is at the time of writing (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_configured = False

# Libraries that write what they were given into their messages: Apprise logs
# the target URLs, and a URL of a push or chat service holds its secret token.
OPAQUE_LOGGERS = ("apprise",)


class WithholdMessages(logging.Filter):
    """Keeps the level and the logger of an opaque library's record, never its text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] in OPAQUE_LOGGERS:
            record.msg, record.args, record.exc_info, record.exc_text = (
                "message withheld",
                (),
                None,
                None,
            )
        return True


def _on_one_line(_logger, _method, event_dict):
    """For the console: the time of day only, and the exception and its innermost frames as
    two fields of the event's line (the console renderer would print a stack on lines of its own)."""
    if isinstance(event_dict.get("timestamp"), str):
        event_dict["timestamp"] = event_dict["timestamp"][11:23]  # 18:54:19.391
    if "exception" in event_dict:
        event_dict["error"] = event_dict.pop("exception")
    stack = event_dict.pop("stack", None)
    if stack:
        event_dict["at"] = " < ".join(reversed(stack[-3:]))
    return event_dict


def console_wanted() -> bool:
    """Whether logs are for a person at a terminal rather than for a collector."""
    chosen = config.log_format()
    if chosen is not None:
        return chosen == "console"
    return sys.stderr.isatty()


_PRE = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter(console: bool) -> logging.Formatter:
    """Every record, structlog's or the standard library's, redacted, then rendered: one JSON
    object, or for the console one coloured line."""
    render = (
        [_on_one_line, structlog.dev.ConsoleRenderer(colors=True)]
        if console
        else [structlog.processors.JSONRenderer()]
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_PRE,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            safe_exception,
            redact,
            *render,
        ],
    )


def configure(service: str, level: str = "INFO") -> None:
    """Lines on stderr for structlog and stdlib loggers alike, all redacted: JSON, or for a
    person at a terminal the console renderer's (``console_wanted``)."""
    global _configured
    if _configured:
        return
    _configured = True
    structlog.configure(
        processors=_PRE + [structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(formatter(console=console_wanted()))
    handler.addFilter(WithholdMessages())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("amqp", "kombu", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel("WARNING")
