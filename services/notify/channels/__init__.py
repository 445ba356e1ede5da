"""Notification channels: one module each, named in one table.

A channel is a kind of delivery (``email``, ``webhook``, ``apprise``, ``push``):
what its targets are, how a target is checked when a partner adds one, whether
it is paced (quiet hours, at most one message a day, the rest folded in:
pacing.py), which of the partner's switches (``channels.email``,
``channels.push``) governs it, and how one message is sent. Planning
(``delivery.planned``), the worker (``delivery.Deliverer``), the inbox's view
and ``POST /v1/channels`` ask this registry and know no kind by name.

``CHANNELS`` names each kind's class by ``module:attribute``, imported on first
use, as Kombu names its transports. Adding a channel is a module with a
:class:`Channel` subclass and one line here (docs/channels.md).

A delivery row names its channel by ``kind`` and ``target_id``, the key of
the row it goes to (in ``channels``, or ``devices`` for a push; none for the
account's own email address and the inbox).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from sqlalchemy import Table

from ..tables import channels as channel_rows
from ..targets import TargetRefused

__all__ = ["CHANNELS", "Channel", "Message", "Target", "TargetRefused", "get", "registered"]

# kind -> "module:attribute" of its Channel class. A kind is at most 10 characters (channels.type).
CHANNELS: dict[str, str] = {
    "email": "services.notify.channels.mail:Email",
    "webhook": "services.notify.channels.webhook:Webhook",
    "apprise": "services.notify.channels.apprise:Apprise",
    "push": "services.notify.channels.push:Push",
}

IN_APP = "in_app"  # the inbox: delivered as the notification is made, never sent by the worker
KIND_LENGTH = 10

# The partner's switches (PATCH /v1/preferences ``channels``), by the column that holds each.
SWITCHES = {"email": "email_on", "push": "push_on"}


class SendFailed(Exception):
    """The channel answered no; the delivery may be tried again."""


class SendUncertain(SendFailed):
    """The message went out whole and no answer came back: it may have been
    delivered. Never tried again (a channel delivers at most once)."""


class SendRejected(SendFailed):
    """The channel said no for good (or is gone): never tried again."""


class Unregistered(SendRejected):
    """The target no longer exists at the other end (a push token FCM forgot): it is removed."""


@dataclass(frozen=True)
class Target:
    """What a send needs of the row a delivery goes to."""

    id: str
    address: str  # an email address, a URL, a push token (a secret)
    secret: str | None = field(default=None, repr=False)  # a webhook's HMAC key
    platform: str | None = None  # a push's: fcm or apns


@dataclass(frozen=True)
class Message:
    """One message to send on a channel: a notification, or several folded into one (paced)."""

    delivery_id: str
    notification_id: str
    milestone_id: str
    partner_id: str
    title: str
    body: str
    created_at: datetime
    target: (
        Target | None
    )  # None: the account's own (email), or the row is gone since it was planned
    account_email: str | None = field(default=None, repr=False)
    charts: Sequence[dict] = ()  # the numbers of each folded milestone's chart (email)


class Channel(Protocol):
    """A kind of delivery. Subclass it, set ``kind``, write ``send``; the defaults are a
    channel whose targets are rows of ``channels``, added by ``POST /v1/channels`` with a
    ``url``, sent at once and governed by no switch."""

    kind: ClassVar[str]
    paced: ClassVar[bool] = False  # quiet hours, and at most one message a day a target
    switch: ClassVar[str | None] = None  # "email" or "push": the preference that turns it off
    # the POST /v1/channels field naming a target ("address" or "url"); None: not made there
    field: ClassVar[str | None] = "url"
    signed: ClassVar[bool] = False  # a secret is made with each target, shown once
    # where its targets are kept, each row with an id and a partner_id
    table: ClassVar[Table] = channel_rows

    def on(self) -> bool:
        """Whether deliveries are planned on it, as configured (read through shared/config.py)."""
        return True

    def check(self, value: str, *, allow_private: bool) -> str:
        """The target to store for ``value`` as a partner gave it; TargetRefused if it may not be."""
        return value

    def owns(self, row: Any) -> bool:
        """Whether a row of ``table`` is one of this channel's targets."""
        return row.type == self.kind

    def target(self, row: Any) -> Target:
        return Target(row.id, row.target, row.secret)

    def plan(self, recipient: Any, targets: Sequence[Target]) -> list[str | None]:
        """The target ids to deliver a new notification to (None: the account's own)."""
        return [t.id for t in targets]

    def send(self, message: Message, settings: Any) -> None:
        """Send, or raise SendFailed (tried again), SendUncertain or SendRejected (not)."""
        raise NotImplementedError

    def forget(self, s: Any, target_id: str) -> None:
        """The other end said the target is gone for good (Unregistered): remove it."""


_loaded: dict[str, tuple[str, Channel]] = {}


def get(kind: str) -> Channel | None:
    """The channel of ``kind``; None if no module is registered for it."""
    path = CHANNELS.get(kind)
    if path is None:
        return None
    cached = _loaded.get(kind)
    if cached is None or cached[0] != path:
        module, _, attribute = path.partition(":")
        channel = getattr(importlib.import_module(module), attribute)()
        if channel.kind != kind:
            raise ValueError(f"{path} is registered as {kind!r} but is {channel.kind!r}")
        if len(kind) > KIND_LENGTH:
            raise ValueError(f"{kind!r}: a channel's kind is at most {KIND_LENGTH} characters")
        cached = _loaded[kind] = (path, channel)
    return cached[1]


def registered() -> list[Channel]:
    return [get(kind) for kind in list(CHANNELS)]


def addable() -> tuple[str, ...]:
    """The kinds a partner adds through ``POST /v1/channels``."""
    return tuple(c.kind for c in registered() if c.field)


def key(kind: str, target_id: str | None) -> str:
    """A delivery's at-most-once key (``deliveries.channel``): one per notification and target."""
    return f"{kind}:{target_id}" if target_id else kind


def switched_on(channel: Channel, recipient: Any) -> bool:
    return channel.switch is None or bool(getattr(recipient, SWITCHES[channel.switch]))


def by_table(channels: Iterable[Channel]) -> dict[Table, list[Channel]]:
    """The channels grouped by the table their targets are kept in: one read a table."""
    out: dict[Table, list[Channel]] = {}
    for c in channels:
        out.setdefault(c.table, []).append(c)
    return out
