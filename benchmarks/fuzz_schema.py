"""Where a leaf of a campaign YAML sits in firegen's config schema, and the mutations that follow from it
(``fuzz_mutations.py`` makes the rest): a bool, text, NaN, an integer beyond int64 or a fraction where the
schema means a number, a documented bound passed, a required key dropped or null, an unknown key, the wrong
container, an empty list where one item is the least. Each is invalid in a strict schema whatever the value.
"""

from __future__ import annotations

import math
import random
import typing
from typing import Any

FREE = ("committee.training", "labeler.settings")  # free-form mappings: not schema-typed leaves


# ---- where a YAML leaf sits in the schema -----------------------------------------------------------------
def _unwrap(annotation: Any, metadata: list) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        for extra in args[1:]:
            metadata.extend(getattr(extra, "metadata", None) or [extra])
        annotation = args[0]
    return annotation


def _pick(annotation: Any, value: Any, metadata: list) -> Any:
    """The member of a union that fits ``value`` (None dropped)."""
    annotation = _unwrap(annotation, metadata)
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType")):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        for member in members:
            base = typing.get_origin(_unwrap(member, [])) or _unwrap(member, [])
            if (isinstance(value, list) and base is list) or (isinstance(value, dict) and base in (dict,)) or \
                    (isinstance(value, dict) and isinstance(base, type) and hasattr(base, "model_fields")) or \
                    (isinstance(value, (int, float)) and base in (int, float)) or (isinstance(value, str) and base is str):
                return _unwrap(member, metadata)
        return _unwrap(members[0], metadata)
    return annotation


def schema_of(path: tuple, data: dict) -> tuple[str, list, Any]:
    """(kind, constraints, FieldInfo of the last named field) of the config leaf at ``path``; kind is int,
    float, bool, str, list, model, dict, free or other."""
    from firegen.campaign.config import CampaignConfig

    annotation: Any = CampaignConfig
    node: Any = data
    metadata: list = []
    info = None
    for part in path:
        node = node[part]
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            fields = {f.alias or n: f for n, f in annotation.model_fields.items()}
            info = fields.get(part)
            if info is None:
                return "other", [], None
            metadata = list(info.metadata)
            annotation = _pick(info.annotation, node, metadata)
        else:
            origin, args = typing.get_origin(annotation), typing.get_args(annotation)
            metadata = []
            if origin is list and isinstance(part, int):
                annotation = _pick(args[0], node, metadata)
            elif origin is dict and isinstance(part, str):
                if args[1] is Any:
                    return "free", [], info
                annotation = _pick(args[1], node, metadata)
            else:
                return "other", [], info
    origin = typing.get_origin(annotation)
    if annotation in (int, float, bool, str):
        return annotation.__name__, metadata, info
    if origin is list:
        return "list", metadata, info
    if origin is dict:
        return ("free" if typing.get_args(annotation)[1] is Any else "dict"), metadata, info
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return "model", metadata, info
    return "other", metadata, info


def _loc(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _leaves(data: Any, path: tuple = ()):
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _leaves(value, path + (i,))


def _set(data: Any, path: tuple, value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def _bound_breaker(kind: str, metadata: list) -> Any | None:
    """A number just past a documented bound (gt/ge/lt/le), or None when the field has none."""
    for m in metadata:
        for attr, step in (("gt", 0), ("ge", -1), ("lt", 0), ("le", 1)):
            bound = getattr(m, attr, None)
            if isinstance(bound, (int, float)) and not isinstance(bound, bool):
                value = bound + step if attr in ("ge", "le") else bound
                return int(value) if kind == "int" else float(value)
    return None


def yaml_schema_mutation(rng: random.Random, cfg: dict) -> tuple[str, bool, list[str]] | None:
    """Mutate ``cfg`` in place by the schema: type confusions (always invalid in a strict schema), a bound
    broken, a required key removed, an unknown key; or a value changed inside its bounds (valid)."""
    leaves = [(p, v) for p, v in _leaves(cfg) if p and not _loc(p).startswith(FREE)]
    for _ in range(50):
        path, value = rng.choice(leaves)
        kind, metadata, info = schema_of(path, cfg)
        loc = _loc(path)
        op = rng.choice(["bool", "text", "nonfinite", "int64", "float_for_int", "bound", "unknown_key",
                         "drop_required", "null_required", "container", "empty_list"])
        if kind in ("int", "float") and not isinstance(value, bool):
            if op == "bool":
                _set(cfg, path, rng.choice([True, False]))
                return "bool-as-number", False, [loc]
            if op == "text":
                _set(cfg, path, str(value))
                return "number-as-text", False, [loc]
            if op == "nonfinite":
                _set(cfg, path, rng.choice([math.nan, math.inf, -math.inf]))
                return "nan-or-inf", False, [loc]
            if op == "int64" and kind == "int":
                _set(cfg, path, rng.choice([2**63, 2**70, -(2**63) - 1]))
                return "beyond-int64", False, [loc]
            if op == "float_for_int" and kind == "int":
                _set(cfg, path, value + 0.5)
                return "fraction-for-int", False, [loc]
            bad = _bound_breaker(kind, metadata) if op == "bound" else None
            if bad is not None:
                _set(cfg, path, bad)
                return "past-bound", False, [loc]
        if kind == "str" and op == "bool" and info is not None and not getattr(info, "metadata", None):
            _set(cfg, path, rng.choice([True, 12, 1.5]))
            return "number-as-text-field", False, [loc]
        if kind == "model" and isinstance(value, dict):
            if op == "unknown_key":
                value["zz_unknown"] = 1
                return "unknown-key", False, [_loc(path + ("zz_unknown",))]
            if op == "container":
                _set(cfg, path, [1, 2])
                return "list-for-mapping", False, [loc]
            if op in ("drop_required", "null_required"):
                model = _model_at(path, cfg)
                required = [(f.alias or n) for n, f in model.model_fields.items() if f.is_required()
                            and (f.alias or n) in value] if model else []
                if required:
                    key = rng.choice(required)
                    if op == "drop_required":
                        del value[key]
                    else:
                        value[key] = None
                    return op.replace("_", "-"), False, [_loc(path + (key,))]
        if kind == "list" and isinstance(value, list):
            if op == "container":
                _set(cfg, path, {"zz_unknown": 1})
                return "mapping-for-list", False, [loc]
            min_len = [getattr(m, "min_length", None) for m in metadata]
            if op == "empty_list" and any(isinstance(n, int) and n >= 1 for n in min_len):
                _set(cfg, path, [])
                return "empty-list", False, [loc]
    return None


def _model_at(path: tuple, cfg: dict):
    from firegen.campaign.config import CampaignConfig

    if not path:
        return CampaignConfig
    kind, metadata, info = schema_of(path, cfg)
    if kind != "model" or info is None:
        return None
    annotation = _pick(info.annotation, _get(cfg, path), [])
    if typing.get_origin(annotation) is list:
        annotation = _pick(typing.get_args(annotation)[0], _get(cfg, path), [])
    return annotation if isinstance(annotation, type) and hasattr(annotation, "model_fields") else None
