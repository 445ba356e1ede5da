"""What a use case can refuse, in the user's terms; the web layer turns each
into an RFC 9457 problem with the right status."""

from __future__ import annotations


class Refused(Exception):
    status = 400

    def __init__(
        self,
        detail: str,
        *,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


class NotFound(Refused):
    status = 404


class Forbidden(Refused):
    status = 403


class NotAcceptable(Refused):
    status = 406


class Conflict(Refused):
    status = 409


class Invalid(Refused):
    status = 422


class Unauthorized(Refused):
    status = 401


class Throttled(Refused):
    status = 429

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail, headers={"Retry-After": str(max(1, int(retry_after)))})
