"""Configuration, from the environment only.

Every setting has an embedded default that needs no server: SQLite files and a
Kombu ``filesystem://`` broker under ``./var/`` (``TANDEM_VAR_DIR``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORTS = {"journal": 8001, "milestones": 8002, "notify": 8003}


def var_dir() -> Path:
    return Path(os.environ.get("TANDEM_VAR_DIR", "var")).resolve()


def keep_var_private() -> Path:
    """``./var`` holds the SQLite files (notes, password hashes), the signing key and the
    embedded broker's messages: its owner's alone. From here on this process, and every
    process it starts, makes files 0600 and folders 0700 (umask 077); what ``./var``
    already holds loses its group's and others' rights."""
    os.umask(0o077)
    var = var_dir()
    if var.is_dir():
        for root, dirs, files in os.walk(var):
            for name in dirs + files:
                path = os.path.join(root, name)
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode):
                    os.chmod(path, stat.S_IMODE(mode) & 0o700)
        os.chmod(var, 0o700)
    return var


def _flag(name: str) -> bool:
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if value not in {"1", "true", "yes", "on", "", "0", "false", "no", "off"}:
        raise SystemExit(
            f"{name} must be 1 or 0 (true or false, yes or no, on or off), not {raw!r}"
        )
    return value in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {raw!r}") from None


def _seconds(name: str, default: float) -> float:
    """A positive number of seconds (fractions allowed), or a stop naming the variable."""
    raw = os.environ.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise SystemExit(f"{name} must be a number of seconds above 0, not {raw!r}")
    return value


def _positive(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SystemExit(f"{name} must be a whole number of at least 1, not {raw!r}")
    return value


def trusted_proxy_hops() -> int:
    """How many proxies in front of the journal append to ``X-Forwarded-For`` (``TRUSTED_PROXY_HOPS``,
    0: none, the peer's address is the client's). Only that many entries, from the right, are believed."""
    raw = os.environ.get("TRUSTED_PROXY_HOPS") or "0"
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise SystemExit(f"TRUSTED_PROXY_HOPS must be a whole number of at least 0, not {raw!r}")
    return value


def token_ttl_seconds() -> int:
    """How long an access token lives (``TOKEN_TTL_SECONDS``, 900)."""
    return _int("TOKEN_TTL_SECONDS", 900)


def streams_per_process() -> int:
    """How many live inbox streams one notify web process holds at most (each on a thread of its own)."""
    return _positive("NOTIFY_STREAMS_PER_PROCESS", 32)


def streams_per_partner() -> int:
    """How many of them one partner may hold in one web process."""
    return _positive("NOTIFY_STREAMS_PER_PARTNER", 4)


def push_configured() -> bool:
    """Whether native push is on (pushes are planned): ``FCM_PROJECT_ID`` set. Only the
    delivery worker, which sends them, needs ``FCM_CREDENTIALS_FILE`` as well."""
    return bool(os.environ.get("FCM_PROJECT_ID"))


def _ranged(name: str, default: int, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``, or a stop naming the variable."""
    raw = os.environ.get(name) or str(default)
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise SystemExit(f"{name} must be a whole number from {low} to {high}, not {raw!r}")
    return value


def port(service: str) -> int:
    """The port a service's web process listens on (``<SERVICE>_PORT``; 8001-8003)."""
    return _ranged(f"{service.upper()}_PORT", DEFAULT_PORTS[service], 1, 65535)


def bind_host() -> str:
    """The address the web processes of ``tandem run`` listen on (``TANDEM_BIND_HOST``)."""
    return os.environ.get("TANDEM_BIND_HOST") or "127.0.0.1"


def replicas(service: str, worker: str) -> int:
    """How many processes of one worker ``tandem run`` starts (``<SERVICE>_<WORKER>_REPLICAS``)."""
    return _positive(f"{service.upper()}_{worker.upper()}_REPLICAS", 1)


def web_nice(default: int = 0) -> int:
    """The web workers' niceness (``WEB_NICE``, 0-19; ``tandem run`` sets 5)."""
    return _ranged("WEB_NICE", default, 0, 19)


def web_concurrency() -> int:
    """Gunicorn worker processes a web service runs (``WEB_CONCURRENCY``, 2)."""
    return _positive("WEB_CONCURRENCY", 2)


def web_threads() -> int:
    """Threads a web worker runs (``WEB_THREADS``, 8)."""
    return _positive("WEB_THREADS", 8)


def service_name() -> str | None:
    """The service a process serves, set by ``tandem`` for its gunicorn (``TANDEM_SERVICE``)."""
    raw = os.environ.get("TANDEM_SERVICE") or None
    if raw is not None and raw not in DEFAULT_PORTS:
        raise SystemExit(f"TANDEM_SERVICE must be one of {', '.join(DEFAULT_PORTS)}, not {raw!r}")
    return raw


LOG_FORMATS = ("console", "json")


def log_format() -> str | None:
    """``console`` (a line a person reads) or ``json`` (``TANDEM_LOG_FORMAT``); None: by the terminal."""
    raw = (os.environ.get("TANDEM_LOG_FORMAT") or "").strip().lower() or None
    if raw is not None and raw not in LOG_FORMATS:
        raise SystemExit(f"TANDEM_LOG_FORMAT must be console or json, not {raw!r}")
    return raw


def token_private_key() -> str | None:
    """The PEM of the key access tokens are signed with (``TOKEN_PRIVATE_KEY``); None: ``./var``'s."""
    return os.environ.get("TOKEN_PRIVATE_KEY") or None


def token_public_key() -> str | None:
    """The PEM of the key access tokens are verified with (``TOKEN_PUBLIC_KEY``); None: ``./var``'s."""
    return os.environ.get("TOKEN_PUBLIC_KEY") or None


def settle_seconds() -> float:
    """How long a partner's events must be quiet before a statistical evaluation
    (``MILESTONES_SETTLE_SECONDS``, 3)."""
    return _seconds("MILESTONES_SETTLE_SECONDS", 3.0)


def prometheus_dir() -> str | None:
    """Where the processes of one service share their metrics (``PROMETHEUS_MULTIPROC_DIR``)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


SMTP_SCHEMES = ("smtp", "smtps")


def smtp_url() -> str | None:
    """The SMTP server notify sends email by (``SMTP_URL``, ``smtp://`` or ``smtps://``);
    None: no email is planned or sent."""
    raw = os.environ.get("SMTP_URL") or None
    if raw is not None and raw.partition("://")[0].lower() not in SMTP_SCHEMES:
        raise SystemExit(
            f"SMTP_URL must start with smtp:// or smtps://, not {raw.partition(':')[0]!r}"
        )
    return raw


def broker_url(service: str | None = None) -> str:
    """The broker a service's processes use: ``<SERVICE>_BROKER_URL`` (that
    service's own broker user, which may publish only its own events), else
    ``BROKER_URL`` (one user for everything, as `make run` has it)."""
    own = os.environ.get(f"{service.upper()}_BROKER_URL") if service else None
    return own or os.environ.get("BROKER_URL") or "filesystem://"


def broker_is_embedded(url: str | None = None) -> bool:
    return (url or broker_url()).startswith("filesystem")


def database_url(service: str) -> str:
    url = os.environ.get(f"{service.upper()}_DATABASE_URL")
    if url:
        # Accept the plain libpq form operators paste; we drive PostgreSQL with psycopg 3.
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+psycopg://" + url[len(plain) :]
        return url
    path = var_dir() / f"{service}.sqlite3"
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class Settings:
    """What one service process needs to know, read once at start."""

    service: str
    database_url: str
    broker_url: str
    port: int
    var_dir: Path
    token_ttl_seconds: int = 900
    smtp_url: str | None = None
    allow_private_targets: bool = False
    argon2_profile: str = "RFC_9106_LOW_MEMORY"
    metrics_token: str | None = field(
        default=None, repr=False
    )  # a secret: never in a repr or a log
    streams_per_process: int = 32
    streams_per_partner: int = 4
    # Native push through Firebase Cloud Messaging (notify): on when the project is given
    # (push_configured); the service account's credentials file is the delivery worker's alone.
    fcm_project_id: str | None = None
    fcm_credentials_file: str | None = None
    fcm_base_url: str = "https://fcm.googleapis.com"
    fcm_token_url: str | None = None  # else the credentials file's own token_uri
    # The notify delivery worker's pace and mail (delivery.py, channels/, resets.py).
    delivery_lease_seconds: float = 60.0
    retry_base_seconds: float = 5.0
    send_timeout_seconds: float = 10.0
    mail_from: str = "Tandem <celebrations@tandem.invalid>"
    password_reset_url: str = "tandem://password-reset"
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, service: str) -> Settings:
        return cls(
            service=service,
            database_url=database_url(service),
            broker_url=broker_url(service),
            port=_int(f"{service.upper()}_PORT", DEFAULT_PORTS.get(service, 8000)),
            var_dir=var_dir(),
            token_ttl_seconds=token_ttl_seconds(),
            smtp_url=smtp_url(),
            allow_private_targets=_flag("NOTIFY_ALLOW_PRIVATE_TARGETS"),
            argon2_profile=os.environ.get("ARGON2_PROFILE", "RFC_9106_LOW_MEMORY"),
            metrics_token=os.environ.get("METRICS_TOKEN") or None,
            streams_per_process=streams_per_process(),
            streams_per_partner=streams_per_partner(),
            fcm_project_id=os.environ.get("FCM_PROJECT_ID") or None,
            fcm_credentials_file=os.environ.get("FCM_CREDENTIALS_FILE") or None,
            fcm_base_url=(os.environ.get("FCM_BASE_URL") or "https://fcm.googleapis.com").rstrip(
                "/"
            ),
            fcm_token_url=os.environ.get("FCM_TOKEN_URL") or None,
            delivery_lease_seconds=_seconds("NOTIFY_DELIVERY_LEASE_SECONDS", 60.0),
            retry_base_seconds=_seconds("NOTIFY_RETRY_BASE_SECONDS", 5.0),
            send_timeout_seconds=_seconds("NOTIFY_SEND_TIMEOUT_SECONDS", 10.0),
            mail_from=os.environ.get("NOTIFY_MAIL_FROM") or "Tandem <celebrations@tandem.invalid>",
            password_reset_url=os.environ.get("PASSWORD_RESET_URL") or "tandem://password-reset",
        )

    @property
    def push_on(self) -> bool:
        """Whether this process can push: the project and the credentials file both given."""
        return bool(self.fcm_project_id and self.fcm_credentials_file)
