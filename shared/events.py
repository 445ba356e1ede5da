"""The event catalog: every event on the ``progress`` exchange, in one place.

Each event is a CloudEvents 1.0 envelope in structured JSON mode; its ``type``
is also its routing key. Reading ``CATALOG`` tells the whole flow. Data schemas
load with ``EXCLUDE`` so that a producer adding an optional field (the contract
grows only by adding) never breaks a consumer.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from shared import dumps
from shared.entry_kinds import KINDS, measure_fields

CONTENT_TYPE = "application/cloudevents+json"
SOURCES = ("/journal", "/milestones", "/notify")


class EventData(Schema):
    class Meta:
        unknown = EXCLUDE


class PartnerRegistered(EventData):
    partner_id = fields.UUID(required=True)
    email = fields.Email(required=True)
    display_name = fields.String(required=True)
    timezone = fields.String(required=True)


class CouplePartnered(EventData):
    couple_id = fields.UUID(required=True)
    partner_ids = fields.List(fields.UUID(), required=True, validate=validate.Length(min=1, max=2))


class _EntryData(EventData):
    entry_id = fields.UUID(required=True)
    couple_id = fields.UUID(required=True, allow_none=True)
    partner_id = fields.UUID(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    occurred_at = fields.AwareDateTime(required=True)
    local_date = fields.Date(required=True)
    visibility = fields.String(required=True, validate=validate.OneOf(["private", "shared"]))


class Batch(Schema):
    """The batch an entry was recorded in (``POST /v1/entries/batch``): its id, and how
    many entries it stored (each with its own event). A consumer may wait for all of
    them before judging a history the batch changed, and never needs to."""

    id = fields.UUID(required=True)
    size = fields.Integer(required=True, validate=validate.Range(min=1))


class _RecordedData(_EntryData):
    batch = fields.Nested(Batch)  # optional: only an entry recorded in a batch has one


# The kind's measures ride along; `note` is deliberately not a field, so it
# can never be serialised into an event.
EntryRecorded = _RecordedData.from_dict(measure_fields(), name="EntryRecorded")
EntryRevised = _EntryData.from_dict(measure_fields(), name="EntryRevised")


class EntryDeleted(EventData):
    entry_id = fields.UUID(required=True)
    couple_id = fields.UUID(required=True, allow_none=True)
    partner_id = fields.UUID(required=True)


class PartnerErased(EventData):
    partner_id = fields.UUID(required=True)
    couple_id = fields.UUID(required=True, allow_none=True)


SESSION_END_REASONS = ("logout", "revoked", "reuse_detected", "password_changed", "password_reset")


class SessionEnded(EventData):
    """A device's session ended: logged out from it (``logout``), ended from another device
    (``revoked``), its retired refresh token presented again (``reuse_detected``), or ended by a
    password change (the partner's other sessions) or a password reset (all of them). Its
    access tokens (claim ``sid``) are still accepted until they expire; nothing may be sent to
    that device any more."""

    partner_id = fields.UUID(required=True)
    session_id = fields.UUID(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(SESSION_END_REASONS))


class PasswordResetRequested(EventData):
    """A reset link to send to the account's own email address, once, at once (no pacing, no
    quiet hours, no inbox). ``token`` is the secret of the link: single use, valid until
    ``expires_at``; never logged, never stored but to send it, and its outbox row is deleted
    once published (``SECRET_TYPES``). No other personal data rides along."""

    partner_id = fields.UUID(required=True)
    token = fields.String(required=True, validate=validate.Length(min=32, max=128))
    expires_at = fields.AwareDateTime(required=True)


class _Window(Schema):
    start = fields.Date()
    end = fields.Date()


class _Period(Schema):
    start = fields.Date(required=True)
    end = fields.Date(required=True)
    value = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=0))


class Picture(Schema):
    """What a celebration shows: two periods compared, each one's figure in the partner's own units.

    ``unit``: the words for the figure ("anxious moments a week");
    ``better``: whether the later figure is better "lower" or "higher";
    ``scale``: a rating's maximum (absent for a rate a week); ``periods``: the
    earlier and the later period, ``{start, end, value}`` (local dates). A
    couple's milestone holds only numbers from both partners' shared entries
    together, never one partner's, a week's or a tag's.
    """

    unit = fields.String(required=True, validate=validate.Length(min=1, max=80))
    better = fields.String(required=True, validate=validate.OneOf(["lower", "higher"]))
    scale = fields.Integer(validate=validate.Range(min=1))
    periods = fields.List(fields.Nested(_Period), required=True, validate=validate.Length(equal=2))


class MilestoneAchieved(EventData):
    """A milestone level achieved and announced: one event per look and milestone, at the highest level
    reached on it (lower levels reached on the same look are stored, not announced). ``picture`` (optional,
    :class:`Picture`): what the celebration's chart shows; absent for milestones without one (rituals kept,
    the check-in rhythm). ``evidence``: the rule's own account, its shape the rule's."""

    id = fields.UUID(required=True)
    type = fields.String(required=True)
    level = fields.Integer(required=True)
    couple_id = fields.UUID(required=True, allow_none=True)
    partner_id = fields.UUID(required=True, allow_none=True)
    achieved_at = fields.AwareDateTime(required=True)
    headline = fields.String(required=True)
    evidence = fields.Dict(required=True)
    audience = fields.List(fields.UUID(), required=True)
    picture = fields.Nested(Picture)


class PreferencesChanged(EventData):
    partner_id = fields.UUID(required=True)
    share_milestones_with_partner = fields.Boolean(required=True)


class NotificationDelivered(EventData):
    notification_id = fields.UUID(required=True)
    milestone_id = fields.UUID(required=True)
    partner_id = fields.UUID(required=True)
    channel = fields.String(required=True)


class NotificationFailed(NotificationDelivered):
    reason = fields.String(required=True)


CATALOG: dict[str, type[Schema]] = {
    "journal.partner.registered": PartnerRegistered,
    "journal.couple.partnered": CouplePartnered,
    "journal.entry.recorded": EntryRecorded,
    "journal.entry.revised": EntryRevised,
    "journal.entry.deleted": EntryDeleted,
    "journal.partner.erased": PartnerErased,
    "journal.session.ended": SessionEnded,
    "journal.password.reset_requested": PasswordResetRequested,
    "milestones.milestone.achieved": MilestoneAchieved,
    "notify.preferences.changed": PreferencesChanged,
    "notify.notification.delivered": NotificationDelivered,
    "notify.notification.failed": NotificationFailed,
}

# Each type's producer, the only `source` it may come from: a type's first word
# names the service that publishes it, and that service's broker user alone may
# publish on its routing keys (topology.permissions). A consumer dead-letters
# an event whose source is another's.
PRODUCERS: dict[str, str] = {type_: "/" + type_.partition(".")[0] for type_ in CATALOG}
assert set(PRODUCERS.values()) <= set(SOURCES), "every producer is a service of the contract"

# Types whose data holds a secret: their outbox row is deleted as soon as it is published
# (shared.outbox), never kept for the operator like the others.
SECRET_TYPES = frozenset({"journal.password.reset_requested"})


class Envelope(Schema):
    class Meta:
        unknown = EXCLUDE  # CloudEvents extension attributes are allowed

    specversion = fields.String(required=True, validate=validate.Equal("1.0"))
    id = fields.UUID(required=True)
    source = fields.String(required=True, validate=validate.Length(min=1))
    type = fields.String(required=True, validate=validate.OneOf(CATALOG))
    time = fields.AwareDateTime(required=True)
    subject = fields.String(required=True, validate=validate.Length(min=1))
    datacontenttype = fields.String(
        load_default="application/json", validate=validate.Equal("application/json")
    )
    data = fields.Dict(required=True)


@dataclass(frozen=True)
class Event:
    """A parsed event: the envelope's attributes and its loaded data."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]
    raw: dict[str, Any]

    @property
    def routing_key(self) -> str:
        return self.type


class BadEvent(ValueError):
    """A message that is not a valid event of the catalog: never retried."""


# One instance of each schema, made once: a schema is not changed by load or
# dump, and making one (its fields deep-copied) costs more than using it.
@functools.cache
def _data_schema(type_: str):
    return CATALOG[type_]()


@functools.cache
def _envelope():
    return Envelope()


# The shapes (type, keys, the types of their values) of data built from validated input that the
# catalog's schema has accepted in this process: see ``make_event``'s ``from_validated``.
_ACCEPTED_SHAPES: set[tuple] = set()
_SHAPES_KEPT = 4096  # at most; beyond, forgotten all at once (and each checked again once)


def _form(value: Any) -> Any:
    """What a value's shape records: its type; a datetime's awareness; a dict's shape; the types in a list."""
    if isinstance(value, dict):
        return tuple((k, _form(v)) for k, v in value.items())
    if isinstance(value, datetime):
        return datetime, value.tzinfo is None
    if isinstance(value, list):
        return list, frozenset(map(type, value))
    return type(value)


def _shape(type_: str, data: dict[str, Any]) -> tuple:
    return type_, _form(data)


def _dumped(type_: str, items: list[dict[str, Any]], from_validated: bool) -> list[dict[str, Any]]:
    """Each data serialised by the catalog schema of its type (a compiled dump, ``shared.dumps``),
    once checked to fit it: every one, or with ``from_validated`` the first of each shape (the
    keys and the types of the values given) in this process (see ``make_event``)."""
    schema = _data_schema(type_)
    dump = dumps.compiled(schema)
    dumped = [dump(data) for data in items]
    new: dict[tuple, dict[str, Any]] = {}
    if from_validated:
        for data, out in zip(items, dumped):
            if (shape := _shape(type_, data)) not in _ACCEPTED_SHAPES:
                new.setdefault(shape, out)
    checked = list(new.values()) if from_validated else dumped
    errors = schema.validate(checked, many=True) if checked else None
    if errors:
        raise ValueError(f"{type_} data does not fit the catalog: {errors}")
    if new:
        if len(_ACCEPTED_SHAPES) + len(new) > _SHAPES_KEPT:
            _ACCEPTED_SHAPES.clear()
        _ACCEPTED_SHAPES.update(new)
    return dumped


def _envelope_of(
    type_: str, source: str, subject: str, data: dict, event_id: str | None, stamp: str
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": type_,
        "time": stamp,
        "subject": str(subject),
        "datacontenttype": "application/json",
        "data": data,
    }


def make_event(
    type_: str,
    *,
    source: str,
    subject: str,
    data: dict[str, Any],
    event_id: str | None = None,
    time: datetime | None = None,
    from_validated: bool = False,
) -> dict[str, Any]:
    """Build a CloudEvent dict, its data checked and serialised by the catalog schema.

    ``from_validated``: the producer built `data` from input its own schema validated with the
    catalog's fields (an entry's event: the entry's ``EntryCreate``, whose measures are the
    catalog's, with ids and dates of the service's own making), so its values are the catalog's
    already; what such code can still get wrong is the shape (a field missing, renamed, of another
    type). Then the data is validated the first time its shape (its keys and the types of their
    values) is seen in this process, and later data of that shape is not validated again."""
    (dumped,) = _dumped(type_, [data], from_validated)
    stamp = (time or datetime.now(UTC)).isoformat()
    return _envelope_of(type_, source, subject, dumped, event_id, stamp)


def make_events(
    type_: str,
    *,
    source: str,
    items: list[tuple[str, dict[str, Any]]],
    from_validated: bool = False,
) -> list[dict[str, Any]]:
    """CloudEvents of one type, ``(subject, data)`` each, their data checked and serialised by
    the catalog schema all at once (a batch of entries: a fraction of one call each).
    ``from_validated``: as ``make_event``'s."""
    dumped = _dumped(type_, [data for _, data in items], from_validated)
    stamp = datetime.now(UTC).isoformat()
    return [
        _envelope_of(type_, source, subject, data, None, stamp)
        for (subject, _), data in zip(items, dumped)
    ]


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse(body: bytes | str | dict) -> Event:
    """Parse and validate an event from the wire; raise BadEvent if it is not one."""
    try:
        raw = body if isinstance(body, dict) else json.loads(body)
        if not isinstance(raw, dict):
            raise BadEvent("an event is a JSON object")
        env = _envelope().load(raw)
        data = _data_schema(env["type"]).load(env["data"])
    except (ValueError, TypeError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise BadEvent(str(e)[:500]) from None
    except ValidationError as e:
        raise BadEvent(json.dumps(e.messages, default=str)[:500]) from None
    return Event(
        id=str(env["id"]),
        type=env["type"],
        source=env["source"],
        subject=env["subject"],
        time=env["time"],
        data=data,
        raw=raw,
    )
