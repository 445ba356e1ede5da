"""The token verifier remembers a token it verified, until the token expires:
an expired token is refused even when it was remembered, a changed one is
checked anew, and what it remembers is bounded."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import auth


@pytest.fixture()
def keys():
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def test_a_remembered_token_is_refused_once_it_expires(keys, monkeypatch):
    issuer, verifier = auth.TokenIssuer(keys[0], ttl_seconds=60), auth.TokenVerifier(keys[1])
    token = issuer.issue("5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d10")
    assert verifier.verify(token) == "5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d10"
    assert verifier.verify(token) == "5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d10"  # remembered
    now = time.time()
    monkeypatch.setattr(auth.time, "time", lambda: now + 60 + auth.TokenVerifier.LEEWAY + 1)

    def expired(*_args, **_kwargs):  # PyJWT's own clock is datetime's: told here what it would find
        raise jwt.ExpiredSignatureError("Signature has expired")

    monkeypatch.setattr(auth.jwt, "decode", expired)
    with pytest.raises(auth.InvalidToken):
        verifier.verify(token)  # not answered from memory: checked again, and refused
    assert token not in verifier._verified


def test_a_token_changed_by_one_character_is_checked_and_refused(keys):
    issuer, verifier = auth.TokenIssuer(keys[0], ttl_seconds=60), auth.TokenVerifier(keys[1])
    token = issuer.issue("5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d10")
    verifier.verify(token)
    head, payload, signature = token.split(".")
    forged = ".".join((head, payload, ("A" if signature[0] != "A" else "B") + signature[1:]))
    with pytest.raises(auth.InvalidToken):
        verifier.verify(forged)
    other = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(auth.InvalidToken):  # signed by another key
        verifier.verify(
            auth.TokenIssuer(other, ttl_seconds=60).issue("5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d10")
        )


def test_it_remembers_a_bounded_number_of_tokens_the_least_recently_used_forgotten_first(
    keys, monkeypatch
):
    monkeypatch.setattr(auth.TokenVerifier, "REMEMBERED", 3)
    issuer, verifier = auth.TokenIssuer(keys[0], ttl_seconds=60), auth.TokenVerifier(keys[1])
    tokens = [issuer.issue(f"5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d1{i}") for i in range(5)]
    for t in tokens[:3]:
        verifier.verify(t)
    verifier.verify(tokens[0])  # the phone that sent the first token is still in use
    for t in tokens[3:]:
        verifier.verify(t)
    assert set(verifier._verified) == {tokens[0], tokens[3], tokens[4]}


def test_a_verified_token_says_until_when_it_is_accepted(keys):
    """What a live stream ends at: the token's expiry plus the clock-skew leeway, remembered or not."""
    issuer, verifier = auth.TokenIssuer(keys[0], ttl_seconds=60), auth.TokenVerifier(keys[1])
    now = time.time()
    token = issuer.issue("5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d10")
    checked = verifier.verified(token)
    assert checked[0] == "5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d10"
    assert (
        now + 60 + auth.TokenVerifier.LEEWAY - 2
        <= checked[1]
        <= now + 60 + auth.TokenVerifier.LEEWAY + 2
    )
    assert verifier.verified(token) == checked  # remembered: the same answer


PARTNER = "5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d10"
SESSION = "0c8e3f7a-2b1d-4e5f-8a9b-c0d1e2f3a4b5"


def test_a_token_names_the_login_session_it_was_issued_under(keys):
    """What a device is tied to (the notify service): the token's ``sid``, or None in a token issued without one."""
    issuer, verifier = auth.TokenIssuer(keys[0], ttl_seconds=60), auth.TokenVerifier(keys[1])
    with_session, without = issuer.issue(PARTNER, session_id=SESSION), issuer.issue(PARTNER)
    assert jwt.decode(with_session, options={"verify_signature": False})["sid"] == SESSION
    assert "sid" not in jwt.decode(without, options={"verify_signature": False})
    for _ in range(2):  # checked, then remembered: the same claims
        assert verifier.claims(with_session).session_id == SESSION
        assert verifier.claims(without).session_id is None
    assert verifier.claims(with_session).partner_id == verifier.verify(with_session) == PARTNER


@pytest.mark.parametrize("sid", ["not-a-uuid", 12345, ["0c8e3f7a-2b1d-4e5f-8a9b-c0d1e2f3a4b5"], ""])
def test_a_token_whose_session_is_not_a_uuid_is_refused(keys, sid):
    now = int(time.time())
    key = serialization.load_pem_private_key(keys[0], None)
    token = jwt.encode(
        {
            "sub": PARTNER,
            "iss": auth.ISSUER,
            "aud": auth.AUDIENCE,
            "iat": now,
            "exp": now + 60,
            "sid": sid,
        },
        key,
        algorithm=auth.ALGORITHM,
    )
    with pytest.raises(auth.InvalidToken):
        auth.TokenVerifier(keys[1]).claims(token)


def test_a_sessions_token_names_its_session_and_an_older_token_names_none(keys):
    issuer, verifier = auth.TokenIssuer(keys[0], ttl_seconds=60), auth.TokenVerifier(keys[1])
    pid, sid = "5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d10", "0b6f1c52-6a55-4d1e-9c84-3f1f2a9d8e01"
    claims = verifier.verified_claims(issuer.issue(pid, sid))
    assert (claims["sub"], claims["sid"]) == (pid, sid)
    old = issuer.issue(pid)
    assert verifier.verified_claims(old)["sid"] is None and verifier.verify(old) == pid
    token = issuer.issue(pid, sid)
    assert (
        verifier.verified(token)[0] == pid and verifier.verified_claims(token)["sid"] == sid
    )  # remembered too


def test_a_token_whose_sid_is_not_a_uuid_is_refused(keys):
    issuer, verifier = auth.TokenIssuer(keys[0], ttl_seconds=60), auth.TokenVerifier(keys[1])
    with pytest.raises(auth.InvalidToken):
        verifier.verify(issuer.issue("5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d10", "not-a-session"))
