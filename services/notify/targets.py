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
- :func:`send_apprise` sends a push the same way: only Apprise schemes whose
  target can be checked are allowed (:data:`APPRISE_SCHEMES`), Apprise's
  redirects are off, and every request its plugin makes through ``requests``
  goes through the webhook's session (:func:`guarded`), so the connect-time
  check applies to it too.
"""

from __future__ import annotations

import contextvars
import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as u3_connection

__all__ = [
    "APPRISE_SCHEMES",
    "MAX_URL_LENGTH",
    "TargetRefused",
    "address_refusal",
    "check_apprise_url",
    "check_webhook_url",
    "guarded",
    "post_json",
    "safe_session",
    "send_apprise",
]

MAX_URL_LENGTH = 2000
DEFAULT_PORTS = {"http": 80, "https": 443}

Resolver = Callable[..., Any]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 well-known prefix (RFC 6052): the last 32 bits are an IPv4 address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# The Apprise schemes Tandem sends through, and where each one's target is:
# "host", at the host the URL names (checked as a webhook's host is); "api", at
# its provider's fixed public address, whatever the URL says.  Every one of
# them sends through ``requests``, so every connection it makes is checked at
# connect time (see guarded).  Any other scheme is refused: its target may hide
# elsewhere in the URL (zulip://bot@ORGANIZATION/..., msteams://TEAM@...,
# mailto://...?smtp=HOST) or be reached by other means than ``requests`` (SMTP,
# raw sockets, the local desktop), out of the guard's sight.
APPRISE_SCHEMES = {
    **dict.fromkeys(
        ("json", "jsons", "xml", "xmls", "form", "forms", "ntfy", "ntfys", "gotify", "gotifys"),
        "host",
    ),
    **dict.fromkeys(("tgram", "discord", "slack", "pover", "pbul"), "api"),
}
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


def _getaddrinfo(*args: Any, **kwargs: Any) -> Any:
    """socket.getaddrinfo, looked up when called (so a test can stand in for the resolver)."""
    return socket.getaddrinfo(*args, **kwargs)


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


def check_webhook_url(url: str, *, allow_private: bool, resolve: Resolver = _getaddrinfo) -> str:
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


def _protocols(plugin: Any) -> set[str]:
    out: set[str] = set()
    for attr in ("protocol", "secure_protocol"):
        value = getattr(plugin, attr, None) or ()
        out.update([value] if isinstance(value, str) else value)
    return {p.lower() for p in out}


def _apprise_plugin(url: str, *, allow_private: bool, resolve: Resolver) -> Any:
    """The Apprise plugin for ``url`` once its scheme is allowed and its host checked."""
    import apprise  # imported here: loading Apprise's plugins is slow

    url = _common_checks(url, "Apprise")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in APPRISE_SCHEMES:
        raise TargetRefused(
            "This kind of Apprise target is not allowed; Tandem sends to "
            + ", ".join(f"{s}://" for s in APPRISE_SCHEMES)
            + " only."
        )
    plugin = apprise.Apprise.instantiate(
        url, asset=apprise.AppriseAsset(http_redirects=False), suppress_exceptions=True
    )
    if plugin is None:
        raise TargetRefused("Apprise does not understand this URL.")
    if scheme not in _protocols(
        plugin
    ):  # read as another service's URL: its target is not the one checked
        raise TargetRefused("Apprise does not understand this URL.")
    if any(isinstance(v, apprise.AppriseAttachment) and len(v) for v in vars(plugin).values()):
        # e.g. discord://...?template=http://169.254.169.254/ or ?template=/etc/passwd: read when sending
        raise TargetRefused(
            "An Apprise URL may not name a file or address to read (such as template=)."
        )
    plugin.redirects = False  # even if the URL says redirect=yes
    if APPRISE_SCHEMES[scheme] == "host" and str(getattr(plugin, "mode", "")).lower() != "cloud":
        # (ntfy://topic is ntfy's cloud, ntfy.sh: no host of the user's)
        host = str(getattr(plugin, "host", None) or "")
        _check_host(
            host.strip("[]"),
            getattr(plugin, "port", None) or None,
            allow_private=allow_private,
            resolve=resolve,
        )
    return plugin


def check_apprise_url(url: str, *, allow_private: bool, resolve: Resolver = _getaddrinfo) -> str:
    """Return the Apprise URL unchanged if its scheme is allowed, Apprise understands it and its host is allowed.

    The scheme must be one of :data:`APPRISE_SCHEMES` and the URL must load
    in Apprise as that service.  A service at a host the user chose
    (``json://host/``, ``ntfy://host/topic``, ...) follows the same address
    rules as webhooks; services reached through their own public API
    (``tgram://``, ``discord://``, ``ntfy://topic``) have no such host.
    """
    _apprise_plugin(url, allow_private=allow_private, resolve=resolve)
    return url.strip()


def send_apprise(
    url: str, title: str, body: str, *, allow_private: bool, resolve: Resolver = _getaddrinfo
) -> bool:
    """Send one push through Apprise; True if the service took it.

    The URL is checked again first (raises :class:`TargetRefused`); then the
    plugin sends with redirects off and every request it makes goes through
    the webhook's session (:func:`guarded`): a name that resolves elsewhere
    now (rebinding), a redirect, an environment proxy reach nothing private.
    A refused connection raises :class:`TargetRefused`.
    """
    plugin = _apprise_plugin(url, allow_private=allow_private, resolve=resolve)
    with guarded(allow_private, resolve=resolve):
        return bool(plugin.notify(title=title, body=body))


# ---------------------------------------------------------------- HTTP client


class _Policy:
    def __init__(self, allow_private: bool, resolve: Resolver) -> None:
        self.allow_private = allow_private
        self.resolve = resolve

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        host = host.strip("[]")
        literal = _literal_ip(host)
        addresses = (
            [literal] if literal is not None else _resolve(_idna_host(host), port, self.resolve)
        )
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
            except TimeoutError as e:
                last_error = ConnectTimeoutError(
                    self,
                    f"Connection to {host} timed out. (connect timeout={self.timeout})",  # type: ignore[attr-defined]
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
    http_conn = type(
        "GuardedHTTPConnection", (_GuardedConnectionMixin, HTTPConnection), {"_policy": policy}
    )
    https_conn = type(
        "GuardedHTTPSConnection", (_GuardedConnectionMixin, HTTPSConnection), {"_policy": policy}
    )
    http_pool = type(
        "GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}
    )
    https_pool = type(
        "GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}
    )

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


def safe_session(allow_private: bool, *, resolve: Resolver = _getaddrinfo) -> requests.Session:
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


# The policy in force for requests made in this context (see guarded), or None.
_GUARD: contextvars.ContextVar[_Policy | None] = contextvars.ContextVar(
    "tandem_target_guard", default=None
)
_installed = threading.Lock()
_plain_send: Any = None


def _send_through_guard(
    self: requests.Session, request: requests.PreparedRequest, **kwargs: Any
) -> Any:
    policy = _GUARD.get()
    if policy is None or isinstance(self, _NoRedirectSession):
        return _plain_send(self, request, **kwargs)
    kwargs["proxies"] = {}  # an environment proxy would make the checked peer the proxy
    session = safe_session(policy.allow_private, resolve=policy.resolve)
    try:
        return session.send(request, **kwargs)
    finally:
        if not kwargs.get("stream"):
            session.close()


@contextmanager
def guarded(allow_private: bool, *, resolve: Resolver = _getaddrinfo) -> Iterator[None]:
    """Within the block, every request this thread makes through ``requests``,
    on any session (Apprise's plugins make their own), is sent through
    :func:`safe_session`: addresses checked at connect time, no redirects, no
    proxies.  Outside it (and in other threads) ``requests`` is unchanged.
    """
    global _plain_send
    with _installed:
        if _plain_send is None:
            _plain_send = requests.Session.send
            requests.Session.send = _send_through_guard  # type: ignore[method-assign]
    token = _GUARD.set(_Policy(allow_private, resolve))
    try:
        yield
    finally:
        _GUARD.reset(token)


def post_json(
    url: str,
    body: Any,
    *,
    allow_private: bool,
    headers: dict[str, str] | None = None,
    timeout: float | tuple[float, float] = 10.0,
    resolve: Resolver = _getaddrinfo,
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
