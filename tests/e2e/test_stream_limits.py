"""The live inbox cannot starve the notify service (real `tandem run` processes,
both backends): one account's streams are capped, streams wait on threads of
their own, and a stream ends when its token does."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from shared import auth
from tests.e2e.test_notify_stream import StreamClient, _partner

PROMPT = 5.0  # seconds: what "answered promptly" means on a shared, busy machine
PROBLEM = "application/problem+json"


def _open(url: str, headers: dict) -> requests.Response:
    """A stream's answer (its status and headers), or an AssertionError if none came promptly."""
    try:
        return requests.get(url, headers=headers, stream=True, timeout=(PROMPT, 2 * PROMPT))
    except requests.Timeout:
        raise AssertionError(f"GET {url} went unanswered for {2 * PROMPT} s") from None


def _prompt(method: str, url: str, **kw) -> tuple[requests.Response, float]:
    t0 = time.monotonic()
    try:
        r = requests.request(method, url, timeout=PROMPT, **kw)
    except requests.Timeout:
        raise AssertionError(f"{method} {url} went unanswered for {PROMPT} s") from None
    return r, time.monotonic() - t0


@pytest.mark.e2e
def test_seventeen_streams_of_one_partner_leave_another_partners_requests_answered(running):
    journal, notify = running.urls["journal"], running.urls["notify"]
    http = requests.Session()
    ana, ben = _partner(http, journal, "ana"), _partner(http, journal, "ben")
    stream = notify + "/v1/notifications/stream"

    held: list[StreamClient] = []
    refused: list[requests.Response] = []
    try:
        for _ in range(
            17
        ):  # one after another, each answered before the next (a phone gone haywire)
            r = _open(stream, ana["headers"])
            if r.status_code == 200:
                client = StreamClient(stream, ana["headers"], response=r)
                held.append(client)
                assert client.until_live() == []
            else:
                refused.append(r)
                assert r.status_code == 429, r.text
                assert r.headers["Content-Type"].startswith(PROBLEM)
                assert r.json()["status"] == 429 and r.json()["detail"]
                assert r.headers["Retry-After"].isdigit()
                r.close()
        # Four a web process (the default), two processes: the rest refused.
        assert 1 <= len(held) <= 8 and len(refused) == 17 - len(held), (len(held), len(refused))

        # Ben is answered at once all the while: his inbox, his preferences, his own stream.
        inbox, took = _prompt("GET", notify + "/v1/notifications", headers=ben["headers"])
        assert inbox.status_code == 200 and inbox.json()["items"] == [], inbox.text
        prefs, took_prefs = _prompt("GET", notify + "/v1/preferences", headers=ben["headers"])
        assert prefs.status_code == 200, prefs.text
        changed, _ = _prompt(
            "PATCH",
            notify + "/v1/preferences",
            headers=ben["headers"],
            json={"share_milestones_with_partner": True},
        )
        assert (
            changed.status_code == 200 and changed.json()["share_milestones_with_partner"] is True
        )
        own = StreamClient(stream, ben["headers"], response=_open(stream, ben["headers"]))
        held.append(own)
        assert own.until_live() == []
        assert max(took, took_prefs) < PROMPT
    finally:
        for c in held:
            c.close()

    # Her streams closed, their slots are free again: a new one of hers is served at once.
    again = _open(stream, ana["headers"])
    try:
        assert again.status_code == 200, again.text
    finally:
        again.close()


def _short_token(running, partner_id: str, seconds: int) -> str:
    """A token of `partner_id` signed with the stack's own key that expires in `seconds`
    (what a journal with `TOKEN_TTL_SECONDS=seconds` would issue)."""
    key = auth.private_key_pem(Path(running.env["TANDEM_VAR_DIR"]))
    return auth.TokenIssuer(key, ttl_seconds=seconds).issue(partner_id)


@pytest.mark.e2e
def test_a_stream_ends_when_its_token_expires_and_the_client_must_come_back_with_a_fresh_one(
    running,
):
    journal, notify = running.urls["journal"], running.urls["notify"]
    ana = _partner(requests.Session(), journal, "ana")
    stream = notify + "/v1/notifications/stream"
    token = _short_token(running, ana["id"], 2)
    expires = time.time() + 2
    client = StreamClient(stream, {"Authorization": f"Bearer {token}"})
    try:
        assert client.until_live() == []
        # It ends once the service stops accepting the token (its expiry plus the clock-skew leeway).
        ended = client.next(timeout=2 + auth.TokenVerifier.LEEWAY + 10)
        assert ended == ("closed", "eof"), ended
        assert time.time() >= expires, "not before the token expired"
    finally:
        client.close()
    # The same token again is refused; a fresh one is served.
    r, _ = _prompt("GET", stream, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.headers["Content-Type"].startswith(PROBLEM)
    fresh = StreamClient(stream, ana["headers"])
    try:
        assert fresh.until_live() == []
    finally:
        fresh.close()
