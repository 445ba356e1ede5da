"""Throttling failed attempts (logins, password resets, joins) so that nobody can turn it against someone else.

Failures are counted per key in the ``throttles`` table, which every web worker and process
shares (docs/decisions/0002-throttles-in-the-database.md): a pair (the account, or the email
asked about, and the client address) and the client address alone. A key's first ``free``
failures cost nothing; each one after makes the next attempt with that key wait, twice as long
each time up to ``cap`` (growing delays). The wait applies to that key only: an account is never
locked, so its owner's right password from another address is never refused, however many
wrong ones came from elsewhere. A key's failures are forgotten ``forget`` after its last one.

The client address is the peer's, or with ``TRUSTED_PROXY_HOPS`` set the one that many trusted
proxies put in ``X-Forwarded-For`` (werkzeug's ProxyFix, in the app); an IPv6 address counts as
its /64 network, since one subscriber holds a whole /64.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.orm import Session

from shared.db import upsert
from shared.errors import Throttled

from .tables import throttles


@dataclass(frozen=True)
class Rule:
    name: str
    free: int  # failures before any wait
    base: timedelta  # the wait after the first failure beyond them; doubling after each next one
    cap: timedelta  # the longest wait
    forget: timedelta = timedelta(
        hours=1
    )  # a key's failures are forgotten this long after its last one

    def key(self, *parts: str) -> str:
        return ":".join((self.name, *parts))

    def wait(self, failures: int) -> timedelta | None:
        if failures < self.free:
            return None
        return min(self.cap, self.base * 2 ** min(failures - self.free, 30))


# A typo or five on one's own phone: half a minute. A script on one address against one account: one guess in
# 15 minutes after ten. One address against many accounts: slowed after 20 failures in all.
LOGIN = Rule("login", free=5, base=timedelta(seconds=30), cap=timedelta(minutes=15))
LOGIN_ADDRESS = Rule("login-addr", free=20, base=timedelta(seconds=30), cap=timedelta(minutes=15))
# Every reset request counts (none fails): a few links an hour per address asked about, from one address.
RESET = Rule("reset", free=3, base=timedelta(minutes=1), cap=timedelta(hours=1))
RESET_ADDRESS = Rule("reset-addr", free=10, base=timedelta(minutes=1), cap=timedelta(hours=1))
RESET_CONFIRM_ADDRESS = Rule(
    "reset-confirm-addr", free=10, base=timedelta(seconds=30), cap=timedelta(minutes=15)
)
JOIN = Rule("join", free=5, base=timedelta(seconds=30), cap=timedelta(minutes=15))
JOIN_ADDRESS = Rule("join-addr", free=20, base=timedelta(seconds=30), cap=timedelta(minutes=15))
RULES = (LOGIN, LOGIN_ADDRESS, RESET, RESET_ADDRESS, RESET_CONFIRM_ADDRESS, JOIN, JOIN_ADDRESS)
FORGOTTEN = max(
    r.forget + r.cap for r in RULES
)  # a row this old holds nothing any rule still needs


def client_network(remote_addr: str | None) -> str:
    """The key part for a client address: the address, or an IPv6 address's /64."""
    try:
        addr = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return "unknown"
    if addr.version == 6:
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


def email_key(email: str) -> str:
    """An email as a key part: a digest, the same for an address with or without an account."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def check(s: Session, keys: list[str], now: datetime) -> None:
    """Refuse (429 with Retry-After) while any of the keys must wait."""
    waits = (
        s.execute(
            select(throttles.c.blocked_until).where(
                throttles.c.key.in_(keys), throttles.c.blocked_until > now
            )
        )
        .scalars()
        .all()
    )
    if waits:
        raise Throttled(
            "Too many attempts; try again later.",
            retry_after=int((max(waits) - now).total_seconds()) + 1,
        )


def failed(s: Session, rules_keys: list[tuple[Rule, str]], now: datetime) -> None:
    """Count a failure on each key (atomically, whatever runs at once) and set its wait."""
    for rule, key in rules_keys:
        stmt = upsert(s, throttles).values(key=key, failures=1, last_failure_at=now)
        stale = throttles.c.last_failure_at < now - rule.forget
        failures = s.execute(
            stmt.on_conflict_do_update(
                index_elements=[throttles.c.key],
                set_={
                    "failures": case((stale, 1), else_=throttles.c.failures + 1),
                    "last_failure_at": now,
                },
            ).returning(throttles.c.failures)
        ).scalar_one()
        wait = rule.wait(failures)
        if wait is not None:
            s.execute(
                update(throttles).where(throttles.c.key == key).values(blocked_until=now + wait)
            )
    # Rows nothing needs any more; one another transaction holds (reviving it) is left for next time, never waited
    # for (it may wait for a row this one holds).
    unneeded = (
        select(throttles.c.key)
        .where(throttles.c.last_failure_at < now - FORGOTTEN)
        .limit(100)
        .with_for_update(skip_locked=True)
    )
    s.execute(delete(throttles).where(throttles.c.key.in_(unneeded.scalar_subquery())))


def succeeded(s: Session, key: str) -> None:
    """The pair's owner got in: its count starts again (an address's count is never reset by a success,
    or one's own account would reset the count of guesses at others')."""
    s.execute(delete(throttles).where(throttles.c.key == key))


def forget_keys(s: Session, *parts: str) -> None:
    """Every pair key that names one of ``parts`` (an erasure: nothing of the account is kept)."""
    for part in parts:
        for rule in RULES:
            s.execute(
                delete(throttles).where(
                    throttles.c.key.startswith(rule.key(part) + ":", autoescape=True)
                )
            )
