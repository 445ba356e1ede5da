"""A local stand-in for Firebase Cloud Messaging: Google's OAuth2 token endpoint
and FCM's HTTP v1 send, on 127.0.0.1, checking each request as the platform
would receive it.

The token endpoint verifies the service account's signed assertion (RS256,
with the public half of the key in the credentials file it made) and hands
out an access token; the send endpoint wants that token as its bearer, the
project's path, and a message of the shape FCM takes. What it got is in
``messages``; what it found wrong in ``problems`` (a test asserts it empty).
A token in ``unregistered`` is answered 404 ``UNREGISTERED``, as FCM answers a
token whose app was removed."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROJECT = "tandem-standin"
CLIENT_EMAIL = "push-sender@tandem-standin.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_AUDIENCE = (
    "https://oauth2.googleapis.com/token"  # an assertion's aud, wherever it is sent
)
# In every push token the tests make: the suite's output is read for it (tests/conftest.py).
TOKEN_MARKER = "pushtokensecret"
UNREGISTERED = {
    "error": {
        "code": 404,
        "message": "Requested entity was not found.",
        "status": "NOT_FOUND",
        "details": [
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "UNREGISTERED",
            }
        ],
    }
}


def push_token(label: str = "") -> str:
    """A made-up FCM registration token: about the length and alphabet of a real one."""
    return f"{label or uuid.uuid4().hex[:8]}:APA91b{TOKEN_MARKER}-{uuid.uuid4().hex}{uuid.uuid4().hex}_x"


class FcmStandIn:
    def __init__(self, folder: Path):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.messages: list[dict] = []  # each accepted message, as sent ({"message": ...})
        self.problems: list[str] = []
        self.unregistered: set[str] = set()
        self.access_tokens: set[str] = set()
        self.token_requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/token":
                    return self._answer(*outer._token(body))
                if not self.headers.get("Content-Type", "").startswith("application/json"):
                    outer.problems.append(
                        f"send: Content-Type {self.headers.get('Content-Type')!r}"
                    )
                return self._answer(
                    *outer._send(self.path, self.headers.get("Authorization", ""), body)
                )

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        self.token_url = f"{self.base_url}/token"
        self.credentials_file = folder / "fcm-service-account.json"
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.credentials_file.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": PROJECT,
                    "private_key_id": "standin-key-1",
                    "private_key": pem,
                    "client_email": CLIENT_EMAIL,
                    "client_id": "1",
                    "token_uri": self.token_url,
                }
            )
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def env(self) -> dict[str, str]:
        """The notify service's configuration to push here."""
        return {
            "FCM_PROJECT_ID": PROJECT,
            "FCM_CREDENTIALS_FILE": str(self.credentials_file),
            "FCM_BASE_URL": self.base_url,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sent_to(self, token: str) -> list[dict]:
        return [m["message"] for m in list(self.messages) if m["message"].get("token") == token]

    # --- Google's OAuth2 token endpoint (the JWT bearer grant, RFC 7523) ---

    def _token(self, body: bytes) -> tuple[int, dict]:
        self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            self.problems.append(f"token: grant_type {form.get('grant_type')!r}")
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self.key.public_key(),
                algorithms=["RS256"],
                audience=GOOGLE_TOKEN_AUDIENCE,
                issuer=CLIENT_EMAIL,
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except jwt.PyJWTError as e:
            self.problems.append(f"token: assertion refused ({type(e).__name__})")
            return 400, {"error": "invalid_grant"}
        if claims.get("scope") != SCOPE:
            self.problems.append(f"token: scope {claims.get('scope')!r}")
            return 400, {"error": "invalid_scope"}
        access = f"ya29.standin-{uuid.uuid4().hex}"
        self.access_tokens.add(access)
        return 200, {"access_token": access, "expires_in": 3600, "token_type": "Bearer"}

    # --- FCM's HTTP v1 send ---

    def _send(self, path: str, authorization: str, body: bytes) -> tuple[int, dict]:
        if path != f"/v1/projects/{PROJECT}/messages:send":
            self.problems.append(f"send: path {path}")
            return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "no such path"}}
        scheme, _, access = authorization.partition(" ")
        if scheme != "Bearer" or access not in self.access_tokens:
            self.problems.append("send: no access token of the token endpoint's")
            return 401, {
                "error": {"code": 401, "status": "UNAUTHENTICATED", "message": "bad credentials"}
            }
        try:
            sent = json.loads(body)
            msg = sent["message"]
            token, note = msg["token"], msg["notification"]
            assert (
                isinstance(token, str)
                and token
                and isinstance(note["title"], str)
                and note["title"]
            )
            assert isinstance(note["body"], str) and note["body"]
            assert set(sent) == {"message"}
            assert set(msg) <= {"token", "notification", "data", "android", "apns"}, set(msg)
            assert all(isinstance(v, str) for v in msg.get("data", {}).values()), (
                "data values are strings"
            )
            assert len(body) <= 4096, "over FCM's 4 KiB"
        except (ValueError, KeyError, TypeError, AssertionError) as e:
            self.problems.append(f"send: not a message FCM takes ({type(e).__name__}: {e})")
            return 400, {
                "error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "bad message"}
            }
        if token in self.unregistered:
            return 404, UNREGISTERED
        self.messages.append(sent)
        return 200, {"name": f"projects/{PROJECT}/messages/{uuid.uuid4().hex}"}
