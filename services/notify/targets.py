"""Checks on webhook and Apprise delivery targets, and an HTTP client that keeps to them.

The contract ("Notify service"): webhook and Apprise targets on loopback,
private or link-local addresses are refused (422) unless
``NOTIFY_ALLOW_PRIVATE_TARGETS=1``.  This module holds the rules; it knows
nothing of Flask or the database.  Callers pass ``allow_private`` explicitly.

- :func:`check_webhook_url` and :func:`check_apprise_url` check a URL when a
  channel is created and return the URL to store (or raise
  :class:`TargetRefused`, whose message is safe to show: it never contains the
  URL, its credentials or its query values).
- :func:`safe_session` / :func:`post_json` deliver webhooks.  The addresses are
  checked again *at connect time*: the connection resolves the host itself,
  refuses if any address is refused, and connects to a checked address (TLS
  still verifies the certificate against the host name).  So a DNS answer that
  changes between the check and the delivery (rebinding) cannot reach a
  private address.  Redirects are never followed: a 3xx comes back to the
  caller as the response, and the caller should count it as a failed delivery
  (``response.is_redirect``).  Environment proxies and ``.netrc`` are ignored
  (``trust_env = False``), since a proxy would make the checked peer the proxy.

Not covered here: Apprise sends with its own HTTP/SMTP/socket code, so for
Apprise targets only the creation-time check applies (no connect-time check,
and Apprise's plugins follow redirects).
"""
from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as u3_connection

__all__ = [
    "MAX_URL_LENGTH",
    "TargetRefused",
    "address_refusal",
    "check_apprise_url",
    "check_webhook_url",
    "post_json",
    "safe_session",
]

MAX_URL_LENGTH = 2000
DEFAULT_PORTS = {"http": 80, "https": 443}

Resolver = Callable[..., Any]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 well-known prefix (RFC 6052): the last 32 bits are an IPv4 address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Apprise schemas that notify the local machine rather than a remote service.
_LOCAL_APPRISE_SCHEMAS = frozenset(
    {"syslog", "dbus", "kde", "qt", "glib", "gnome", "macosx", "windows"}
)
# Apprise plugins whose "host" is only a sender's mail domain: they post to
# the provider's public API, never to that host.
_MAIL_DOMAIN_PLUGINS = frozenset(
    {"NotifyMailgun", "NotifySparkPost", "NotifySMTP2Go", "NotifySendPulse"}
)
_HOSTNAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\.?$")


class TargetRefused(ValueError):
    """A delivery target that may not be used; ``str(exc)`` is safe to show a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------- addresses


def address_refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be a delivery target, or None if it may.

    IPv4 addresses embedded in IPv6 ones (IPv4-mapped ``::ffff:a.b.c.d``,
    6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) are judged as the IPv4 address.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped (link-local) address"
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded)
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None


def _parse_ipv4_number(part: str) -> int | None:
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
        if digits == "":
            return 0
    elif len(part) > 1 and part[0] == "0":
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    try:
        return int(digits, base) if digits else None
    except ValueError:
        return None


def _literal_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse the IPv4 forms browsers and libc accept (``2130706433``, ``0x7f.1``, ``0177.0.0.1``).

    Returns None when ``host`` is a name.  A host whose last label is numeric
    but which is not a valid address is refused, as the WHATWG URL standard does.
    """
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]
    last = parts[-1]
    if not (last.isdigit() or re.fullmatch(r"0[xX][0-9a-fA-F]*", last)):
        return None
    numbers = [_parse_ipv4_number(p) for p in parts] if len(parts) <= 4 else [None]
    if any(n is None for n in numbers):
        raise TargetRefused("The host is not a valid IPv4 address.")
    *head, tail = numbers
    if any(n > 255 for n in head) or tail >= 256 ** (5 - len(numbers)):
        raise TargetRefused("The host is not a valid IPv4 address.")
    value = tail
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _literal_ip(host: str) -> IPAddress | None:
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetRefused("The host is not a valid IPv6 address.") from None
    return _literal_ipv4(host)


def _idna_host(host: str) -> str:
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise TargetRefused("The host name is not valid.") from None
    if not _HOSTNAME.match(ascii_host) or ".." in ascii_host:
        raise TargetRefused("The host name is not valid.")
    return ascii_host


def _resolve(host: str, port: int | None, resolve: Resolver) -> list[IPAddress]:
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    addresses = []
    for info in infos:
        try:
            addresses.append(ipaddress.ip_address(info[4][0]))
        except (ValueError, IndexError, TypeError):
            continue
    if not addresses:
        raise TargetRefused(f"The host {host} does not resolve to any address.")
    return addresses


def _refuse_if_any(host: str, addresses: list[IPAddress]) -> None:
    for ip in addresses:
        reason = address_refusal(ip)
        if reason:
            if str(ip) == host:
                message = f"The host {host} is {reason}"
            else:
                message = f"The host {host} resolves to {reason} ({ip})"
            raise TargetRefused(f"{message}; such targets are not allowed.")


def _check_host(
    host: str, port: int | None, *, allow_private: bool, resolve: Resolver
) -> tuple[str, IPAddress | None]:
    """Check one host; returns (host as it should be written, literal IP or None)."""
    if not host:
        raise TargetRefused("The URL has no host.")
    literal = _literal_ip(host)
    if literal is not None:
        if isinstance(literal, ipaddress.IPv6Address) and literal.scope_id:
            raise TargetRefused("Scoped IPv6 addresses are not allowed.")
        if not allow_private:
            _refuse_if_any(str(literal), [literal])
        return str(literal), literal
    name = _idna_host(host)
    addresses = _resolve(name, port, resolve)
    if not allow_private:
        _refuse_if_any(name, addresses)
    return name, None


# ---------------------------------------------------------------- URL checks


def _common_checks(url: Any, what: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise TargetRefused(f"The {what} URL is empty.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"The {what} URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise TargetRefused(f"The {what} URL contains spaces or control characters.")
    return url


def check_webhook_url(
    url: str, *, allow_private: bool, resolve: Resolver = socket.getaddrinfo
) -> str:
    """Return the normalised webhook URL, or raise :class:`TargetRefused`.

    http or https only; a host is required; no ``user:pass@``; the host (and
    every address it resolves to, through ``resolve``, which has the
    signature of :func:`socket.getaddrinfo`) must be public unless
    ``allow_private``.  Numeric hosts in any form (``2130706433``,
    ``0x7f.1``, ``[::1]``) are written back as plain addresses; the default
    port is dropped; the fragment is dropped.
    """
    url = _common_checks(url, "webhook")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise TargetRefused("The webhook URL is not valid.") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise TargetRefused("A webhook URL must start with http:// or https://.")
    if "@" in parts.netloc:
        raise TargetRefused("A webhook URL may not contain a user name or password.")
    if "\\" in url:
        raise TargetRefused("The webhook URL is not valid.")
    try:
        port = parts.port
    except ValueError:
        raise TargetRefused("The webhook URL's port is not valid.") from None
    if port == 0:
        raise TargetRefused("The webhook URL's port is not valid.")
    host = parts.hostname or ""
    effective_port = port or DEFAULT_PORTS[scheme]
    written, literal = _check_host(
        host, effective_port, allow_private=allow_private, resolve=resolve
    )
    if isinstance(literal, ipaddress.IPv6Address):
        written = f"[{written}]"
    netloc = written if effective_port == DEFAULT_PORTS[scheme] else f"{written}:{effective_port}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def _apprise_hosts(plugin: Any) -> list[tuple[str, int | None]]:
    """The hosts an Apprise plugin instance will connect to that the user chose."""
    cls_name = type(plugin).__name__
    port = getattr(plugin, "port", None) or None
    smtp_host = getattr(plugin, "smtp_host", None)
    if smtp_host:  # mailto://, deltachat: the SMTP server is what is reached
        return [(str(smtp_host), port)]
    if cls_name in _MAIL_DOMAIN_PLUGINS:
        return []
    if "host" not in getattr(plugin, "template_tokens", {}):
        return []  # a hosted service reached through its public API (tgram, discord, ...)
    if str(getattr(plugin, "mode", "")).lower() == "cloud":
        return []  # e.g. ntfy://topic goes to ntfy.sh
    host = getattr(plugin, "host", None)
    return [(str(host), port)] if host else []


def check_apprise_url(
    url: str, *, allow_private: bool, resolve: Resolver = socket.getaddrinfo
) -> str:
    """Return the Apprise URL unchanged if Apprise understands it and its host is allowed.

    The URL must load in Apprise (``Apprise.instantiate``).  If the service
    has a host the user chose (``json://host/``, ``ntfy://host/topic``, the
    SMTP server of ``mailto://``, ...), that host follows the same address
    rules as webhooks.  Services reached through their own public API
    (``tgram://``, ``discord://``, ``ntfy://topic``) have no such host and are
    accepted.  Services that notify the local machine (``syslog://``,
    desktop notifications) are refused.
    """
    import apprise  # imported here: loading Apprise's plugins is slow

    url = _common_checks(url, "Apprise")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _LOCAL_APPRISE_SCHEMAS:
        raise TargetRefused("Apprise targets on the local machine are not allowed.")
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        raise TargetRefused("Apprise does not understand this URL.")
    for host, port in _apprise_hosts(plugin):
        _check_host(host.strip("[]"), port, allow_private=allow_private, resolve=resolve)
    return url


# ---------------------------------------------------------------- HTTP client


class _Policy:
    def __init__(self, allow_private: bool, resolve: Resolver) -> None:
        self.allow_private = allow_private
        self.resolve = resolve

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        host = host.strip("[]")
        literal = _literal_ip(host)
        addresses = [literal] if literal is not None else _resolve(_idna_host(host), port, self.resolve)
        if not self.allow_private:
            _refuse_if_any(host, addresses)
        return addresses

    def check_peer(self, host: str, sock: socket.socket) -> None:
        if self.allow_private:
            return
        peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
        _refuse_if_any(host, [peer])


class _GuardedConnectionMixin:
    """Resolve, check every address, connect only to a checked one, check the peer."""

    _policy: _Policy

    def _new_conn(self) -> socket.socket:  # type: ignore[override]
        host, port = self._dns_host, self.port  # type: ignore[attr-defined]
        addresses = self._policy.addresses(host, port)  # raises TargetRefused
        last_error: Exception | None = None
        for ip in addresses:
            try:
                sock = u3_connection.create_connection(
                    (str(ip), port),
                    self.timeout,  # type: ignore[attr-defined]
                    source_address=self.source_address,  # type: ignore[attr-defined]
                    socket_options=self.socket_options,  # type: ignore[attr-defined]
                )
            except socket.timeout as e:
                last_error = ConnectTimeoutError(
                    self, f"Connection to {host} timed out. (connect timeout={self.timeout})"  # type: ignore[attr-defined]
                )
                last_error.__cause__ = e
                continue
            except OSError as e:
                last_error = NewConnectionError(self, f"Failed to establish a new connection: {e}")  # type: ignore[arg-type]
                last_error.__cause__ = e
                continue
            try:
                self._policy.check_peer(host, sock)
            except BaseException:
                sock.close()
                raise
            return sock
        assert last_error is not None
        raise last_error


def _guarded_adapter(policy: _Policy) -> HTTPAdapter:
    http_conn = type("GuardedHTTPConnection", (_GuardedConnectionMixin, HTTPConnection), {"_policy": policy})
    https_conn = type("GuardedHTTPSConnection", (_GuardedConnectionMixin, HTTPSConnection), {"_policy": policy})
    http_pool = type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

        def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
            raise TargetRefused("Webhooks are not delivered through a proxy.")

    return GuardedAdapter(max_retries=0)


class _NoRedirectSession(requests.Session):
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs["allow_redirects"] = False
        return super().send(request, **kwargs)

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


def safe_session(
    allow_private: bool, *, resolve: Resolver = socket.getaddrinfo
) -> requests.Session:
    """A requests session for webhooks: http(s) only, addresses checked at connect time, no redirects.

    A refused address raises :class:`TargetRefused` from ``session.post(...)``
    before any connection is made to it.  A 3xx response is returned as is,
    never followed; callers should treat it as a failed delivery.
    """
    session = _NoRedirectSession()
    session.trust_env = False
    session.max_redirects = 0
    session.adapters.clear()
    adapter = _guarded_adapter(_Policy(allow_private, resolve))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def post_json(
    url: str,
    body: Any,
    *,
    allow_private: bool,
    headers: dict[str, str] | None = None,
    timeout: float | tuple[float, float] = 10.0,
    resolve: Resolver = socket.getaddrinfo,
) -> requests.Response:
    """POST ``body`` as JSON to a webhook, checking the URL now and the address at connect time.

    Raises :class:`TargetRefused` for a refused target and
    ``requests.RequestException`` for transport errors.  Returns the response
    whatever its status; a redirect (``response.is_redirect``) is not followed
    and should count as a failure.
    """
    checked = check_webhook_url(url, allow_private=allow_private, resolve=resolve)
    with safe_session(allow_private, resolve=resolve) as session:
        return session.post(checked, json=body, headers=headers, timeout=timeout)
