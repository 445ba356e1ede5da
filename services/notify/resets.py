"""Password reset emails: the journal publishes ``journal.password.reset_requested`` with the link's
token; this service sends the link to the account's own address by its SMTP server.

A reset email is transactional, not a celebration: sent at once (no quiet hours, never folded
into a day's message), once, and never put in the inbox or the live stream. It holds the link and
nothing else about the partner: no name, no figure. The token is kept here only until the email
is sent, fails for good or expires (30 minutes), and is never logged. A send whose worker died
midway is not repeated (the link may have arrived; the partner can ask for another). With no
``SMTP_URL`` nothing can be sent: the request is dropped, and logged without the address.

The link is ``PASSWORD_RESET_URL`` (``tandem://password-reset`` by default, the app's own link)
with the token as its ``token`` query parameter.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlencode

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared.db import insert_if_new, unit_of_work, utcnow
from shared.events import Event

from .channels import SendFailed, SendUncertain, mail
from .tables import recipients, reset_emails

log = structlog.get_logger("resets")

MAX_ATTEMPTS = 5
SUBJECT = "Reset your Tandem password"


def link(base: str, token: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}{urlencode({'token': token})}"


def message(to: str, token: str, expires_at: datetime, message_id: str, settings) -> EmailMessage:
    msg = EmailMessage(policy=mail.HEADERS_POLICY)
    msg["Subject"] = SUBJECT
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Message-ID"] = f"<reset-{message_id}@tandem>"
    mail.sound_headers(msg)
    minutes = max(1, round((expires_at - utcnow()).total_seconds() / 60))
    msg.set_content(
        "Someone asked to reset the password of the Tandem account with this email address.\n\n"
        f"To choose a new password, open this link within {minutes} minutes (it works once):\n\n"
        f"{link(settings.password_reset_url, token)}\n\n"
        "Every device logged in to the account will be logged out.\n"
        "If you did not ask, ignore this email: your password stays as it is.\n\nTandem"
    )
    return msg


def password_reset_requested(s: Session, ev: Event) -> None:
    """Keep the link to send, unless the account is erased, has no address here or the link expired."""
    d = ev.data
    pid = str(d["partner_id"])
    to = s.execute(
        select(recipients.c.email).where(recipients.c.id == pid, recipients.c.erased.is_(False))
    ).scalar()
    if not to or d["expires_at"] <= utcnow():
        return
    s.execute(
        insert_if_new(s, reset_emails.c.id),
        {
            "id": ev.id,
            "partner_id": pid,
            "token": d["token"],
            "expires_at": d["expires_at"],
            "status": "pending",
            "attempts": 0,
            "due_at": utcnow(),
            "claimed_until": None,
        },
    )


def forget(s: Session, partner_id: str) -> None:
    """An erasure: a link not sent yet goes too."""
    s.execute(delete(reset_emails).where(reset_emails.c.partner_id == partner_id))


class ResetMailer:
    """Part of the delivery worker's loop (``Deliverer.tick``)."""

    def __init__(self, sessions, settings, *, batch: int = 20):
        self.sessions = sessions
        self.settings = settings
        self.batch = batch

    def _claim(self, now: datetime) -> list:
        with unit_of_work(self.sessions) as s:
            # Expired links, and sends whose worker died midway (may have arrived: never sent again).
            s.execute(delete(reset_emails).where(reset_emails.c.expires_at <= now))
            s.execute(
                delete(reset_emails).where(
                    reset_emails.c.status == "sending", reset_emails.c.claimed_until < now
                )
            )
            ids = (
                s.execute(
                    select(reset_emails.c.id)
                    .where(reset_emails.c.status == "pending", reset_emails.c.due_at <= now)
                    .order_by(reset_emails.c.due_at)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            if not ids:
                return []
            # Marked sending, committed before any send begins (at most once).
            s.execute(
                update(reset_emails)
                .where(reset_emails.c.id.in_(ids))
                .values(
                    status="sending",
                    claimed_until=now + timedelta(seconds=self.settings.delivery_lease_seconds),
                    attempts=reset_emails.c.attempts + 1,
                )
            )
            return s.execute(
                select(
                    reset_emails.c.id,
                    reset_emails.c.token,
                    reset_emails.c.expires_at,
                    reset_emails.c.attempts,
                    recipients.c.email,
                )
                .join(recipients, recipients.c.id == reset_emails.c.partner_id)
                .where(reset_emails.c.id.in_(ids))
            ).all()

    def tick(self) -> int:
        """Send what is due; how many were tried."""
        rows = self._claim(utcnow())
        for row in rows:
            outcome = self._send(row)
            with unit_of_work(self.sessions) as s:
                if outcome == "retry" and row.attempts < MAX_ATTEMPTS:
                    wait = timedelta(
                        seconds=random.uniform(
                            0, self.settings.retry_base_seconds * 2 ** (row.attempts - 1)
                        )
                    )
                    s.execute(
                        update(reset_emails)
                        .where(reset_emails.c.id == row.id)
                        .values(status="pending", claimed_until=None, due_at=utcnow() + wait)
                    )
                else:  # sent, or as good as (no answer once sent whole), or given up: the token goes
                    s.execute(delete(reset_emails).where(reset_emails.c.id == row.id))
            log.info("reset_email", outcome=outcome, attempt=row.attempts)
        return len(rows)

    def _send(self, row) -> str:
        if not self.settings.smtp_url:
            return "dropped: no SMTP_URL"
        try:
            mail.smtp_send(
                self.settings.smtp_url,
                message(row.email, row.token, row.expires_at, row.id, self.settings),
                self.settings.send_timeout_seconds,
            )
        except SendUncertain:
            return "uncertain"
        except SendFailed:
            return "retry"
        except ValueError:  # an address that would write a header (never stored as such)
            return "refused"
        return "sent"
