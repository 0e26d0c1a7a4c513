"""Nested settings (a labeler's input sections, a deepmd-kit training template) overlaid on defaults."""

from __future__ import annotations

import copy
from collections.abc import Mapping


def deep_merge(base: dict, override: Mapping) -> dict:
    """Return ``base`` updated recursively by ``override`` (both left untouched)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
