"""Webhook and Apprise target checks, and the webhook client that keeps to them.

Names resolve through an injected resolver; the only traffic is to local
HTTP servers on 127.0.0.1 and 127.0.0.2.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from services.notify import targets
from services.notify.targets import (
    TargetRefused,
    check_apprise_url,
    check_webhook_url,
    post_json,
    safe_session,
)


def resolver(mapping: dict[str, list[str]]):
    """A getaddrinfo stand-in: names in ``mapping`` resolve, others do not."""
    calls: list[str] = []

    def resolve(host, port, *args, **kwargs):
        calls.append(host)
        if host not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for addr in mapping[host]:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr = (addr, port or 0, 0, 0) if family == socket.AF_INET6 else (addr, port or 0)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def no_dns(host, port, *args, **kwargs):
    raise AssertionError(f"no name should be resolved here, got {host!r}")


PUBLIC = resolver(
    {"hooks.example.com": ["93.184.216.34"], "v6.example.com": ["2606:2800:220:1::1"]}
)


# ------------------------------------------------------------ webhook URLs


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.1.2.3:8080/hook",
        "http://[::1]/hook",
        "http://10.0.0.5/hook",
        "http://172.16.0.1/hook",
        "http://172.31.255.254/hook",
        "http://192.168.1.1/hook",
        "http://169.254.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
        "http://[fd12:3456::1]/hook",
        "http://0.0.0.0/hook",
        "http://[::]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:10.1.2.3]/hook",
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
        "http://[2002:c0a8:0101::1]/hook",  # 6to4 of 192.168.1.1
        "http://2130706433/hook",  # decimal 127.0.0.1
        "http://0x7f000001/hook",
        "http://0x7f.1/hook",
        "http://0177.0.0.1/hook",  # octal
        "http://127.1/hook",
        "http://0/hook",
        "http://224.0.0.251/hook",  # multicast
        "http://240.0.0.1/hook",  # reserved
        "http://100.64.0.1/hook",  # shared address space
    ],
)
def test_non_public_literal_addresses_are_refused(url):
    with pytest.raises(TargetRefused, match="not allowed"):
        check_webhook_url(url, allow_private=False, resolve=no_dns)


def test_hostname_resolving_to_a_private_address_is_refused():
    resolve = resolver({"intranet.example.com": ["10.1.2.3"]})
    with pytest.raises(
        TargetRefused, match=r"intranet\.example\.com resolves to a private address"
    ):
        check_webhook_url("https://intranet.example.com/hook", allow_private=False, resolve=resolve)
    assert resolve.calls == ["intranet.example.com"]


@pytest.mark.parametrize("private", ["192.168.0.10", "::1", "fe80::2", "169.254.169.254"])
def test_hostname_with_one_public_and_one_private_address_is_refused(private):
    resolve = resolver({"mixed.example.com": ["93.184.216.34", private]})
    with pytest.raises(TargetRefused, match="not allowed"):
        check_webhook_url("https://mixed.example.com/hook", allow_private=False, resolve=resolve)


def test_hostname_that_does_not_resolve_is_refused():
    with pytest.raises(TargetRefused, match="does not resolve"):
        check_webhook_url("https://nowhere.invalid/hook", allow_private=False, resolve=resolver({}))


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://hooks.example.com/hook?a=1", "https://hooks.example.com/hook?a=1"),
        ("HTTPS://Hooks.Example.COM:443/hook#frag", "https://hooks.example.com/hook"),
        ("http://hooks.example.com", "http://hooks.example.com/"),
        ("http://hooks.example.com:8080/x", "http://hooks.example.com:8080/x"),
        ("https://v6.example.com/x", "https://v6.example.com/x"),
        ("http://93.184.216.34/x", "http://93.184.216.34/x"),
        ("http://1572395042/x", "http://93.184.216.34/x"),  # decimal form, normalised
        ("https://[2606:2800:220:1::1]:8443/x", "https://[2606:2800:220:1::1]:8443/x"),
    ],
)
def test_public_targets_are_accepted_and_normalised(url, expected):
    assert check_webhook_url(url, allow_private=False, resolve=PUBLIC) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/hook",
        "http://[::1]:5000/hook",
        "http://10.0.0.1/hook",
        "http://2130706433/",
    ],
)
def test_allow_private_accepts_loopback_and_private(url):
    assert check_webhook_url(url, allow_private=True, resolve=no_dns).startswith("http://")


def test_allow_private_accepts_a_name_resolving_to_loopback():
    resolve = resolver({"localhost": ["127.0.0.1", "::1"]})
    assert check_webhook_url("http://localhost:8000/h", allow_private=True, resolve=resolve) == (
        "http://localhost:8000/h"
    )


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "ftp://hooks.example.com/",
        "javascript:alert(1)",
        "hooks.example.com/hook",
        "http:///hook",
        "http://",
        "",
        "   ",
        "http://hooks.example.com:99999/",
        "http://hooks.example.com:0/",
        "http://hooks.example.com:abc/",
        "http://hooks example.com/",
        "http://hooks.example.com/\r\nX: y",
        "http://256.0.0.1/",
        "http://1.2.3.4.5/",
        "http://[::1/",
        "http://bad%2ehost/",
        "http://hooks.example.com\\@10.0.0.1/",
        "http://" + "a" * 2000 + ".example.com/",
    ],
)
def test_malformed_or_unsupported_urls_are_refused(url):
    with pytest.raises(TargetRefused):
        check_webhook_url(url, allow_private=True, resolve=PUBLIC)


@pytest.mark.parametrize(
    "url",
    [
        "https://alice:s3cretpw@hooks.example.com/hook",
        "https://token-abc@hooks.example.com/hook",
        "https://:s3cretpw@hooks.example.com/hook",
        "https://@hooks.example.com/hook",
    ],
)
def test_credentials_in_a_webhook_url_are_refused_and_not_echoed(url):
    with pytest.raises(TargetRefused, match="user name or password") as info:
        check_webhook_url(url, allow_private=False, resolve=PUBLIC)
    assert "s3cretpw" not in str(info.value)
    assert "token-abc" not in str(info.value)


def test_refusal_messages_do_not_echo_query_secrets():
    resolve = resolver({"intranet.example.com": ["10.0.0.1"]})
    with pytest.raises(TargetRefused) as info:
        check_webhook_url(
            "https://intranet.example.com/hook?token=SUPERSECRET",
            allow_private=False,
            resolve=resolve,
        )
    assert "SUPERSECRET" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_max_length():
    url = "https://hooks.example.com/" + "a" * (targets.MAX_URL_LENGTH - 26)
    assert len(url) == targets.MAX_URL_LENGTH
    assert check_webhook_url(url, allow_private=False, resolve=PUBLIC) == url
    with pytest.raises(TargetRefused, match="longer than"):
        check_webhook_url(url + "a", allow_private=False, resolve=PUBLIC)


@pytest.mark.parametrize(
    "address, refused",
    [
        ("93.184.216.34", False),
        ("8.8.8.8", False),
        ("2606:4700::1111", False),
        ("::ffff:93.184.216.34", False),
        ("127.0.0.1", True),
        ("::ffff:169.254.169.254", True),
        ("ff02::1", True),
        ("192.0.2.1", True),  # documentation range
    ],
)
def test_address_refusal(address, refused):
    assert (targets.address_refusal(ipaddress.ip_address(address)) is not None) is refused


# ------------------------------------------------------------ Apprise URLs


@pytest.mark.parametrize(
    "url",
    [
        "tgram://123456789:abcdefg_hijklmnop/12315544/",
        "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
        "ntfy://my-topic",
    ],
)
def test_apprise_public_api_services_are_accepted_without_resolving(url):
    assert check_apprise_url(url, allow_private=False, resolve=no_dns) == url


@pytest.mark.parametrize(
    "url", ["json://hooks.example.com/path", "ntfys://hooks.example.com/topic"]
)
def test_apprise_service_on_a_public_host_is_accepted(url):
    assert check_apprise_url(url, allow_private=False, resolve=PUBLIC) == url


@pytest.mark.parametrize(
    "url",
    [
        "json://10.0.0.5:8080/path",
        "json://127.0.0.1/path",
        "jsons://[::1]/path",
        "json://2130706433/path",
        "xml://169.254.169.254/latest",
        "form://192.168.1.1/",
        "ntfy://10.0.0.2/topic",
        "gotify://172.16.0.9/token1234567",
        "mailto://user:pw@example.com?smtp=10.1.1.1",
    ],
)
def test_apprise_service_on_a_private_host_is_refused(url):
    with pytest.raises(TargetRefused, match="not allowed") as info:
        check_apprise_url(url, allow_private=False, resolve=no_dns)
    assert "pw" not in str(info.value).replace("not allowed", "")


def test_apprise_host_resolving_to_private_is_refused():
    resolve = resolver({"notify.internal.example": ["10.9.8.7"]})
    with pytest.raises(TargetRefused, match="resolves to a private address"):
        check_apprise_url("json://notify.internal.example/x", allow_private=False, resolve=resolve)


def test_apprise_private_host_allowed_when_private_targets_are():
    assert check_apprise_url("json://127.0.0.1:9000/x", allow_private=True, resolve=no_dns)


@pytest.mark.parametrize(
    "url",
    [
        "notaservice://host/x",
        "https://hooks.example.com/x?token=SECRET",
        "not a url",
        "",
        "syslog://",
    ],
)
def test_apprise_urls_apprise_does_not_understand_or_local_ones_are_refused(url):
    with pytest.raises(TargetRefused) as info:
        check_apprise_url(url, allow_private=False, resolve=PUBLIC)
    assert "SECRET" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "zulip://bot@169.254.169.254/abcdefghijklmnopqrstuvwxyz123456",  # the organisation is the server
        "mailto://user:pw@example.com?smtp=hooks.example.com",  # SMTP: out of the guard's sight
        "https://discord.com/api/webhooks/4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",  # read as discord://
        "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js?template=http%3A%2F%2F169.254.169.254%2F",
        "tgram://123456789:abcdefg_hijklmnop/12315544/?template=%2Fetc%2Fpasswd",  # read from disk, sent on
    ],
)
def test_apprise_targets_not_at_the_urls_host_are_refused(url):
    with pytest.raises(TargetRefused) as info:
        check_apprise_url(url, allow_private=False, resolve=PUBLIC)
    assert "pw" not in str(info.value) and "JHMHI8" not in str(info.value)


def test_apprise_redirects_are_off_even_when_the_url_asks_for_them():
    plugin = targets._apprise_plugin(
        "json://hooks.example.com/x?redirect=yes", allow_private=False, resolve=PUBLIC
    )
    assert plugin.redirects is False


def test_guarded_sends_every_requests_call_through_the_connect_time_check(serve):
    server = serve()
    with targets.guarded(False):
        with pytest.raises(TargetRefused, match="loopback"):
            requests.post(
                _url(server), json={}, timeout=5
            )  # a session of its own, as Apprise's plugins make
    assert server.hits == []
    assert (
        requests.post(_url(server), json={}, timeout=5).status_code == 200
    )  # outside the block: unchanged
    assert len(server.hits) == 1


# ------------------------------------------------------------ webhook client


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.hits.append((self.path, body))  # type: ignore[attr-defined]
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)  # type: ignore[attr-defined]
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(host: str = "127.0.0.1", redirect_to: str = "") -> ThreadingHTTPServer:
        server = ThreadingHTTPServer((host, 0), _Recorder)
        server.hits = []  # type: ignore[attr-defined]
        server.redirect_to = redirect_to  # type: ignore[attr-defined]
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


def _url(server, path="/hook", host=None):
    h, port = server.server_address[:2]
    return f"http://{host or h}:{port}{path}"


@pytest.fixture
def loopback_2_is_public(monkeypatch) -> Iterator[None]:
    """Treat 127.0.0.2 as if it were a public address, so a 'public' server can run here."""
    original = targets.address_refusal
    fake_public = ipaddress.ip_address("127.0.0.2")
    monkeypatch.setattr(
        targets, "address_refusal", lambda ip: None if ip == fake_public else original(ip)
    )
    yield


def test_post_succeeds_to_loopback_when_private_targets_are_allowed(serve):
    server = serve()
    response = post_json(_url(server), {"hello": "world"}, allow_private=True, timeout=5)
    assert response.status_code == 200
    assert server.hits == [("/hook", json.dumps({"hello": "world"}).encode())]


def test_post_to_loopback_is_refused_without_connecting(serve):
    server = serve()
    with pytest.raises(TargetRefused, match="loopback"):
        post_json(_url(server), {"x": 1}, allow_private=False, timeout=5)
    with pytest.raises(TargetRefused, match="loopback"):
        safe_session(False).post(_url(server), json={"x": 1}, timeout=5)
    assert server.hits == []


def test_session_refuses_a_name_that_resolves_privately_at_connect_time(serve):
    server = serve()
    port = server.server_address[1]
    resolve = resolver({"hooks.example.com": ["127.0.0.1"]})
    with pytest.raises(TargetRefused, match="resolves to a loopback address"):
        safe_session(False, resolve=resolve).post(
            f"http://hooks.example.com:{port}/hook", json={}, timeout=5
        )
    assert server.hits == []


def test_dns_rebinding_between_check_and_connect_is_refused(serve, loopback_2_is_public):
    private = serve("127.0.0.1")
    port = private.server_address[1]
    answers = iter([["127.0.0.2"], ["127.0.0.1"]])  # public at check time, private at connect time

    def rebinding(host, port_, *args, **kwargs):
        assert host == "rebind.example.com"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port_)) for a in next(answers)]

    url = f"http://rebind.example.com:{port}/hook"
    assert check_webhook_url(url, allow_private=False, resolve=rebinding) == url
    with pytest.raises(TargetRefused, match="loopback"):
        safe_session(False, resolve=rebinding).post(url, json={}, timeout=5)
    assert private.hits == []


def test_session_connects_to_the_checked_address_of_a_public_name(serve, loopback_2_is_public):
    public = serve("127.0.0.2")
    port = public.server_address[1]
    resolve = resolver({"hooks.example.com": ["127.0.0.2"]})
    response = post_json(
        f"http://hooks.example.com:{port}/hook",
        {"a": 1},
        allow_private=False,
        resolve=resolve,
        timeout=5,
    )
    assert response.status_code == 200
    assert [path for path, _ in public.hits] == ["/hook"]


def test_redirect_to_a_private_address_is_not_followed(serve, loopback_2_is_public):
    private = serve("127.0.0.1")
    public = serve("127.0.0.2", redirect_to=_url(private, "/secret"))
    response = post_json(_url(public, "/redirect"), {"a": 1}, allow_private=False, timeout=5)
    assert response.status_code == 302
    assert response.is_redirect
    assert [path for path, _ in public.hits] == ["/redirect"]
    assert private.hits == []

    # Even a caller asking the session to follow redirects does not get them followed.
    session = safe_session(False)
    response = session.post(_url(public, "/redirect"), json={}, allow_redirects=True, timeout=5)
    assert response.status_code == 302
    assert response.history == []
    assert private.hits == []


def test_redirects_are_not_followed_even_when_private_targets_are_allowed(serve):
    target = serve()
    first = serve(redirect_to=_url(target, "/elsewhere"))
    response = post_json(_url(first, "/redirect"), {}, allow_private=True, timeout=5)
    assert response.status_code == 302
    assert target.hits == []


def test_session_ignores_environment_proxies(serve, monkeypatch):
    server = serve()
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    response = safe_session(True).post(_url(server), json={}, timeout=5)
    assert response.status_code == 200
    with pytest.raises(TargetRefused, match="proxy"):
        safe_session(True).post(
            _url(server), json={}, proxies={"http": "http://127.0.0.1:9"}, timeout=5
        )


def test_session_refuses_other_schemes():
    with pytest.raises(requests.exceptions.InvalidSchema):
        safe_session(True).get("ftp://127.0.0.1/", timeout=5)


def test_post_json_checks_the_url_first():
    with pytest.raises(TargetRefused, match="user name or password"):
        post_json("http://u:p@127.0.0.1/", {}, allow_private=True, resolve=no_dns)
