"""Access tokens: Ed25519-signed JWTs.

Only the journal holds the private key and mints tokens; every service verifies
them on its own with the public key, never calling the journal. Keys come from
the environment (``TOKEN_PRIVATE_KEY``, ``TOKEN_PUBLIC_KEY``, PEM); the embedded
default makes a key pair under ``./var/keys/`` on first run.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cachetools import TLRUCache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import config

ISSUER = "tandem-journal"
AUDIENCE = "tandem"
ALGORITHM = "EdDSA"


class InvalidToken(Exception):
    pass


def _key_paths(var_dir: Path) -> tuple[Path, Path]:
    d = var_dir / "keys"
    return d / "token_ed25519.pem", d / "token_ed25519.pub.pem"


def ensure_local_keypair(var_dir: Path) -> None:
    """Create the embedded default's key pair once; safe when processes race."""
    priv, pub = _key_paths(var_dir)
    if priv.exists() and pub.exists():
        return
    priv.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = priv.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(pem)
    os.chmod(tmp, 0o600)
    try:
        os.link(tmp, priv)  # atomic: the first process wins, the rest use its key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    if not pub.exists():
        loaded = serialization.load_pem_private_key(priv.read_bytes(), None)
        pub_tmp = pub.with_suffix(f".{os.getpid()}.tmp")
        pub_tmp.write_bytes(
            loaded.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        os.replace(pub_tmp, pub)


def private_key_pem(var_dir: Path) -> bytes:
    env = config.token_private_key()
    if env:
        return env.encode()
    ensure_local_keypair(var_dir)
    return _key_paths(var_dir)[0].read_bytes()


def public_key_pem(var_dir: Path) -> bytes:
    env = config.token_public_key()
    if env:
        return env.encode()
    ensure_local_keypair(var_dir)
    return _key_paths(var_dir)[1].read_bytes()


class TokenIssuer:
    def __init__(self, private_pem: bytes, ttl_seconds: int):
        self.key = serialization.load_pem_private_key(private_pem, None)
        self.ttl = ttl_seconds

    def issue(self, partner_id: str, session_id: str | None = None) -> str:
        """A token for ``partner_id``; with ``session_id``, the login session it
        belongs to (its ``sid`` claim), which the services tie what it registers to."""
        now = datetime.now(UTC)
        claims = {
            "sub": partner_id,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + timedelta(seconds=self.ttl),
            "jti": str(uuid.uuid4()),
        }
        if session_id is not None:
            claims["sid"] = str(session_id)
        return jwt.encode(claims, self.key, algorithm=ALGORITHM)


@dataclass(frozen=True)
class Claims:
    """What a verified token says: whose it is (``sub``), its login session
    (``sid``; None in a token issued without one) and its expiry (a Unix time)."""

    partner_id: str
    session_id: str | None
    expires: float


class TokenVerifier:
    """Checks tokens with the public key. A token once verified is remembered
    (its claims, in this process, never written anywhere) until it expires: a
    phone sends the same token with every request, and the signature check is
    most of what authentication costs."""

    LEEWAY = 5  # seconds of clock skew allowed on exp and iat
    REMEMBERED = 4096  # tokens at most; the least recently used is forgotten first

    def __init__(self, public_pem: bytes):
        self.key = serialization.load_pem_public_key(public_pem)
        # Each token forgotten once its own expiry (plus the leeway) has passed. The clock is read
        # through the module at each call, so that a test can move it.
        self._verified: TLRUCache[str, Claims] = TLRUCache(
            maxsize=self.REMEMBERED,
            ttu=lambda _token, claims, _now: claims.expires + self.LEEWAY,
            timer=lambda: time.time(),
        )
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def verify(self, token: str) -> str:
        """The partner id the token was issued to; InvalidToken otherwise."""
        return self.verified(token)[0]

    def verified(self, token: str) -> tuple[str, float]:
        """The partner id the token was issued to, and until when (a Unix time) this
        verifier accepts it: its expiry plus the leeway; InvalidToken otherwise."""
        claims = self.claims(token)
        return claims.partner_id, claims.expires + self.LEEWAY

    def verified_claims(self, token: str) -> dict:
        """``{"sub": partner id, "sid": the session's id or None, "exp": until when (a Unix time)
        this verifier accepts it}``; InvalidToken otherwise. A token issued before sessions
        existed has no ``sid``. Checked offline like ``verified``: a session ended since the
        token was issued is not seen here; its access token dies with its expiry."""
        claims = self.claims(token)
        return {
            "sub": claims.partner_id,
            "sid": claims.session_id,
            "exp": claims.expires + self.LEEWAY,
        }

    def claims(self, token: str) -> Claims:
        """The token's claims once its signature, issuer, audience and times are
        checked; InvalidToken otherwise. A ``sid`` that is not a UUID makes the
        token invalid."""
        with self._lock:
            known = self._verified.get(token)
        if known is not None:
            return known
        try:
            raw = jwt.decode(
                token,
                self.key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                leeway=self.LEEWAY,
            )
            sid = raw.get("sid")
            claims = Claims(
                str(uuid.UUID(raw["sub"])),
                None if sid is None else str(uuid.UUID(sid)),
                float(raw["exp"]),
            )
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as e:
            with self._lock:
                self._verified.pop(token, None)
            raise InvalidToken(type(e).__name__) from None
        with self._lock:
            self._verified[token] = claims
        return claims
