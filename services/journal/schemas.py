"""The journal API's shapes: validation, serialisation and the OpenAPI document."""

from __future__ import annotations

import unicodedata
from datetime import UTC
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import marshmallow as ma
from marshmallow import fields, validate, validates_schema

from shared.entry_kinds import ALL_MEASURES, KINDS, kind_errors, measure_fields

# Not zones a person lives in: "localtime" is the host's /etc/localtime, "Factory" a placeholder.
_ZONES = available_timezones() - {"localtime", "Factory"}


def _check_zone(value: str) -> None:
    if value not in _ZONES:
        raise ma.ValidationError("Not an IANA time zone name (e.g. Europe/Paris).")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ma.ValidationError("Not an IANA time zone name (e.g. Europe/Paris).") from None


def _check_display_name(value: str) -> None:
    """A name goes into the partner's emails: no line breaks or other control characters, and no
    RFC 2047 encoded-word marker ("=?"), which some email libraries decode into header text
    (CPython before 3.11.10 and 3.12.5 folded such a name into a new Reply-To or body)."""
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise ma.ValidationError(
            "A display name cannot hold line breaks or other control characters."
        )
    if "=?" in value:
        raise ma.ValidationError('A display name cannot hold "=?".')
    if not value.strip():
        raise ma.ValidationError("A display name needs a visible character.")


NEW_PASSWORD = validate.Length(min=10, max=1024)


class AccountCreate(ma.Schema):
    email = fields.Email(required=True, validate=validate.Length(max=320))
    password = fields.String(required=True, load_only=True, validate=NEW_PASSWORD)
    display_name = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=80), _check_display_name],
        metadata={
            "description": 'shown to the partner and in emails; no control characters, no "=?"'
        },
    )
    timezone = fields.String(required=True, validate=_check_zone)


class Account(ma.Schema):
    id = fields.String()
    email = fields.String()
    display_name = fields.String()
    timezone = fields.String()
    couple_id = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()


def _check_device_name(value: str) -> None:
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise ma.ValidationError(
            "A device name cannot hold line breaks or other control characters."
        )


class Credentials(ma.Schema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=320))
    password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=1024)
    )
    device_name = fields.String(
        validate=[validate.Length(min=1, max=80), _check_device_name],
        metadata={"description": 'shown in the list of sessions, e.g. "Ana\'s phone"'},
    )


class Token(ma.Schema):
    access_token = fields.String()
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer(metadata={"description": "seconds"})
    refresh_token = fields.String(
        metadata={
            "description": "opaque; POST /v1/tokens/refresh exchanges it (once) "
            "for a new access token and a new refresh token"
        }
    )
    session_id = fields.String(metadata={"description": "this device's session (GET /v1/sessions)"})


class Refresh(ma.Schema):
    refresh_token = fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=200)
    )


class SessionOut(ma.Schema):
    id = fields.String()
    device_name = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    last_used_at = fields.AwareDateTime()
    current = fields.Boolean(
        metadata={"description": "the session of the token this list was asked with"}
    )


class SessionQuery(ma.Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    cursor = fields.String(validate=validate.Length(max=200))


class SessionPage(ma.Schema):
    items = fields.List(fields.Nested(SessionOut))
    next_cursor = fields.String(allow_none=True)


class PasswordChange(ma.Schema):
    current_password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=1024)
    )
    new_password = fields.String(required=True, load_only=True, validate=NEW_PASSWORD)


class ResetRequest(ma.Schema):
    email = fields.Email(required=True, validate=validate.Length(max=320))


class ResetConfirm(ma.Schema):
    token = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=200))
    new_password = fields.String(required=True, load_only=True, validate=NEW_PASSWORD)


class Accepted(ma.Schema):
    detail = fields.String()


class Partner(ma.Schema):
    id = fields.String()
    display_name = fields.String()


class Couple(ma.Schema):
    id = fields.String()
    invite_code = fields.String(
        allow_none=True,
        metadata={
            "description": "share it with your partner; null once the couple has two partners"
        },
    )
    invite_expires_at = fields.AwareDateTime(
        allow_none=True,
        metadata={
            "description": "the code works until then (7 days); POST /v1/couples/me/invite makes a new one"
        },
    )
    partners = fields.List(fields.Nested(Partner))


class Join(ma.Schema):
    invite_code = fields.String(required=True, validate=validate.Length(min=1, max=32))


VISIBILITY = validate.OneOf(["private", "shared"])


def _entry_fields() -> dict:
    f = {
        "occurred_at": fields.AwareDateTime(
            required=True, metadata={"example": "2026-11-20T07:30:00+01:00"}
        ),
        "visibility": fields.String(load_default="private", validate=VISIBILITY),
        "note": fields.String(
            allow_none=True,
            validate=validate.Length(max=10_000),
            metadata={"description": "free text; never leaves the journal service"},
        ),
    }
    for name, field in measure_fields().items():
        field.allow_none = True  # null means "not recorded" (and, in a PATCH, "clear it")
        f[name] = field
    return f


class _KindChecked(ma.Schema):
    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _fits_kind(self, data, original, **_):
        if data.get("kind") not in KINDS:
            return  # the kind itself is already reported
        measures = {k: data[k] for k in ALL_MEASURES if k in data}
        # A measure given with a bad value is reported as such, not also as "missing".
        measures.update(
            {
                k: original[k]
                for k in ALL_MEASURES
                if k not in measures and isinstance(original, dict) and original.get(k) is not None
            }
        )
        errors = kind_errors(data["kind"], measures)
        if errors:
            raise ma.ValidationError(errors)


EntryCreate = _KindChecked.from_dict(
    {
        "id": fields.UUID(
            required=True, metadata={"description": "chosen by the client; makes retries safe"}
        ),
        "kind": fields.String(required=True, validate=validate.OneOf(list(KINDS))),
        **_entry_fields(),
    },
    name="EntryCreate",
)


class _Patch(ma.Schema):
    """Fields an author may change; the kind and id are fixed."""


def _patch_fields() -> dict:
    f = _entry_fields()
    f["occurred_at"] = fields.AwareDateTime()
    f["visibility"] = fields.String(validate=VISIBILITY)
    return f


EntryPatch = _Patch.from_dict(_patch_fields(), name="EntryPatch")


class Entry(ma.Schema):
    id = fields.String()
    kind = fields.String()
    author_id = fields.String()
    occurred_at = fields.String(
        metadata={"description": "RFC 3339, with the offset the client gave"}
    )
    local_date = fields.Date()
    visibility = fields.String()
    note = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


EntryOut = Entry.from_dict(
    {name: fields.Raw(allow_none=True) for name in ALL_MEASURES}, name="EntryOut"
)


BATCH_MAX = 500  # entries a batch
BATCH_MAX_BODY = 5 * 1024 * 1024  # bytes: 500 entries of 10 KiB on average


class _EachEntry(fields.Nested):
    """An entry of a batch: documented as ``EntryCreate``, loaded as the object it is, so that
    each is validated on its own (one bad entry never refuses the others)."""

    def _deserialize(self, value, attr, data, partial=None, **kwargs):
        if not isinstance(value, dict):
            raise ma.ValidationError("An entry is a JSON object.")
        return value


class EntryBatch(ma.Schema):
    class Meta:
        items_checked_alone = ("entries",)  # a NUL in one entry refuses that entry alone

    entries = fields.List(
        _EachEntry(EntryCreate),
        required=True,
        validate=validate.Length(max=BATCH_MAX, error=f"At most {BATCH_MAX} entries a batch."),
        metadata={"description": f"up to {BATCH_MAX} entries, each as POST /v1/entries takes it"},
    )


class ItemProblem(ma.Schema):
    """RFC 9457 problem details of one entry of a batch."""

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.Raw())


class BatchResult(ma.Schema):
    id = fields.String(
        allow_none=True, metadata={"description": "the entry's id as sent (null if not a UUID)"}
    )
    status = fields.Integer(
        metadata={
            "description": "as POST /v1/entries would answer: 201 stored, 200 the same entry again, "
            "409 the id holds another entry, 400 or 422 the entry is invalid"
        }
    )
    entry = fields.Nested(EntryOut, metadata={"description": "with 201 and 200"})
    problem = fields.Nested(ItemProblem, metadata={"description": "with any other status"})


class BatchOut(ma.Schema):
    results = fields.List(
        fields.Nested(BatchResult), metadata={"description": "in the request's order"}
    )


def _in_utc_range(value) -> None:
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ma.ValidationError("Out of range.") from None


class EntryQuery(ma.Schema):
    kind = fields.String(validate=validate.OneOf(list(KINDS)))
    since = fields.AwareDateTime(validate=_in_utc_range)
    until = fields.AwareDateTime(validate=_in_utc_range)
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    cursor = fields.String(validate=validate.Length(max=200))

    @validates_schema
    def _window(self, data, **_):
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ma.ValidationError({"until": ["Must not be before since."]})


class EntryPage(ma.Schema):
    items = fields.List(fields.Nested(EntryOut))
    next_cursor = fields.String(allow_none=True)


class Export(ma.Schema):
    account = fields.Nested(Account)
    couple = fields.Nested(Couple, allow_none=True)
    entries = fields.List(fields.Nested(EntryOut))
    exported_at = fields.AwareDateTime()
