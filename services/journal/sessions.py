"""Sessions and passwords: logging in on a device, refreshing, logging out, changing and resetting
the password. Each function runs in the caller's unit of work, like ``use_cases``.

A session is one login on one device. It holds a refresh token, opaque and random, kept only as its
SHA-256: ``POST /v1/tokens/refresh`` retires it and gives a new one (and a new access token), and
each refresh moves the session's end 60 days on. A retired refresh token presented again means two
holders of one session (a copy was stolen, or the app was): the whole session ends (reuse detection,
OAuth 2.0 Security Best Current Practice, 4.14.2). Access tokens name their session (claim ``sid``)
and are still verified offline by every service: one of an ended session is accepted until it
expires (``TOKEN_TTL_SECONDS``, 15 minutes by default). Every session that ends is published as
``journal.session.ended``.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared import pagination
from shared.errors import NotFound, Unauthorized
from shared.outbox import emit

from . import throttle
from .tables import accounts, outbox, password_resets, refresh_tokens, sessions

SOURCE = "/journal"
SESSION_TTL = timedelta(days=60)
RESET_TTL = timedelta(minutes=30)
RESET_EMAIL_GAP = timedelta(
    minutes=1
)  # at most one reset email a minute for an account, whoever asks


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits


# --- passwords, throttled per (account, address) and per address ---

_DUMMY_HASH: dict[int, str] = {}


def _burn(hasher: PasswordHasher, password: str) -> None:
    """The cost of a real check, for an address with no account: no account enumeration by timing."""
    key = id(hasher)
    if key not in _DUMMY_HASH:
        _DUMMY_HASH[key] = hasher.hash(secrets.token_urlsafe(16))
    try:
        hasher.verify(_DUMMY_HASH[key], password)
    except VerificationError:
        pass


def _checked_password(
    s: Session, hasher: PasswordHasher, email: str, row, password: str, client: str, now: datetime
) -> bool:
    """Whether ``password`` is the account's (``row``; None for an email with no account). Refused
    (429) while this (email, address) pair or this address must wait; a failure counts on both, a
    success starts the pair's count again. The caller commits even when the answer is no."""
    pair = throttle.LOGIN.key(throttle.email_key(email), client)
    throttle.check(s, [pair, throttle.LOGIN_ADDRESS.key(client)], now)
    if row is None:
        _burn(hasher, password)
        ok = False
    else:
        try:
            ok = hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            ok = False
    if ok:
        throttle.succeeded(s, pair)
    else:
        throttle.failed(
            s,
            [(throttle.LOGIN, pair), (throttle.LOGIN_ADDRESS, throttle.LOGIN_ADDRESS.key(client))],
            now,
        )
    return ok


def check_login(
    s: Session, hasher: PasswordHasher, email: str, password: str, client: str, now: datetime
) -> str | None:
    """The partner id if the password is right, else None (the failure counted)."""
    email = email.strip().lower()
    # Locked (PostgreSQL): concurrent attempts on one account are counted one after another, none lost.
    row = s.execute(select(accounts).where(accounts.c.email == email).with_for_update()).first()
    return row.id if _checked_password(s, hasher, email, row, password, client, now) else None


# --- sessions ---


def start_session(
    s: Session, partner_id: str, device_name: str | None, now: datetime
) -> tuple[str, str]:
    """A new session for a login: (its id, its first refresh token)."""
    session_id, token = str(uuid.uuid4()), _new_token()
    # What a login finds ended is removed (expired sessions, used or expired reset links): nothing piles up.
    s.execute(
        delete(sessions).where(sessions.c.partner_id == partner_id, sessions.c.expires_at <= now)
    )
    s.execute(
        delete(password_resets).where(
            password_resets.c.partner_id == partner_id, password_resets.c.expires_at <= now
        )
    )
    s.execute(
        sessions.insert().values(
            id=session_id,
            partner_id=partner_id,
            device_name=device_name,
            created_at=now,
            last_used_at=now,
            expires_at=now + SESSION_TTL,
        )
    )
    s.execute(
        refresh_tokens.insert().values(
            token_hash=digest(token), session_id=session_id, issued_at=now
        )
    )
    return session_id, token


def refresh(s: Session, token: str, now: datetime) -> tuple[str, str, str] | None:
    """(partner id, session id, new refresh token) for a current refresh token; the old one is retired.
    A retired one ends its session: None, for the caller to commit and then answer 401. An unknown or
    expired one is 401 at once."""
    found = s.execute(
        select(
            refresh_tokens.c.session_id,
            refresh_tokens.c.retired_at,
            sessions.c.partner_id,
            sessions.c.expires_at,
        )
        .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
        .where(refresh_tokens.c.token_hash == digest(token))
        .with_for_update(of=sessions)  # concurrent refreshes of one session one after the other
    ).first()
    if found is None or found.expires_at <= now:
        raise Unauthorized("The refresh token is invalid or has expired; log in again.")
    # Read again under the lock: a concurrent refresh may have retired it meanwhile.
    retired = s.execute(
        select(refresh_tokens.c.retired_at).where(refresh_tokens.c.token_hash == digest(token))
    ).scalar_one()
    if retired is not None:
        end_session(s, found.partner_id, found.session_id, "reuse_detected")
        return None
    new = _new_token()
    s.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.token_hash == digest(token))
        .values(retired_at=now)
    )
    s.execute(
        refresh_tokens.insert().values(
            token_hash=digest(new), session_id=found.session_id, issued_at=now
        )
    )
    s.execute(
        update(sessions)
        .where(sessions.c.id == found.session_id)
        .values(last_used_at=now, expires_at=now + SESSION_TTL)
    )
    # A retired token is kept (as its hash) for as long as it would have lasted, to be told from a stranger's.
    s.execute(
        delete(refresh_tokens).where(
            refresh_tokens.c.session_id == found.session_id,
            refresh_tokens.c.retired_at < now - SESSION_TTL,
        )
    )
    return found.partner_id, found.session_id, new


def _subject(s: Session, partner_id: str) -> str:
    """An event's subject: the partner's couple, or the partner before a couple forms."""
    return (
        s.execute(select(accounts.c.couple_id).where(accounts.c.id == partner_id)).scalar()
        or partner_id
    )


def end_session(s: Session, partner_id: str, session_id: str, reason: str) -> None:
    s.execute(delete(sessions).where(sessions.c.id == session_id))  # its refresh tokens with it
    emit(
        s,
        outbox,
        "journal.session.ended",
        source=SOURCE,
        subject=_subject(s, partner_id),
        data={"partner_id": partner_id, "session_id": session_id, "reason": reason},
    )


def _end_sessions(s: Session, partner_id: str, reason: str, *, keep: str | None = None) -> int:
    ids = (
        s.execute(
            select(sessions.c.id)
            .where(sessions.c.partner_id == partner_id, sessions.c.id != (keep or ""))
            .with_for_update()
        )
        .scalars()
        .all()
    )
    for session_id in ids:
        end_session(s, partner_id, session_id, reason)
    return len(ids)


def list_sessions(
    s: Session, partner_id: str, current: str | None, query: dict, now: datetime
) -> dict:
    stmt = select(sessions).where(sessions.c.partner_id == partner_id, sessions.c.expires_at > now)
    return pagination.newest_first(
        s,
        stmt,
        sessions.c.created_at,
        sessions.c.id,
        query,
        lambda page: [
            {
                "id": r.id,
                "device_name": r.device_name,
                "created_at": r.created_at,
                "last_used_at": r.last_used_at,
                "current": r.id == current,
            }
            for r in page
        ],
    )


def logout(s: Session, partner_id: str, session_id: str | None, current: str | None) -> None:
    """End one of the caller's sessions: the current one (``logout``) or another (``revoked``)."""
    if session_id is None:
        raise NotFound("This token belongs to no session; log in again to have one.")
    mine = s.execute(
        select(sessions.c.id)
        .where(sessions.c.id == session_id, sessions.c.partner_id == partner_id)
        .with_for_update()
    ).first()
    if mine is None:
        raise NotFound(
            "No such session."
        )  # another's session is answered as one that does not exist
    end_session(s, partner_id, session_id, "logout" if session_id == current else "revoked")


# --- password change and reset ---


def change_password(
    s: Session,
    hasher: PasswordHasher,
    partner_id: str,
    current_session: str | None,
    current_password: str,
    new_password: str,
    client: str,
    now: datetime,
) -> bool:
    """Set a new password if the current one is right, and end every other session (and any reset
    link). False if it is wrong (counted like a failed login; the caller commits and answers 403)."""
    me = s.execute(select(accounts).where(accounts.c.id == partner_id).with_for_update()).first()
    if me is None:
        raise Unauthorized("This account no longer exists.")
    if not _checked_password(s, hasher, me.email, me, current_password, client, now):
        return False
    s.execute(
        update(accounts)
        .where(accounts.c.id == partner_id)
        .values(password_hash=hasher.hash(new_password))
    )
    s.execute(delete(password_resets).where(password_resets.c.partner_id == partner_id))
    _end_sessions(s, partner_id, "password_changed", keep=current_session)
    return True


def request_reset(s: Session, email: str, client: str, now: datetime) -> None:
    """A reset link for the account with this email, if there is one, by an event the notify service
    turns into an email. The same work and the same answer whether there is one or not, and the same
    throttle (every request counts: per (email, address) and per address)."""
    email = email.strip().lower()
    pair = throttle.RESET.key(throttle.email_key(email), client)
    by_address = throttle.RESET_ADDRESS.key(client)
    throttle.check(s, [pair, by_address], now)
    throttle.failed(s, [(throttle.RESET, pair), (throttle.RESET_ADDRESS, by_address)], now)
    row = s.execute(
        select(accounts.c.id).where(accounts.c.email == email).with_for_update()
    ).first()
    if row is None:
        return
    recent = s.execute(
        select(password_resets.c.token_hash).where(
            password_resets.c.partner_id == row.id,
            password_resets.c.created_at > now - RESET_EMAIL_GAP,
        )
    ).first()
    if recent is not None:
        return  # one email a minute at most: asking from many addresses floods no one's inbox
    token = _new_token()
    expires_at = now + RESET_TTL
    s.execute(
        password_resets.insert().values(
            token_hash=digest(token), partner_id=row.id, created_at=now, expires_at=expires_at
        )
    )
    emit(
        s,
        outbox,
        "journal.password.reset_requested",
        source=SOURCE,
        subject=_subject(s, row.id),
        data={"partner_id": row.id, "token": token, "expires_at": expires_at},
    )


def confirm_reset(
    s: Session, hasher: PasswordHasher, token: str, new_password: str, client: str, now: datetime
) -> bool:
    """Set the password with a reset link's token (once, within 30 minutes) and end every session.
    False for a token unknown, used or expired (counted per address; the caller commits and answers)."""
    by_address = throttle.RESET_CONFIRM_ADDRESS.key(client)
    throttle.check(s, [by_address], now)
    found = s.execute(
        select(password_resets)
        .where(password_resets.c.token_hash == digest(token))
        .with_for_update()
    ).first()
    if found is None or found.used_at is not None or found.expires_at <= now:
        throttle.failed(s, [(throttle.RESET_CONFIRM_ADDRESS, by_address)], now)
        return False
    s.execute(
        update(accounts)
        .where(accounts.c.id == found.partner_id)
        .values(password_hash=hasher.hash(new_password))
    )
    # This link is used; any other one of the account's stops working too.
    s.execute(delete(password_resets).where(password_resets.c.partner_id == found.partner_id))
    _end_sessions(s, found.partner_id, "password_reset")
    return True


def forget_account(s: Session, partner_id: str, email: str) -> None:
    """An erasure: the account's sessions, refresh tokens, reset links and throttle counts go."""
    s.execute(
        delete(refresh_tokens).where(
            refresh_tokens.c.session_id.in_(
                select(sessions.c.id).where(sessions.c.partner_id == partner_id)
            )
        )
    )
    s.execute(delete(sessions).where(sessions.c.partner_id == partner_id))
    s.execute(delete(password_resets).where(password_resets.c.partner_id == partner_id))
    throttle.forget_keys(s, throttle.email_key(email), partner_id)
