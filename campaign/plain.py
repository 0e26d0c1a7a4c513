"""Plain Python data from numpy and friends: what JSON, BSON and the settings hashes take.

One converter for the whole code base: numpy scalars become Python numbers, arrays and tuples
lists, mapping keys text, recursively. What happens to any other type is the caller's choice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

_JSON_SCALARS = (bool, int, float, str, type(None))


def plain(value: Any, other: Literal["keep", "raise", "text"] = "keep", nested_lists: bool = True) -> Any:
    """``value`` with numpy types, tuples and mappings made plain (lists, dicts with text keys, numbers).

    Args:
        value: anything.
        other: what becomes of a value of any other type: ``"keep"`` it as it is (BSON types such as
            ``ObjectId`` or ``datetime`` pass to the database), ``"raise"`` a ``TypeError`` (settings
            that must be JSON), or turn it into its ``"text"`` (``str``).
        nested_lists: False stores a list that holds lists as its JSON text (the results schema keeps
            arrays flat: FerretDB 1.x rejects nested arrays).
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v, other, nested_lists) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if not nested_lists and any(isinstance(v, (list, tuple, np.ndarray)) for v in value):
            return json.dumps(plain(value, other))
        return [plain(v, other, nested_lists) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, _JSON_SCALARS) or other == "keep":
        return value
    if other == "text":
        return str(value)
    raise TypeError(f"setting value {value!r} of type {type(value).__name__} is not JSON-serialisable")
