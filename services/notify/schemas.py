"""The notify API's shapes."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate, validates_schema

from shared.entry_kinds import StrictBoolean

from . import channels as registry

HHMM = validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="Use a 24-hour time like 22:00.")


class Delivery(ma.Schema):
    channel = fields.String()
    status = fields.String(metadata={"description": "pending, delivered or failed"})
    attempts = fields.Integer()
    delivered_at = fields.AwareDateTime(allow_none=True)


class Notification(ma.Schema):
    id = fields.String()
    milestone_id = fields.String()
    title = fields.String()
    body = fields.String()
    created_at = fields.AwareDateTime()
    read_at = fields.AwareDateTime(allow_none=True)
    deliveries = fields.List(fields.Nested(Delivery))


class NotificationPage(ma.Schema):
    items = fields.List(fields.Nested(Notification))
    next_cursor = fields.String(allow_none=True)


class InboxQuery(ma.Schema):
    unread = fields.Boolean(load_default=False)
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    cursor = fields.String(validate=validate.Length(max=200))


class ChannelsPref(ma.Schema):
    in_app = StrictBoolean()
    email = StrictBoolean()
    push = StrictBoolean()


class QuietHours(ma.Schema):
    start = fields.String(required=True, validate=HHMM)
    end = fields.String(required=True, validate=HHMM)

    @validates_schema
    def _not_empty(self, data, **_):
        if data.get("start") == data.get("end"):
            raise ma.ValidationError(
                {"end": ["Quiet hours must not start and end at the same time."]}
            )


class Preferences(ma.Schema):
    channels = fields.Nested(ChannelsPref)
    quiet_hours = fields.Nested(QuietHours, allow_none=True)
    share_milestones_with_partner = StrictBoolean()


class PreferencesPatch(Preferences):
    """Only the fields named change; the rest are kept."""


class _Addable(validate.OneOf):
    """One of the kinds a partner adds here, as the channels registry has them when asked."""

    def __init__(self) -> None:
        super().__init__(())

    choices = property(lambda self: registry.addable(), lambda self, _: None)
    choices_text = property(lambda self: ", ".join(self.choices), lambda self, _: None)


TARGET_FIELDS = ("address", "url")


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


class ChannelCreate(ma.Schema):
    type = fields.String(required=True, validate=_Addable())
    address = fields.Email(
        validate=validate.Length(max=320), metadata={"description": "for type email"}
    )
    url = fields.String(
        validate=validate.Length(min=1, max=2000), metadata={"description": "webhook or apprise"}
    )

    @validates_schema
    def _target_fits_type(self, data, **_):
        channel = registry.get(data.get("type") or "")
        if channel is None:
            return
        if channel.field not in data:
            raise ma.ValidationError(
                {
                    channel.field: [
                        f"{_a(channel.kind).capitalize()} channel needs {_a(channel.field)}."
                    ]
                }
            )
        for other in TARGET_FIELDS:
            if other != channel.field and other in data:
                raise ma.ValidationError(
                    {
                        other: [
                            f"{_a(channel.kind).capitalize()} channel has {_a(channel.field)}, "
                            f"not {_a(other)}."
                        ]
                    }
                )


class Channel(ma.Schema):
    id = fields.String()
    type = fields.String()
    address = fields.String()
    url = fields.String()
    secret = fields.String(
        metadata={"description": "a webhook's HMAC-SHA256 key, shown only when it is created"}
    )
    created_at = fields.AwareDateTime()


class ChannelList(ma.Schema):
    items = fields.List(fields.Nested(Channel))


PUSH_TOKEN = validate.Regexp(
    r"^[A-Za-z0-9_:.\-]+$", error="An FCM registration token has letters, digits and - _ : . only."
)


class DeviceCreate(ma.Schema):
    platform = fields.String(
        required=True,
        validate=validate.OneOf(("fcm", "apns")),
        metadata={
            "description": "fcm (Android) or apns (iOS); both register through the Firebase SDK"
        },
    )
    token = fields.String(
        required=True,
        validate=[validate.Length(min=32, max=4096), PUSH_TOKEN],
        metadata={
            "description": "the app's FCM registration token (on iOS too: the one the "
            "Firebase SDK gives, not the raw APNs token); a secret, never "
            "shown again"
        },
    )


class Device(ma.Schema):
    id = fields.String()
    platform = fields.String()
    token_hint = fields.String(
        metadata={"description": "the token's last 6 characters, after an ellipsis"}
    )
    this_session = fields.Boolean(
        metadata={
            "description": "registered under the login session of the token making this request"
        }
    )
    created_at = fields.AwareDateTime()


class DeviceList(ma.Schema):
    items = fields.List(fields.Nested(Device))
