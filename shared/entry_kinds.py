"""The kinds of journal entry and their measures, as the contract fixes them.

One table, read by the journal's HTTP schemas and by the event catalog, so an
entry's fields are defined once.
"""

from __future__ import annotations

from marshmallow import fields, validate

TAG = validate.Regexp(
    r"^[a-z0-9][a-z0-9_]{0,39}$", error="Use a short lowercase tag (a-z, 0-9, _)."
)
TAGS = validate.Length(max=20, error="At most 20 tags.")


def _int(lo: int, hi: int) -> fields.Integer:
    return fields.Integer(strict=True, allow_none=False, validate=validate.Range(lo, hi))


def _tags() -> fields.List:
    return fields.List(fields.String(validate=TAG), validate=TAGS)


class StrictBoolean(fields.Boolean):
    """JSON true or false only: not 1, 0, "true" (1 == True in Python, so a
    truthy set alone would let integers through)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def _bool() -> fields.Boolean:
    return StrictBoolean()


def measure_fields() -> dict[str, fields.Field]:
    """Every kind's measures, fresh field objects each call (marshmallow binds them)."""
    return {
        "intensity": _int(0, 10),
        "duration_minutes": _int(0, 24 * 60),
        "triggers": _tags(),
        "soothing": _tags(),
        "mood": _int(1, 10),
        "anxiety": _int(0, 10),
        "communication": _int(1, 5),
        "connection": _int(1, 5),
        "understanding": _int(1, 5),
        "felt_heard": _int(1, 5),
        "accountability": _bool(),
        "ritual": fields.String(validate=TAG),
        "activity": fields.String(validate=TAG),
        "repaired_at": fields.AwareDateTime(),
    }


# kind -> (its fields, required fields, "at least one of" fields)
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "anxious_episode": (
        ("intensity", "duration_minutes", "triggers", "soothing"),
        ("intensity",),
        (),
    ),
    "daily_reflection": (
        ("mood", "anxiety", "communication"),
        (),
        ("mood", "anxiety", "communication"),
    ),
    "check_in": (("connection", "understanding"), (), ("connection", "understanding")),
    "healing_conversation": (
        ("felt_heard", "accountability"),
        (),
        ("felt_heard", "accountability"),
    ),
    "ritual": (("ritual",), ("ritual",), ()),
    "independence_activity": (("activity",), ("activity",), ()),
    "conflict": (("intensity", "repaired_at"), ("intensity",), ()),
}

ALL_MEASURES: tuple[str, ...] = tuple(measure_fields())


def kind_errors(kind: str, measures: dict) -> dict[str, list[str]]:
    """Field-level errors for measures that do not fit the kind (pure)."""
    allowed, required, one_of = KINDS[kind]
    errors: dict[str, list[str]] = {}
    for name, value in measures.items():
        if name not in allowed and value is not None:
            errors[name] = [f"Not a field of a {kind} entry."]
    for name in required:
        if measures.get(name) is None:
            errors[name] = [f"Missing data for required field (a {kind} entry needs it)."]
    if one_of and all(measures.get(n) is None for n in one_of):
        for name in one_of:
            errors.setdefault(name, []).append(
                f"A {kind} entry needs at least one of: {', '.join(one_of)}."
            )
    return errors
