"""The notify API's shapes."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate, validates_schema

from shared.entry_kinds import StrictBoolean

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


CHANNEL_TYPES = ("email", "webhook", "apprise")


class ChannelCreate(ma.Schema):
    type = fields.String(required=True, validate=validate.OneOf(CHANNEL_TYPES))
    address = fields.Email(
        validate=validate.Length(max=320), metadata={"description": "for type email"}
    )
    url = fields.String(
        validate=validate.Length(min=1, max=2000), metadata={"description": "webhook or apprise"}
    )

    @validates_schema
    def _target_fits_type(self, data, **_):
        kind = data.get("type")
        if kind == "email" and "address" not in data:
            raise ma.ValidationError({"address": ["An email channel needs an address."]})
        if kind in ("webhook", "apprise") and "url" not in data:
            raise ma.ValidationError({"url": [f"A {kind} channel needs a url."]})
        if kind == "email" and "url" in data:
            raise ma.ValidationError({"url": ["An email channel has an address, not a url."]})
        if kind in ("webhook", "apprise") and "address" in data:
            raise ma.ValidationError({"address": [f"A {kind} channel has a url, not an address."]})


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
