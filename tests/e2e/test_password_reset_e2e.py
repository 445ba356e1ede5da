"""A forgotten password through every service as real processes (`tandem run`, both backends): the
journal's event, its relay, the broker, the notify consumer and delivery worker, a real SMTP server."""

from __future__ import annotations

import re
import uuid

import pytest
import requests
from sqlalchemy import select

from services.journal.tables import outbox as journal_outbox
from tests.support import wait_until

PASSWORD = "correct horse battery"


@pytest.mark.e2e
def test_a_forgotten_password_is_reset_by_the_emailed_link_at_once_and_ends_every_session(
    running, backend, mail
):
    j, n = running.urls["journal"], running.urls["notify"]
    email = f"ana-{uuid.uuid4().hex[:8]}@example.com"
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    assert (
        requests.post(
            j + "/v1/accounts",
            json={
                "email": email,
                "password": PASSWORD,
                "display_name": "Ana",
                "timezone": "Europe/Paris",
            },
        ).status_code
        == 201
    )
    phone = requests.post(
        j + "/v1/tokens", json={"email": email, "password": PASSWORD, "device_name": "phone"}
    ).json()
    headers = {"Authorization": f"Bearer {phone['access_token']}"}
    # Quiet all day and no celebration emails: a reset link is neither a celebration nor paced.
    r = requests.patch(
        n + "/v1/preferences",
        headers=headers,
        json={"quiet_hours": {"start": "00:00", "end": "23:59"}, "channels": {"email": False}},
    )
    assert r.status_code == 200, r.status_code

    asked = [
        requests.post(j + "/v1/password-resets", json={"email": address})
        for address in (email, nobody)
    ]
    assert [a.status_code for a in asked] == [202, 202] and asked[0].json() == asked[1].json()
    [msg] = wait_until(lambda: mail.to(email), timeout=60, what="the reset email")
    text = msg.get_body(preferencelist=("plain",)).get_content()
    token = re.search(r"tandem://password-reset\?token=(\S+)", text).group(1)
    assert "Ana" not in text and msg["Subject"] == "Reset your Tandem password"
    assert (
        requests.get(n + "/v1/notifications", headers=headers).json()["items"] == []
    )  # not in the inbox
    engine = backend.engine("journal")
    try:
        with engine.connect() as c:
            assert not [b for b in c.execute(select(journal_outbox.c.body)).scalars() if token in b]
    finally:
        engine.dispose()

    done = requests.post(
        j + "/v1/password-resets/confirm", json={"token": token, "new_password": "a new passphrase"}
    )
    assert done.status_code == 204
    assert (
        requests.post(
            j + "/v1/tokens/refresh", json={"refresh_token": phone["refresh_token"]}
        ).status_code
        == 401
    )
    assert (
        requests.post(
            j + "/v1/tokens", json={"email": email, "password": "a new passphrase"}
        ).status_code
        == 201
    )
    assert (
        requests.post(
            j + "/v1/password-resets/confirm",
            json={"token": token, "new_password": "yet another one"},
        ).status_code
        == 422
    )
    assert mail.to(nobody) == [] and len(mail.to(email)) == 1
