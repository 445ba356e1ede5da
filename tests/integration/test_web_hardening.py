"""What every service's answers carry, who may read /metrics, and the live
inbox's caps, on all three apps in process (both backends)."""

from __future__ import annotations

import pytest

from tests.conftest import sign_up
from tests.support import milestones_client, notify_client, service_clients

PROBLEM = "application/problem+json"
FAR = {"REMOTE_ADDR": "203.0.113.9"}  # a client on another machine (TEST-NET-3)


def _answers(name: str, client, headers: dict) -> dict[str, object]:
    """One answer of each sort the service gives: a success, problems of several causes, a 404, the docs."""
    read = {
        "journal": "/v1/entries",
        "milestones": "/v1/milestones",
        "notify": "/v1/notifications",
    }[name]
    write = {
        "journal": "/v1/entries",
        "milestones": "/v1/milestones/00000000-0000-4000-8000-000000000000/share",
        "notify": "/v1/preferences",
    }[name]
    return {
        "read": client.get(read, headers=headers),
        "no token": client.get(read),
        "bad token": client.get(read, headers={"Authorization": "Bearer nope"}),
        "invalid query": client.get(read + "?limit=0", headers=headers),
        "not JSON": client.post(
            write, headers=headers, data="a=b", content_type="application/x-www-form-urlencoded"
        ),
        "no such route": client.get("/v1/nothing-here", headers=headers),
        "wrong method": client.delete("/healthz"),
        "too big": client.post(
            write,
            headers=headers,
            data=b"{" + b" " * (70 * 1024) + b"}",
            content_type="application/json",
        ),
        "health": client.get("/healthz"),
        "openapi": client.get("/openapi.json"),
        "metrics": client.get("/metrics"),
    }


def test_every_answer_of_every_service_is_never_cached_nor_sniffed(backend, journal):
    ana = sign_up(journal)
    seen = set()
    for name, client in service_clients(journal).items():
        for what, r in _answers(name, client, ana["headers"]).items():
            seen.add(r.status_code)
            assert r.headers.get("Cache-Control") == "no-store", (name, what, r.status_code)
            assert r.headers.get("X-Content-Type-Options") == "nosniff", (name, what, r.status_code)
    assert {200, 401, 404, 405, 413, 415, 422} <= seen, seen  # problems and 404s included


def test_the_live_stream_is_never_cached_either(backend, journal):
    ana = sign_up(journal)
    r = notify_client().get("/v1/notifications/stream", headers=ana["headers"], buffered=False)
    try:
        assert r.status_code == 200
        assert (
            r.headers["Cache-Control"] == "no-store"
            and r.headers["X-Content-Type-Options"] == "nosniff"
        )
    finally:
        r.close()


def test_metrics_are_served_to_this_host_only_when_no_token_is_set(backend, journal, monkeypatch):
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    for name, client in service_clients(journal).items():
        here = client.get("/metrics")
        assert here.status_code == 200 and b"tandem_http_request_seconds" in here.data, name
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200, name
        far = client.get("/metrics", environ_base=FAR)
        assert far.status_code == 403 and far.mimetype == PROBLEM, name
        assert b"tandem_" not in far.data
        # A proxy on this host relaying someone else: not this host's client.
        relayed = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert relayed.status_code == 403, name
        assert (
            client.get("/metrics", headers={"Forwarded": "for=203.0.113.9"}).status_code == 403
        ), name
        assert client.get("/healthz", environ_base=FAR).status_code == 200, (
            "only /metrics is kept to the host"
        )


def test_with_a_metrics_token_set_metrics_need_it_from_anywhere(
    backend, journal, monkeypatch, capsys
):
    secret = "scrape-" + "x9Qf" * 8
    monkeypatch.setenv("METRICS_TOKEN", secret)
    from services.journal.app import create_app

    journal_app = create_app()
    journal_app.testing = True
    apps = {
        "journal": journal_app.test_client(),
        "milestones": milestones_client(),
        "notify": notify_client(),
    }
    for name, client in apps.items():
        ok = client.get("/metrics", environ_base=FAR, headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200 and b"tandem_http_request_seconds" in ok.data, name
        for headers in (
            {},
            {"Authorization": "Bearer " + secret[:-1] + "y"},
            {"Authorization": secret},
            {"Authorization": "Bearer " + secret + "x"},
        ):
            for env in ({}, FAR):  # this host's clients too: the token is the only way in
                r = client.get("/metrics", headers=headers, environ_base=env)
                assert r.status_code == 401 and r.mimetype == PROBLEM, (name, headers.keys(), env)
                assert r.headers["WWW-Authenticate"] == "Bearer"
                assert b"tandem_" not in r.data
    out = capsys.readouterr()
    assert secret not in out.out + out.err, "the metrics token is never logged"


def test_one_partner_cannot_hold_more_streams_than_the_cap_nor_all_partners_more_than_the_process(
    backend, journal, monkeypatch
):
    monkeypatch.setenv("NOTIFY_STREAMS_PER_PROCESS", "2")
    monkeypatch.setenv("NOTIFY_STREAMS_PER_PARTNER", "1")
    notify = notify_client()
    ana, ben, cleo = sign_up(journal, "Ana"), sign_up(journal, "Ben"), sign_up(journal, "Cleo")
    url = "/v1/notifications/stream"

    def refused(r, says: str) -> None:
        assert r.status_code == 429 and r.mimetype == PROBLEM, r.status_code
        assert r.headers["Retry-After"].isdigit() and says in r.get_json()["detail"]

    anas = notify.get(url, headers=ana["headers"], buffered=False)
    assert anas.status_code == 200
    refused(notify.get(url, headers=ana["headers"]), "This account")
    bens = notify.get(url, headers=ben["headers"], buffered=False)
    assert bens.status_code == 200
    refused(notify.get(url, headers=cleo["headers"]), "Too many live streams")
    # Ordinary requests are not streams: answered all the while.
    assert notify.get("/v1/notifications", headers=cleo["headers"]).status_code == 200
    anas.close()  # her stream ends: its slot is free again
    cleos = notify.get(url, headers=cleo["headers"], buffered=False)
    try:
        assert cleos.status_code == 200
    finally:
        cleos.close()
        bens.close()


@pytest.mark.parametrize(
    "name,value", [("NOTIFY_STREAMS_PER_PROCESS", "0"), ("NOTIFY_STREAMS_PER_PARTNER", "many")]
)
def test_a_stream_cap_that_is_not_a_positive_number_is_refused_at_start(monkeypatch, name, value):
    from shared.config import Settings

    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=name):
        Settings.from_env("notify")
