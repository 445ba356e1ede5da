"""The notify service's HTTP entrypoint."""

from __future__ import annotations

from flask import current_app, g
from flask.views import MethodView

from shared import accounts
from shared.db import unit_of_work
from shared.web import AUTH_DOC, Blueprint

from . import schemas, use_cases
from . import targets as target_rules
from .tables import recipients

inbox = Blueprint("notifications", __name__, url_prefix="/v1", description="The in-app inbox")
prefs = Blueprint("preferences", __name__, url_prefix="/v1", description="How and when to be told")
targets = Blueprint(
    "channels", __name__, url_prefix="/v1", description="Where to be told: email, webhooks, Apprise"
)
phones = Blueprint(
    "devices", __name__, url_prefix="/v1", description="Phones registered for native push (FCM)"
)


def _uow():
    return unit_of_work(current_app.extensions["notify"]["sessions"])


# A token outlives its account by up to its lifetime; it must not bring back what the erasure removed
# (a channel, preferences).
require_account = accounts.require_account(_uow, recipients.c.erased)


@inbox.route("/notifications")
class Inbox(MethodView):
    @inbox.doc(**AUTH_DOC)
    @require_account
    @inbox.arguments(schemas.InboxQuery(), location="query")
    @inbox.response(200, schemas.NotificationPage)
    @inbox.alt_response(401, description="No valid token")
    def get(self, query):
        """The caller's inbox, newest first"""
        with _uow() as s:
            return use_cases.inbox(s, g.partner_id, query)


@inbox.route("/notifications/<uuid:notification_id>/read")
class Read(MethodView):
    @inbox.doc(**AUTH_DOC)
    @require_account
    @inbox.response(200, schemas.Notification)
    @inbox.alt_response(401, description="No valid token")
    @inbox.alt_response(404, description="No such notification the caller may see")
    def post(self, notification_id):
        """Mark a notification read"""
        with _uow() as s:
            return use_cases.mark_read(s, g.partner_id, str(notification_id))


@prefs.route("/preferences")
class PreferencesView(MethodView):
    @prefs.doc(**AUTH_DOC)
    @require_account
    @prefs.response(200, schemas.Preferences)
    @prefs.alt_response(401, description="No valid token")
    def get(self):
        """The caller's preferences"""
        with _uow() as s:
            return use_cases.preferences(s, g.partner_id)

    @prefs.doc(**AUTH_DOC)
    @require_account
    @prefs.arguments(schemas.PreferencesPatch())
    @prefs.response(200, schemas.Preferences)
    @prefs.alt_response(401, description="No valid token")
    def patch(self, changes):
        """Change the fields named, keep the rest"""
        with _uow() as s:
            return use_cases.change_preferences(s, g.partner_id, changes)


ADD_CHANNEL_DOC = (
    "Webhook and Apprise targets must be public addresses (422 naming `url` otherwise). Apprise URLs are "
    "accepted for these schemes only: "
    + ", ".join(f"`{s}://`" for s in target_rules.APPRISE_SCHEMES)
    + "; none may name a file or address to read (`template=`). "
    f"An account has at most {use_cases.MAX_CHANNELS} channels, all types together: "
    "one more is 409 until one is removed."
)


@targets.route("/channels")
class Channels(MethodView):
    @targets.doc(**AUTH_DOC)
    @require_account
    @targets.response(200, schemas.ChannelList)
    @targets.alt_response(401, description="No valid token")
    def get(self):
        """The caller's delivery targets"""
        with _uow() as s:
            return use_cases.list_channels(s, g.partner_id)

    @targets.doc(**AUTH_DOC, description=ADD_CHANNEL_DOC)
    @require_account
    @targets.arguments(schemas.ChannelCreate())
    @targets.response(201, schemas.Channel)
    @targets.alt_response(401, description="No valid token")
    @targets.alt_response(
        409, description=f"The account has {use_cases.MAX_CHANNELS} channels already"
    )
    def post(self, data):
        """Add a delivery target"""
        allow = current_app.extensions["notify"]["settings"].allow_private_targets
        with _uow() as s:
            return use_cases.add_channel(s, g.partner_id, data, allow_private=allow)


@targets.route("/channels/<uuid:channel_id>")
class OneChannel(MethodView):
    @targets.doc(**AUTH_DOC)
    @require_account
    @targets.response(204)
    @targets.alt_response(401, description="No valid token")
    @targets.alt_response(404, description="No such channel the caller may see")
    def delete(self, channel_id):
        """Remove a delivery target"""
        with _uow() as s:
            use_cases.remove_channel(s, g.partner_id, str(channel_id))
        return None


REGISTER_DEVICE_DOC = (
    "Registers the app's FCM registration token (Android and iOS alike: on iOS the one the Firebase SDK gives) "
    "under the login session of the caller's token: ending that session (signing out, a password changed or "
    "reset, a session revoked) removes the device, and so does erasing the account. Celebrations are pushed as "
    "email is sent: in the caller's audience only, after their quiet hours, at most one a day a device, while "
    "`channels.push` is on. A token of no login session, or of one that has ended, is 401: sign in again. "
    "The same token again (the app starts) is 200 and moves it to this session; a token another account "
    "registered becomes the caller's. "
    f"An account has at most {use_cases.MAX_DEVICES} devices: one more is 409 until one is removed. "
    "The token is never shown again, only its last characters."
)


@phones.route("/devices")
class Devices(MethodView):
    @phones.doc(**AUTH_DOC)
    @require_account
    @phones.response(200, schemas.DeviceList)
    @phones.alt_response(401, description="No valid token")
    def get(self):
        """The caller's registered phones"""
        with _uow() as s:
            return use_cases.list_devices(s, g.partner_id, g.session_id)

    @phones.doc(**AUTH_DOC, description=REGISTER_DEVICE_DOC)
    @require_account
    @phones.arguments(schemas.DeviceCreate())
    @phones.response(201, schemas.Device)
    @phones.alt_response(
        200,
        schema=schemas.Device,
        description="Registered by the caller before: now under this login session",
    )
    @phones.alt_response(
        401, description="No valid token, or one of no login session or of an ended one"
    )
    @phones.alt_response(
        409, description=f"The account has {use_cases.MAX_DEVICES} devices already"
    )
    def post(self, data):
        """Register this phone for push"""
        with _uow() as s:
            return use_cases.register_device(s, g.partner_id, g.session_id, data)


@phones.route("/devices/<uuid:device_id>")
class OneDevice(MethodView):
    @phones.doc(**AUTH_DOC)
    @require_account
    @phones.response(204)
    @phones.alt_response(401, description="No valid token")
    @phones.alt_response(404, description="No such device the caller may see")
    def delete(self, device_id):
        """Stop pushing to a phone"""
        with _uow() as s:
            use_cases.remove_device(s, g.partner_id, str(device_id))
        return None


# --- the live inbox: server-sent events (stream.py) ---

import marshmallow as ma  # noqa: E402
from flask import Response, request  # noqa: E402

from . import stream  # noqa: E402


class StreamQuery(ma.Schema):
    since = ma.fields.UUID(
        metadata={"description": "Resume after this notification id (as Last-Event-ID does)"}
    )


STREAM_DOC = {
    "description": "One `notification` event per new notification of the caller, in creation order: "
    "`id:` the notification id, `data:` the notification as the inbox shows it. "
    "A `: keep-alive` comment every 15 s. Resume with the `Last-Event-ID` header or `since`. "
    "The stream ends (after a `: token expired` comment) when the token expires: "
    "reconnect with a fresh one.",
    "content": {
        "text/event-stream": {
            "schema": {"type": "string"},
            "example": 'id: 6f1c...\nevent: notification\ndata: {"id": "6f1c...", '
            '"title": "...", ...}\n\n',
        }
    },
}


@inbox.route("/notifications/stream")
class Stream(MethodView):
    @inbox.doc(**AUTH_DOC, responses={"200": STREAM_DOC})
    @require_account
    @inbox.arguments(StreamQuery(), location="query")
    @inbox.alt_response(401, description="No valid token")
    @inbox.alt_response(
        429, description="Too many live streams open, here or of this account (Retry-After)"
    )
    def get(self, query):
        """New notifications as they arrive (server-sent events), until the token expires"""
        after = (
            str(query["since"])
            if query.get("since")
            else stream.parse_id(request.headers.get("Last-Event-ID"))
        )
        sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
        ext = current_app.extensions["notify"]
        body = stream.events(
            current_app.extensions["tandem"]["engine"],
            ext["sessions"],
            g.partner_id,
            after,
            sock,
            until=g.token_valid_until,
            slots=ext["streams"],
        )
        return Response(body, mimetype="text/event-stream", headers={"X-Accel-Buffering": "no"})
