"""Client-side validation against the collections' ``$jsonSchema`` (see :mod:`firegen.db.schema`).

MongoDB's ``$jsonSchema`` dialect uses ``bsonType``; this module checks it with the ``jsonschema``
package by teaching it the BSON type names, so one schema serves the server and the client.
"""

from __future__ import annotations

import datetime
from functools import lru_cache

import jsonschema
from bson import Decimal128, ObjectId

from firegen.db.errors import SchemaViolation
from firegen.db.schema import LABEL, SPECS

_BSON_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, (list, tuple)),
    "string": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31,
    "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "double": lambda v: isinstance(v, float),
    "decimal": lambda v: isinstance(v, Decimal128),
    "objectId": lambda v: isinstance(v, ObjectId),
    "date": lambda v: isinstance(v, datetime.datetime),
}


def _bson_type(validator, types, instance, schema):
    names = [types] if isinstance(types, str) else types
    if not any(_BSON_TYPES[name](instance) for name in names):
        yield jsonschema.ValidationError(f"{instance!r:.60} is not of BSON type {'/'.join(names)}")


_Validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"bsonType": _bson_type})


@lru_cache(maxsize=None)
def _validator(collection: str):
    return _Validator(SPECS[collection].validator)


def _raise_first(validator, doc: dict, where: str) -> None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path)
        raise SchemaViolation(f"{where}{'.' + path if path else ''}: {error.message}")


def validate_document(collection: str, doc: dict) -> None:
    """Raise :class:`SchemaViolation` naming the field when ``doc`` breaks ``collection``'s schema."""
    _raise_first(_validator(collection), doc, collection)


_LABEL_VALIDATOR = _Validator(LABEL)


def validate_label(label: dict) -> None:
    """Check a label sub-document (energy eV, forces eV/Å, virial eV, code, settings hash)."""
    _raise_first(_LABEL_VALIDATOR, label, "configurations.label")
