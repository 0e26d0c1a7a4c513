"""MongoDB ``$jsonSchema`` validators generated from the typed records of :mod:`firegen.campaign.records`.

A dataclass field's type gives its ``bsonType``: ``str`` → string, ``int`` → int/long, ``float`` →
any number, ``bool``, ``dict`` → object (``dict[str, R]`` with a record ``R`` checks every value),
``list[X]`` → array of X, a record → an object with its own properties, ``Ref`` → objectId, ``X | None``
adds null, ``Any`` leaves the field unchecked. Fields without a default are required.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache

_NUMBER = ["double", "int", "long", "decimal"]
_SCALARS = {str: ["string"], int: ["int", "long"], float: _NUMBER, bool: ["bool"], dict: ["object"],
            list: ["array"]}


def _with_null(schema: dict) -> dict:
    if "bsonType" in schema:
        kinds = schema["bsonType"] if isinstance(schema["bsonType"], list) else [schema["bsonType"]]
        return {**schema, "bsonType": kinds + ["null"]}
    return {"anyOf": [schema, {"bsonType": "null"}]}


def _of_type(tp) -> dict:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *marks = typing.get_args(tp)
        return {"bsonType": "objectId"} if "objectId" in marks else _of_type(base)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        rest = [a for a in args if a is not type(None)]
        inner = _of_type(rest[0]) if len(rest) == 1 else {"anyOf": [_of_type(a) for a in rest]}
        return _with_null(inner) if len(rest) < len(args) else inner
    if origin is list:
        (item,) = typing.get_args(tp) or (typing.Any,)
        items = _of_type(item)
        return {"bsonType": "array", **({"items": items} if items else {})}
    if origin is dict:
        _, value = typing.get_args(tp) or (str, typing.Any)
        values = _of_type(value)
        return {"bsonType": "object", **({"additionalProperties": values} if values else {})}
    if dataclasses.is_dataclass(tp):
        return bson_schema(tp)
    if tp is typing.Any:
        return {}
    if tp in _SCALARS:
        return {"bsonType": _SCALARS[tp]}
    raise TypeError(f"no bsonType for {tp!r}")


@cache
def bson_schema(record: type) -> dict:
    """The ``$jsonSchema`` of a record dataclass (extra fields allowed: documents grow over time)."""
    hints = typing.get_type_hints(record, include_extras=True)
    props, required = {}, []
    for f in dataclasses.fields(record):
        props[f.name] = _of_type(hints[f.name])
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    schema = {"bsonType": "object", "properties": props}
    return {**schema, "required": required} if required else schema  # MongoDB refuses an empty `required`
