"""Delivering notifications on the channels a partner chose: email, webhooks,
Apprise (push and chat services) and native push to the phones registered
(FCM, fcm.py). Each channel is a module of channels/, named in its registry:
this worker knows none by name.

Each (notification, target) is a delivery row, made when the notification is.
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
A paced channel's deliveries fall due when the recipient's quiet hours end,
and are folded into at most one message a day a target (pacing.py).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from shared import metrics
from shared.db import unit_of_work, utcnow
from shared.outbox import emit

from . import SOURCE, channels, pacing, resets
from .channels import SendFailed, SendRejected, SendUncertain, Target, Unregistered
from .tables import deliveries, notifications, outbox, recipients

log = structlog.get_logger("delivery")

MAX_ATTEMPTS = 5


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
    channel: str  # the at-most-once key (channels.key), paced per recipient and key
    kind: str
    target_id: str | None
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
    target: Target | None = None
    chart: dict | None = None  # the numbers of the email's chart, if the milestone has one
    claim: datetime | None = (
        None  # the claimed_until this worker set: the row is still its own while it is there
    )


class _NoLongerClaimed(Exception):
    """The claim ran out before the send began, and another worker took the row."""


# --- planning: made with the notification, in the consumer's transaction ---


def _quiet(recipient) -> tuple[str, str] | None:
    return (recipient.quiet_start, recipient.quiet_end) if recipient.quiet_start else None


def planned_channels() -> list[channels.Channel]:
    """The channels deliveries are planned on in this configuration."""
    return [c for c in channels.registered() if c.on()]


def targets_of(s: Session, on: Sequence[channels.Channel], partner_ids: list[str]) -> dict:
    """{partner id: {kind: [Target]}} of the channels ``on``: one read a table of targets."""
    out: dict[str, dict[str, list[Target]]] = {pid: {c.kind: [] for c in on} for pid in partner_ids}
    if not partner_ids:
        return out
    for table, kinds in channels.by_table(on).items():
        for row in s.execute(select(table).where(table.c.partner_id.in_(partner_ids))):
            for c in kinds:
                if c.owns(row):
                    out[row.partner_id][c.kind].append(c.target(row))
    return out


def planned(
    recipient, theirs: dict[str, list[Target]], notification_id: str, due: datetime, on=None
) -> list[dict]:
    """A pending delivery for each target the recipient wants, of their targets by
    kind (``theirs``, from targets_of), as rows for the caller to insert; a paced
    channel's fall due when the recipient's quiet hours end."""
    quiet_due = pacing.due_at(due, recipient.timezone, _quiet(recipient))
    rows = []
    for c in planned_channels() if on is None else on:
        if not channels.switched_on(c, recipient):
            continue
        for target_id in c.plan(recipient, theirs.get(c.kind, [])):
            rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "notification_id": notification_id,
                    "channel": channels.key(c.kind, target_id),
                    "kind": c.kind,
                    "target_id": target_id,
                    "status": "pending",
                    "attempts": 0,
                    "due_at": quiet_due if c.paced else due,
                    "delivered_at": None,
                }
            )
    return rows


# --- sending ---


def send(row: _Claimed, settings, charts: Sequence[dict] | None = None) -> None:
    """Send ``row`` on its channel; an email also carries ``charts`` (by default the row's own)."""
    channel = channels.get(row.kind)
    if channel is None:
        raise SendFailed(f"unknown channel {row.kind}")
    if charts is None:
        charts = [row.chart] if row.chart else []
    channel.send(
        channels.Message(
            delivery_id=row.id,
            notification_id=row.notification_id,
            milestone_id=row.milestone_id,
            partner_id=row.partner_id,
            title=row.title,
            body=row.body,
            created_at=row.created_at,
            target=row.target,
            account_email=row.email,
            charts=charts,
        ),
        settings,
    )


def _paced(kind: str) -> bool:
    channel = channels.get(kind)
    return bool(channel and channel.paced)


def _targets(s: Session, rows) -> dict[tuple[str, str], Target]:
    """The targets the claimed ``rows`` go to, by (kind, target id): one read a table."""
    wanted: dict[str, set[str]] = {}
    for r in rows:
        if r.target_id:
            wanted.setdefault(r.kind, set()).add(r.target_id)
    known = [c for c in map(channels.get, wanted) if c is not None]
    found = {}
    for table, kinds in channels.by_table(known).items():
        ids = set().union(*(wanted[c.kind] for c in kinds))
        for row in s.execute(select(table).where(table.c.id.in_(ids))):
            for c in kinds:
                if c.owns(row) and row.id in wanted[c.kind]:
                    found[(c.kind, row.id)] = c.target(row)
    return found


class Deliverer:
    """The delivery worker's loop body (see shared.workers.Periodic)."""

    def __init__(self, sessions, settings, *, batch: int = 20):
        self.sessions = sessions
        self.settings = settings
        self.batch = batch
        self.resets = resets.ResetMailer(sessions, settings)
        # How long a send may take before it counts as interrupted (NOTIFY_DELIVERY_LEASE_SECONDS):
        # keep it well above the longest a send can take (NOTIFY_SEND_TIMEOUT_SECONDS per call).
        self.lease = timedelta(seconds=settings.delivery_lease_seconds)

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
            claim = now + self.lease
            s.execute(
                update(deliveries).where(deliveries.c.id.in_(ids)).values(claimed_until=claim)
            )
            rows = s.execute(
                select(
                    deliveries.c.id,
                    deliveries.c.notification_id,
                    deliveries.c.channel,
                    deliveries.c.kind,
                    deliveries.c.target_id,
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
            found = _targets(s, rows)
        return [
            _Claimed(**r._mapping, target=found.get((r.kind, r.target_id)), claim=claim)
            for r in rows
        ]

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
                        claimed_until=utcnow() + self.lease,
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
                deliveries.c.kind,
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
                "channel": row.kind,
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
            if _paced(r.kind):
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
                if outcome == "unregistered" and first.target_id:
                    channels.get(first.kind).forget(s, first.target_id)
            log.info(
                "delivery",
                channel=first.kind,
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
        metrics.DELIVERIES.labels(row.kind, settled).inc()
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
                    "channel": row.kind,
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
                    due_at=now
                    + timedelta(seconds=backoff(row.attempts, self.settings.retry_base_seconds)),
                )
            )
