"""Apprise: push and chat services (ntfy, Gotify, Telegram...) named by an
Apprise URL. Paced, and governed by the partner's ``channels.push``. The URL
is checked when it is added, again at send time and at connect time
(targets.py)."""

from __future__ import annotations

from .. import targets
from . import Channel, Message, SendFailed


class Apprise(Channel):
    kind = "apprise"
    paced = True
    switch = "push"

    def check(self, value: str, *, allow_private: bool) -> str:
        return targets.check_apprise_url(value, allow_private=allow_private)

    def send(self, message: Message, settings) -> None:
        if message.target is None:
            raise SendFailed("apprise: the channel was removed")
        try:  # checked again now, and at connect time: the host's addresses may have changed
            sent = targets.send_apprise(
                message.target.address,
                message.title,
                message.body,
                allow_private=settings.allow_private_targets,
            )
        except targets.TargetRefused as e:
            raise SendFailed(f"refused: {e.message}") from None
        if not sent:
            raise SendFailed("apprise: not delivered")
