"""Native push: a celebration sent to a phone through Firebase Cloud Messaging's
HTTP v1 API, ``POST {FCM_BASE_URL}/v1/projects/{FCM_PROJECT_ID}/messages:send``.

The server authenticates with an OAuth2 access token of a Google service
account (``FCM_CREDENTIALS_FILE``, the JSON key Firebase's console gives),
made and refreshed by google-auth; nothing of it comes from a client. Both
platforms' devices hold FCM registration tokens: the app registers with the
Firebase SDK on Android and on iOS alike (on iOS the SDK hands FCM the APNs
device token, and FCM delivers through APNs). ``platform`` chooses the
message's platform block: ``android`` for ``fcm``, ``apns`` for ``apns``.

What a push says: the email's Subject as its title (never a name: a lock
screen shows it) and the notification's body, cut at a line to fit. Nothing
else of the recipient, the milestone or the partner goes in it.
"""

from __future__ import annotations

import functools
import json
import threading

import requests

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# Characters: at most 4 bytes each in UTF-8, as sent, within the 4 KiB FCM takes a message, whatever
# a folded day lists.
BODY_LIMIT = 700
PLATFORMS = ("fcm", "apns")


class PushFailed(Exception):
    """No push went out this time; it may be tried again."""


class PushRejected(PushFailed):
    """FCM refused the message for good (an invalid argument, another project's token)."""


class Unregistered(PushRejected):
    """FCM no longer knows the token (the app was removed, or its token replaced)."""


class PushUncertain(PushFailed):
    """The request went out and no answer came back: it may have been delivered."""


def fitted(body: str, limit: int = BODY_LIMIT) -> str:
    """``body`` if it fits, else its first whole lines that do, then an ellipsis (pure)."""
    if len(body) <= limit:
        return body
    kept = body[: limit - 2]
    cut = kept.rfind("\n")
    return kept[:cut] + "\n…" if cut > 0 else kept + "…"


def message(token: str, platform: str, title: str, body: str) -> dict:
    """The request body of one push (pure)."""
    msg: dict = {
        "token": token,
        "notification": {"title": title, "body": fitted(body)},
        "data": {"kind": "celebration"},
    }
    if platform == "apns":
        # an alert, sent when the phone's power allows (5): a celebration is never urgent
        msg["apns"] = {
            "headers": {"apns-priority": "5", "apns-push-type": "alert"},
            "payload": {"aps": {"sound": "default"}},
        }
    else:
        msg["android"] = {"priority": "normal"}
    return {"message": msg}


def encoded(msg: dict) -> bytes:
    """The request's bytes: UTF-8, not \\u escapes (six bytes a letter, twelve an emoji)."""
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode()


def _error_code(r: requests.Response) -> str:
    """FCM's error code (``UNREGISTERED``, ``INVALID_ARGUMENT``...) of an error answer, or ''."""
    try:
        error = r.json().get("error") or {}
    except ValueError:
        return ""
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(error.get("status") or "")


class Client:
    """Sends pushes for one FCM project; the access token is kept and refreshed
    as google-auth sees fit (an hour's, by default)."""

    def __init__(
        self, project_id: str, credentials_file: str, base_url: str, token_url: str | None
    ):
        self.url = f"{base_url.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self.credentials_file, self.token_url = credentials_file, token_url
        self._session = None
        self._lock = threading.Lock()

    def _authorized(self, timeout: float):
        from google.auth.transport.requests import AuthorizedSession
        from google.oauth2 import service_account

        with self._lock:
            if self._session is None:
                try:
                    creds = service_account.Credentials.from_service_account_file(
                        self.credentials_file, scopes=[SCOPE]
                    )
                except (
                    OSError,
                    ValueError,
                    KeyError,
                ) as e:  # never the file's content in the reason
                    raise PushFailed(
                        f"push: FCM_CREDENTIALS_FILE cannot be read ({type(e).__name__})"
                    ) from None
                if self.token_url:
                    creds = creds.with_token_uri(self.token_url)
                self._session = AuthorizedSession(creds, refresh_timeout=timeout)
            return self._session

    def send(self, token: str, platform: str, title: str, body: str, timeout: float) -> None:
        """Push one message to one device; raises a PushFailed (or one of its kinds) unless FCM took it."""
        from google.auth import exceptions as auth_errors

        session = self._authorized(timeout)
        try:
            r = session.post(
                self.url,
                data=encoded(message(token, platform, title, body)),
                timeout=timeout,
                headers={"Content-Type": "application/json; charset=UTF-8"},
            )
        except auth_errors.GoogleAuthError as e:  # no access token: nothing was sent
            raise PushFailed(f"push: no access token ({type(e).__name__})") from None
        except requests.ReadTimeout:
            raise PushUncertain(
                "push: no answer once the message was sent; it may have been delivered, "
                "so it is not repeated"
            ) from None
        except requests.RequestException as e:
            raise PushFailed(f"push: {type(e).__name__}") from None
        if 200 <= r.status_code < 300:
            return
        code = _error_code(r)
        if (
            code == "UNREGISTERED"
        ):  # not any 404: a wrong project id is one too, and must remove no device
            raise Unregistered(
                f"push: FCM answered {r.status_code} UNREGISTERED; the device is removed"
            )
        if code in ("INVALID_ARGUMENT", "SENDER_ID_MISMATCH") or r.status_code in (400, 403):
            raise PushRejected(f"push: FCM answered {r.status_code} {code}")
        raise PushFailed(
            f"push: FCM answered {r.status_code} {code}".rstrip()
        )  # 429, 5xx, a certificate: again


@functools.lru_cache(maxsize=4)
def client(project_id: str, credentials_file: str, base_url: str, token_url: str | None) -> Client:
    """One client a configuration, kept for the process (its access token with it)."""
    return Client(project_id, credentials_file, base_url, token_url)
