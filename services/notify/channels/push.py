"""Native push to the phones registered (``POST /v1/devices``), through FCM
(fcm.py). Its targets are devices, not channels: each tied to the login
session it was registered under. Paced, governed by the partner's
``channels.push``, planned only when ``FCM_PROJECT_ID`` is set."""

from __future__ import annotations

from shared.config import push_configured

from .. import celebrate, fcm
from .. import devices as phones
from ..tables import devices
from . import Channel, Message, SendFailed, SendRejected, SendUncertain, Target, Unregistered


class Push(Channel):
    kind = "push"
    paced = True
    switch = "push"
    field = None  # registered through /v1/devices
    table = devices

    def on(self) -> bool:
        return push_configured()  # FCM_PROJECT_ID unset: no native push

    def owns(self, row) -> bool:
        return True

    def forget(self, s, target_id: str) -> None:
        phones.forget(s, devices.c.id == target_id)

    def target(self, row) -> Target:
        return Target(row.id, row.token, platform=row.platform)

    def send(self, message: Message, settings) -> None:
        if not settings.push_on:
            raise SendFailed(
                "no FCM_PROJECT_ID or FCM_CREDENTIALS_FILE for the delivery worker: push is off"
            )
        if message.target is None:  # removed since it was planned (signed out): nothing to send to
            raise SendRejected("push: the device was removed")
        client = fcm.client(
            settings.fcm_project_id,
            settings.fcm_credentials_file,
            settings.fcm_base_url,
            settings.fcm_token_url,
        )
        try:
            client.send(
                message.target.address,
                message.target.platform,
                celebrate.subject_for(message.title),
                message.body,
                settings.send_timeout_seconds,
            )
        except fcm.Unregistered as e:
            raise Unregistered(str(e)) from None
        except fcm.PushRejected as e:
            raise SendRejected(str(e)) from None
        except fcm.PushUncertain as e:
            raise SendUncertain(str(e)) from None
        except fcm.PushFailed as e:
            raise SendFailed(str(e)) from None
