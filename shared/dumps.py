"""A marshmallow schema's ``dump`` of dicts, compiled once into one step a field.

``Schema.dump`` reaches each value through its accessor machinery (an attribute or
a key, dotted paths, defaults) before the field formats it: most of a dump's time
where the objects are plain dicts, as every answer and event built here is. A
compiled dump takes each value from the dict by its key and formats it with the
field's own ``_serialize``, so its output is the schema's (a test compares the two
on every shape it is used for); a nested schema is compiled too. A schema it does
not cover (dump hooks, defaults, renamed attributes, fields that read no attribute)
is dumped by marshmallow itself, as is anything that is not a dict.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields, missing
from marshmallow.decorators import POST_DUMP, PRE_DUMP

Dump = Callable[[Any], Any]


def _plain(field: fields.Field) -> bool:
    """The field's value is its key's in the dict, or nothing when the key is absent."""
    return (
        field._CHECK_ATTRIBUTE
        and field.dump_default is missing
        and (field.attribute is None or "." not in field.attribute)
    )


def _nested(field: fields.Field) -> Dump | None:
    """A compiled dump of a nested schema's value (one object or a list of them), or None."""
    if type(field) is not fields.Nested or not isinstance(field.schema, Schema):
        return None
    one = compiled(field.schema)
    if field.schema.many or field.many:
        return lambda value: None if value is None else [one(v) for v in value]
    return lambda value: None if value is None else one(value)


# Fields whose ``_serialize`` gives back a value of this type as it is (Raw: any value): such a
# value is taken without a call. By exact class: a subclass may format differently.
_KEPT_AS_IS: dict[type, type | None] = {
    fields.Raw: None,
    fields.String: str,
    fields.Email: str,
    fields.UUID: str,
    fields.Integer: int,
    fields.Boolean: bool,
}
_ANY = object()  # a type no value has: always formatted by its step


def _kept(field: fields.Field) -> Any:
    """The type of the values the field keeps as they are (None: every value), or ``_ANY``."""
    return _KEPT_AS_IS.get(type(field), _ANY)


def _step(field: fields.Field, attr: str) -> Callable[[Any, dict], Any]:
    """How one field formats its value (the field's own ``_serialize``, or a compiled nested dump)."""
    nested = _nested(field)
    if nested is not None:
        return lambda value, _obj: nested(value)
    if type(field) is fields.List and (inner := _nested(field.inner)) is not None:
        return lambda value, _obj: None if value is None else [inner(v) for v in value]
    serialize = field._serialize
    return lambda value, obj: serialize(value, attr, obj)


def compiled(schema: Schema) -> Dump:
    """``schema.dump`` for one dict (or, for a ``many`` schema, a list of them), compiled."""
    return _compiled(schema)


@functools.cache
def _compiled(schema: Schema) -> Dump:
    hooks = schema._hooks
    if hooks[PRE_DUMP] or hooks[POST_DUMP] or not all(map(_plain, schema.dump_fields.values())):
        return schema.dump
    steps = tuple(
        (
            field.attribute or name,
            field.data_key if field.data_key is not None else name,
            _kept(field),
            _step(field, name),
        )
        for name, field in schema.dump_fields.items()
    )
    dict_class = schema.dict_class

    def dump_one(obj: Any) -> Any:
        if not isinstance(obj, dict):
            return schema.dump(obj, many=False)
        out = dict_class()
        for attr, key, kept, step in steps:
            value = obj.get(attr, missing)
            if value is missing:
                continue
            out[key] = value if kept is None or type(value) is kept else step(value, obj)
        return out

    if schema.many:
        return lambda objs: [dump_one(o) for o in objs]
    return dump_one
