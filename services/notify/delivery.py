"""Delivering notifications on the channels a partner chose: email, webhooks,
Apprise (push and chat services) and native push to the phones registered
(FCM, fcm.py).

Each (notification, channel) is a delivery row, made when the notification is.
The worker claims a batch of due rows for a while (``FOR UPDATE SKIP LOCKED``
on PostgreSQL, so several workers can run), and marks each one *sending*, with
a lease of its own (``NOTIFY_DELIVERY_LEASE_SECONDS``), just before it sends
it. A channel delivers a notification at most once: a send whose worker died
before its outcome was recorded is marked failed when its lease runs out,
never sent a second time; the rest of a dead worker's batch, never begun, is
claimed again once the claim runs out. A transient failure is retried with
exponential backoff and full jitter, up to a limit; then the delivery fails and
``notify.notification.failed`` is published; a refusal for good (FCM's
``INVALID_ARGUMENT``, a token FCM no longer knows, whose device is then
removed) fails at once. A success publishes ``notify.notification.delivered``.

An email is text and HTML; the HTML shows a small chart of each change it
celebrates (chart.py), inline. Webhook and Apprise targets are checked again
at send time (a host's addresses may change after the channel was made), and
the address each connection reaches at connect time (targets.py): private,
loopback and link-local ones are refused unless
``NOTIFY_ALLOW_PRIVATE_TARGETS=1``.
"""

from __future__ import annotations

import email.policy
import hashlib
import hmac
import json
import os
import random
import smtplib
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from html import escape
from urllib.parse import urlparse

import requests
import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from shared import metrics
from shared.config import push_configured
from shared.db import unit_of_work, utcnow
from shared.outbox import emit

from . import SOURCE, celebrate, chart, devices, fcm, pacing, resets, targets
from .tables import channels, deliveries, notifications, outbox, recipients
from .tables import devices as device_rows

log = structlog.get_logger("delivery")

MAX_ATTEMPTS = 5


def lease() -> timedelta:
    """How long a send may take before it counts as interrupted
    (``NOTIFY_DELIVERY_LEASE_SECONDS``, 60 by default). Keep it well above the
    longest a send can take (``NOTIFY_SEND_TIMEOUT_SECONDS`` per call, 10 s): a
    send still running when its lease ends is taken for lost."""
    return timedelta(seconds=float(os.environ.get("NOTIFY_DELIVERY_LEASE_SECONDS", "60")))


def retry_base() -> float:
    return float(os.environ.get("NOTIFY_RETRY_BASE_SECONDS", "5"))


def backoff(
    attempts: int, base: float, cap: float = 3600.0, rng: random.Random = random._inst
) -> float:
    """Seconds before the next try: exponential, with full jitter (pure)."""
    return rng.uniform(0, min(cap, base * 2 ** (attempts - 1)))


@dataclass(frozen=True)
class _Claimed:
    """A delivery claimed for sending, with what the sender needs."""

    id: str
    notification_id: str
    channel: str
    attempts: int
    milestone_id: str
    partner_id: str
    title: str
    body: str
    created_at: datetime
    email: str | None
    timezone: str | None
    quiet_start: str | None
    quiet_end: str | None
    target: str | None
    secret: str | None
    chart: dict | None = None  # the numbers of the email's chart, if the milestone has one
    platform: str | None = None  # a push's: fcm or apns
    claim: datetime | None = (
        None  # the claimed_until this worker set: the row is still its own while it is there
    )


class SendFailed(Exception):
    """The channel answered no; the delivery may be tried again."""


class SendUncertain(SendFailed):
    """The message went out whole and no answer came back: it may have been
    delivered. Never tried again (a channel delivers at most once)."""


class SendRejected(SendFailed):
    """The channel said no for good (or is gone): never tried again."""


class Unregistered(SendRejected):
    """The push platform no longer knows the device: it is removed."""


def send_timeout() -> float:
    """Seconds to wait for an SMTP or webhook answer (``NOTIFY_SEND_TIMEOUT_SECONDS``, 10)."""
    return float(os.environ.get("NOTIFY_SEND_TIMEOUT_SECONDS", "10"))


class _NoLongerClaimed(Exception):
    """The claim ran out before the send began, and another worker took the row."""


# --- planning: made with the notification, in the consumer's transaction ---

_PUSH = devices.CHANNEL  # push:<device id>
PACED = ("email", "apprise", _PUSH)  # email and push: quiet hours, and at most one a day


def _quiet(recipient) -> tuple[str, str] | None:
    return (recipient.quiet_start, recipient.quiet_end) if recipient.quiet_start else None


def planned(recipient, mine, notification_id: str, due: datetime, phones=()) -> list[dict]:
    """A pending delivery for each channel the recipient wants, of their channels
    (``mine``) and registered devices (``phones``), as rows for the caller to
    insert; email and push fall due when the recipient's quiet hours end."""
    wanted: list[str] = []
    if recipient.email_on and os.environ.get("SMTP_URL"):  # SMTP_URL unset: no email channel
        emails = [f"email:{c.id}" for c in mine if c.type == "email"]
        wanted += emails or (["email"] if recipient.email else [])
    if recipient.push_on:
        wanted += [f"apprise:{c.id}" for c in mine if c.type == "apprise"]
        if push_configured():  # FCM_PROJECT_ID unset: no native push
            wanted += [devices.channel_of(d.id) for d in phones]
    wanted += [f"webhook:{c.id}" for c in mine if c.type == "webhook"]
    quiet_due = pacing.due_at(due, recipient.timezone, _quiet(recipient))
    return [
        {
            "id": str(uuid.uuid4()),
            "notification_id": notification_id,
            "channel": channel,
            "status": "pending",
            "attempts": 0,
            "due_at": quiet_due if channel.split(":")[0] in PACED else due,
            "delivered_at": None,
        }
        for channel in wanted
    ]


# --- sending ---


def _pictures(charts: Sequence[dict], delivery_id: str) -> list[tuple[str, str, bytes]]:
    """(Content-ID, alt text, PNG) for each chart that can be drawn; numbers that
    are not a chart of an improvement are left out, never drawn."""
    out = []
    for i, numbers in enumerate(charts, 1):
        try:
            alt, png = chart.describe(numbers), chart.render(numbers)
        except ValueError:
            log.warning("chart left out", reason="not a chart of an improvement")
            continue
        out.append((f"chart-{i}.{delivery_id}@tandem", alt, png))
    return out


# Refuses a header value with a line break as it is set, and a defect as it is parsed.
HEADERS_POLICY = email.policy.SMTP.clone(raise_on_defect=True)


def _sound_headers(msg: EmailMessage) -> None:
    """Refuse a header whose value, once its RFC 2047 encoded words are decoded,
    holds a control character: CPython before 3.11.10 / 3.12.5 writes such a
    value out with its line break raw (CVE-2024-6923), a header of the
    sender's choosing. Patched versions refuse it as well
    (``verify_generated_headers``); this holds on every version."""
    for name, value in msg.items():
        if any(unicodedata.category(c) == "Cc" for c in str(value)):
            raise ValueError(f"the {name} header holds a control character")


def _email_message(
    to: str, title: str, body: str, delivery_id: str, charts: Sequence[dict] = ()
) -> EmailMessage:
    """multipart/alternative: the text, and the HTML, which is multipart/related
    with a chart of each change (inline PNG, referenced by its Content-ID) in
    the order given."""
    pictures = _pictures(charts, delivery_id)
    msg = EmailMessage(policy=HEADERS_POLICY)
    msg["Subject"] = celebrate.subject_for(title)  # never a name (celebrate.py)
    msg["From"] = os.environ.get("NOTIFY_MAIL_FROM", "Tandem <celebrations@tandem.invalid>")
    msg["To"] = to
    msg["Message-ID"] = f"<{delivery_id}@tandem>"
    _sound_headers(msg)
    msg.set_content(f"{body}\n\nWith warmth,\nTandem")
    lines = "<br>".join(escape(line) for line in body.splitlines())
    images = "".join(
        f'<p><img src="cid:{cid}" alt="{escape(alt)}" width="{chart.WIDTH}" height="{chart.HEIGHT}" '
        f'style="max-width:100%;height:auto"></p>'
        for cid, alt, _ in pictures
    )
    msg.add_alternative(
        f"<html><body><h2>{escape(title)}</h2><p>{lines}</p>{images}"
        f"<p>With warmth,<br>Tandem</p></body></html>",
        subtype="html",
    )
    html = msg.get_payload()[1]
    for i, (cid, _, png) in enumerate(pictures, 1):
        html.add_related(
            png,
            maintype="image",
            subtype="png",
            cid=f"<{cid}>",
            disposition="inline",
            filename=f"chart-{i}.png",
        )
    return msg


class _Tracked:
    """Knows when the whole message has been handed to the server (its
    terminating ``CRLF.CRLF`` sent): a reply lost after that leaves the outcome
    unknown, where a reply lost before it means nothing was delivered."""

    message_sent = False

    def send(self, s):
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.message_sent = True


class _SMTP(_Tracked, smtplib.SMTP):
    pass


class _SMTPS(_Tracked, smtplib.SMTP_SSL):
    pass


def _email(
    smtp_url: str, to: str, title: str, body: str, delivery_id: str, charts: Sequence[dict] = ()
) -> None:
    try:
        msg = _email_message(to, title, body, delivery_id, charts)
    except ValueError as e:  # a header that could write others (see _sound_headers)
        raise SendFailed(f"refused: {e}") from None
    smtp_send(smtp_url, msg)


def smtp_send(smtp_url: str, msg: EmailMessage) -> None:
    """Hand ``msg`` to the SMTP server: SendFailed if it said no or was not reached (nothing
    delivered), SendUncertain if the whole message went out and no answer came back."""
    u = urlparse(smtp_url)
    cls = _SMTPS if u.scheme == "smtps" else _SMTP
    try:
        smtp = cls(
            u.hostname or "127.0.0.1",
            u.port or (465 if u.scheme == "smtps" else 25),
            timeout=send_timeout(),
        )
    except (smtplib.SMTPException, OSError) as e:
        raise SendFailed(f"SMTP: {type(e).__name__}") from None
    try:
        if u.username:
            smtp.login(u.username, u.password or "")
        smtp.send_message(msg)
    except smtplib.SMTPResponseException as e:  # the server answered, and it was no
        raise SendFailed(f"SMTP: {type(e).__name__} {e.smtp_code}") from None
    except (smtplib.SMTPException, OSError) as e:
        if smtp.message_sent:
            raise SendUncertain(
                f"SMTP: no answer once the whole message was sent ({type(e).__name__}); "
                "it may have been delivered, so it is not repeated"
            ) from None
        raise SendFailed(f"SMTP: {type(e).__name__}") from None
    finally:
        try:  # accepted is accepted: a QUIT that fails changes nothing
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def _webhook(url: str, secret: str, payload: dict, delivery_id: str, allow_private: bool) -> None:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Tandem-Signature": f"sha256={signature}",
        "X-Tandem-Delivery": delivery_id,
    }
    try:  # the exact bytes signed are the bytes sent
        checked = targets.check_webhook_url(url, allow_private=allow_private)
        with targets.safe_session(allow_private) as session:
            r = session.post(checked, data=body, headers=headers, timeout=send_timeout())
    except targets.TargetRefused as e:
        raise SendFailed(f"refused: {e.message}") from None
    except (OSError, requests.RequestException) as e:
        raise SendFailed(f"webhook: {type(e).__name__}") from None
    if not 200 <= r.status_code < 300:
        raise SendFailed(f"webhook answered {r.status_code}")


def _apprise(url: str, title: str, body: str, allow_private: bool) -> None:
    try:  # checked again now, and at connect time: the host's addresses may have changed
        sent = targets.send_apprise(url, title, body, allow_private=allow_private)
    except targets.TargetRefused as e:
        raise SendFailed(f"refused: {e.message}") from None
    if not sent:
        raise SendFailed("apprise: not delivered")


def _push(row, settings) -> None:
    if not settings.push_on:
        raise SendFailed(
            "no FCM_PROJECT_ID or FCM_CREDENTIALS_FILE for the delivery worker: push is off"
        )
    if row.target is None:  # removed since it was planned (signed out): nothing to send to
        raise SendRejected("push: the device was removed")
    client = fcm.client(
        settings.fcm_project_id,
        settings.fcm_credentials_file,
        settings.fcm_base_url,
        settings.fcm_token_url,
    )
    try:
        client.send(
            row.target, row.platform, celebrate.subject_for(row.title), row.body, send_timeout()
        )
    except fcm.Unregistered as e:
        raise Unregistered(str(e)) from None
    except fcm.PushRejected as e:
        raise SendRejected(str(e)) from None
    except fcm.PushUncertain as e:
        raise SendUncertain(str(e)) from None
    except fcm.PushFailed as e:
        raise SendFailed(str(e)) from None


def send(row, settings, charts: Sequence[dict] | None = None) -> None:
    """Send ``row`` on its channel; an email also carries ``charts`` (by default the row's own)."""
    kind, _, channel_id = row.channel.partition(":")
    if kind == "email":
        if not settings.smtp_url:
            raise SendFailed("no SMTP_URL: email is off")
        if charts is None:
            charts = [row.chart] if row.chart else []
        _email(settings.smtp_url, row.target or row.email, row.title, row.body, row.id, charts)
    elif kind == "webhook":
        payload = {
            "notification_id": row.notification_id,
            "milestone_id": row.milestone_id,
            "partner_id": row.partner_id,
            "title": row.title,
            "body": row.body,
            "created_at": row.created_at.isoformat(),
        }
        _webhook(row.target, row.secret, payload, row.id, settings.allow_private_targets)
    elif kind == "apprise":
        _apprise(row.target, row.title, row.body, settings.allow_private_targets)
    elif kind == _PUSH:
        _push(row, settings)
    else:
        raise SendFailed(f"unknown channel {kind}")


class Deliverer:
    """The delivery worker's loop body (see shared.workers.Periodic)."""

    def __init__(self, sessions, settings, *, batch: int = 20):
        self.sessions = sessions
        self.settings = settings
        self.batch = batch
        self.resets = resets.ResetMailer(sessions, settings)

    def _claim(self, now: datetime) -> list:
        with unit_of_work(self.sessions) as s:
            # A send whose worker died mid-way: its outcome is unknown, and a
            # channel delivers at most once, so it is not sent again.
            for lost in s.execute(
                select(deliveries.c.id, deliveries.c.notification_id, deliveries.c.channel)
                .where(deliveries.c.status == "sending", deliveries.c.claimed_until < now)
                .with_for_update(skip_locked=True)
            ).all():
                self._fail(
                    s,
                    lost.id,
                    "the send was interrupted; not repeated, to never deliver twice",
                    now,
                )
            free = or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now)
            ids = (
                s.execute(
                    select(deliveries.c.id)
                    .where(deliveries.c.status == "pending", deliveries.c.due_at <= now, free)
                    .order_by(deliveries.c.due_at)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            if not ids:
                return []
            # Claimed, still pending: none is being sent yet (see _start_sending).
            claim = now + lease()
            s.execute(
                update(deliveries).where(deliveries.c.id.in_(ids)).values(claimed_until=claim)
            )
            rows = s.execute(
                select(
                    deliveries.c.id,
                    deliveries.c.notification_id,
                    deliveries.c.channel,
                    deliveries.c.attempts,
                    notifications.c.milestone_id,
                    notifications.c.partner_id,
                    notifications.c.title,
                    notifications.c.body,
                    notifications.c.created_at,
                    notifications.c.chart,
                    recipients.c.email,
                    recipients.c.timezone,
                    recipients.c.quiet_start,
                    recipients.c.quiet_end,
                )
                .join(notifications, notifications.c.id == deliveries.c.notification_id)
                .join(recipients, recipients.c.id == notifications.c.partner_id)
                .where(deliveries.c.id.in_(ids))
            ).all()
            wanted = {
                r.channel.partition(":")[2] for r in rows if not r.channel.startswith(_PUSH + ":")
            } - {""}
            phones = {
                r.channel.partition(":")[2] for r in rows if r.channel.startswith(_PUSH + ":")
            }
            by_id = (
                {c.id: c for c in s.execute(select(channels).where(channels.c.id.in_(wanted)))}
                if wanted
                else {}
            )
            by_id |= (
                {
                    d.id: d
                    for d in s.execute(select(device_rows).where(device_rows.c.id.in_(phones)))
                }
                if phones
                else {}
            )
        out = []
        for r in rows:
            c = by_id.get(r.channel.partition(":")[2])
            if r.channel.startswith(_PUSH + ":"):
                out.append(
                    _Claimed(
                        **r._mapping,
                        target=c.token if c else None,
                        secret=None,
                        platform=c.platform if c else None,
                        claim=claim,
                    )
                )
            else:
                out.append(
                    _Claimed(
                        **r._mapping,
                        target=c.target if c else None,
                        secret=c.secret if c else None,
                        claim=claim,
                    )
                )
        return out

    def _start_sending(self, group: list[_Claimed]) -> list[_Claimed] | None:
        """Mark the group *sending*, an attempt taken and its lease from now,
        committed before the send begins; None if the claim ran out and another
        worker has taken the rows since."""
        try:
            with unit_of_work(self.sessions) as s:
                marked = s.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.id.in_([r.id for r in group]),
                        deliveries.c.status == "pending",
                        deliveries.c.claimed_until == group[0].claim,
                    )
                    .values(
                        status="sending",
                        attempts=deliveries.c.attempts + 1,
                        claimed_until=utcnow() + lease(),
                    )
                ).rowcount
                if marked != len(group):
                    raise _NoLongerClaimed()
        except _NoLongerClaimed:
            return None
        return [replace(r, attempts=r.attempts + 1) for r in group]

    def _fail(self, s: Session, delivery_id: str, reason: str, now: datetime) -> None:
        row = s.execute(
            select(
                deliveries.c.notification_id,
                deliveries.c.channel,
                notifications.c.milestone_id,
                notifications.c.partner_id,
            )
            .join(notifications, notifications.c.id == deliveries.c.notification_id)
            .where(deliveries.c.id == delivery_id)
        ).one()
        s.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(status="failed", last_error=reason[:300], claimed_until=None)
        )
        emit(
            s,
            outbox,
            "notify.notification.failed",
            source=SOURCE,
            subject=row.partner_id,
            data={
                "notification_id": row.notification_id,
                "milestone_id": row.milestone_id,
                "partner_id": row.partner_id,
                "channel": row.channel.split(":")[0],
                "reason": reason[:300],
            },
        )

    def _last_sent(self, partner_id: str, channel: str) -> datetime | None:
        with unit_of_work(self.sessions) as s:
            return s.execute(
                select(func.max(deliveries.c.delivered_at))
                .join(notifications, notifications.c.id == deliveries.c.notification_id)
                .where(notifications.c.partner_id == partner_id, deliveries.c.channel == channel)
            ).scalar()

    def _postpone(self, rows: list[_Claimed], until: datetime) -> None:
        with unit_of_work(
            self.sessions
        ) as s:  # not a try: no attempt was taken, the claim is let go
            s.execute(
                update(deliveries)
                .where(deliveries.c.id.in_([r.id for r in rows]))
                .values(due_at=until, claimed_until=None)
            )

    def _groups(self, rows: list[_Claimed], now: datetime) -> list[tuple[list[_Claimed], str, str]]:
        """What to send now: (rows, title, body); paced rows are folded per
        recipient and channel, and held back if one went out today already."""
        out, paced = [], {}
        for r in rows:
            if r.channel.split(":")[0] in PACED:
                paced.setdefault((r.partner_id, r.channel), []).append(r)
            else:
                out.append(([r], r.title, r.body))
        for (partner_id, channel), group in paced.items():
            first = group[0]
            quiet = (first.quiet_start, first.quiet_end) if first.quiet_start else None
            items = [
                pacing.PendingItem(r.notification_id, r.title, r.body, r.created_at) for r in group
            ]
            decided = pacing.plan_sends(
                items, self._last_sent(partner_id, channel), now, first.timezone, quiet
            )
            if decided.send is None:
                self._postpone(group, decided.look_again_at or now)
            else:
                out.append((group, decided.send.title, decided.send.body))
        return out

    def tick(self) -> float:
        sent_resets = self.resets.tick()  # first: a reset link is waited for, and is never paced
        now = utcnow()
        rows = self._claim(now)
        for group, title, body in self._groups(rows, now):
            group = self._start_sending(group)
            if group is None:
                continue
            first = group[0]
            # a chart for each folded milestone that has one, in the order the folded text lists them
            charts = [
                r.chart
                for r in sorted(group, key=lambda r: (r.created_at, r.notification_id))
                if r.chart
            ]
            try:
                send(replace(first, title=title, body=body), self.settings, charts)
                outcome, reason = "delivered", None
            except SendUncertain as e:
                outcome, reason = "uncertain", str(e)
            except Unregistered as e:
                outcome, reason = "unregistered", str(e)
            except SendRejected as e:
                outcome, reason = "rejected", str(e)
            except SendFailed as e:
                outcome, reason = "retry", str(e)
            except Exception as e:  # a bug in a sender must not stop the others
                outcome, reason = "retry", f"{type(e).__name__}"
            now = utcnow()
            with unit_of_work(self.sessions) as s:
                for row in group:
                    self._record(s, row, outcome, reason, now)
                if outcome == "unregistered":
                    devices.forget(s, device_rows.c.id == first.channel.partition(":")[2])
            log.info(
                "delivery",
                channel=first.channel.split(":")[0],
                outcome=outcome,
                attempt=first.attempts,
                folded=len(group),
            )
        return 0.05 if rows or sent_resets else 0.5

    def _record(
        self, s: Session, row: _Claimed, outcome: str, reason: str | None, now: datetime
    ) -> None:
        final = outcome in ("uncertain", "rejected", "unregistered") or row.attempts >= MAX_ATTEMPTS
        settled = "delivered" if outcome == "delivered" else ("failed" if final else "retry")
        metrics.DELIVERIES.labels(row.channel.split(":")[0], settled).inc()
        if outcome == "delivered":
            s.execute(
                update(deliveries)
                .where(deliveries.c.id == row.id)
                .values(status="delivered", delivered_at=now, claimed_until=None, last_error=None)
            )
            emit(
                s,
                outbox,
                "notify.notification.delivered",
                source=SOURCE,
                subject=row.partner_id,
                data={
                    "notification_id": row.notification_id,
                    "milestone_id": row.milestone_id,
                    "partner_id": row.partner_id,
                    "channel": row.channel.split(":")[0],
                },
            )
        elif final:
            self._fail(s, row.id, reason, now)
        else:
            s.execute(
                update(deliveries)
                .where(deliveries.c.id == row.id)
                .values(
                    status="pending",
                    last_error=reason[:300],
                    claimed_until=None,
                    due_at=now + timedelta(seconds=backoff(row.attempts, retry_base())),
                )
            )
