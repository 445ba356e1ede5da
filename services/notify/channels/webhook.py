"""Webhooks: a JSON POST of the notification, signed with the target's own
secret (``X-Tandem-Signature: sha256=<HMAC-SHA256 of the body>``, the secret
shown once, when the target is added). Sent at once, whatever the switches.
The URL is checked when it is added, again at send time and at connect time
(targets.py): private, loopback and link-local addresses are refused unless
``NOTIFY_ALLOW_PRIVATE_TARGETS=1``."""

from __future__ import annotations

import hashlib
import hmac
import json

import requests

from .. import targets
from . import Channel, Message, SendFailed


class Webhook(Channel):
    kind = "webhook"
    signed = True

    def check(self, value: str, *, allow_private: bool) -> str:
        return targets.check_webhook_url(value, allow_private=allow_private)

    def send(self, message: Message, settings) -> None:
        if message.target is None:
            raise SendFailed("webhook: the channel was removed")
        payload = {
            "notification_id": message.notification_id,
            "milestone_id": message.milestone_id,
            "partner_id": message.partner_id,
            "title": message.title,
            "body": message.body,
            "created_at": message.created_at.isoformat(),
        }
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        signature = hmac.new(message.target.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Tandem-Signature": f"sha256={signature}",
            "X-Tandem-Delivery": message.delivery_id,
        }
        allow_private = settings.allow_private_targets
        try:  # the exact bytes signed are the bytes sent
            checked = targets.check_webhook_url(message.target.address, allow_private=allow_private)
            with targets.safe_session(allow_private) as session:
                r = session.post(
                    checked, data=body, headers=headers, timeout=settings.send_timeout_seconds
                )
        except targets.TargetRefused as e:
            raise SendFailed(f"refused: {e.message}") from None
        except (OSError, requests.RequestException) as e:
            raise SendFailed(f"webhook: {type(e).__name__}") from None
        if not 200 <= r.status_code < 300:
            raise SendFailed(f"webhook answered {r.status_code}")
