"""One-line errors of a config: ``<file>: <field>: <msg> (got <value>). Fix: <fix>.``

:class:`ConfigError` carries them; :func:`error_line` writes one; :func:`pydantic_lines` turns pydantic's
validation errors into them, naming the field as the user wrote it and the fix its ``Field`` documents (the
models are in ``config.py`` and the ``config_*`` modules). DP-GEN's converter writes its errors with the same
:func:`error_line`.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from .config_fields import NOTHING
from .config_fields import one_line as _one_line
from .errors import FatalError


class ConfigError(FatalError):
    """A bad config; `str(err)` is one line per problem: `<file>: <field>: <msg>. Fix: <fix>.`"""

    def __init__(self, lines: list[str]):
        self.lines = list(dict.fromkeys(lines))
        super().__init__("\n".join(self.lines))


_MESSAGES = {
    "missing": "is required", "extra_forbidden": "unknown key",
    "greater_than": "must be greater than {gt}", "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}", "less_than_equal": "must be at most {le}",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "literal_error": "must be one of {expected}", "string_pattern_mismatch": "is not allowed",
    "list_type": "must be a list", "string_type": "must be text",
    **dict.fromkeys(["int_parsing", "int_type", "int_from_float"], "must be a whole number"),
    **dict.fromkeys(["float_parsing", "float_type"], "must be a number"),
    "finite_number": "must be a finite number (not NaN or infinity)",
    **dict.fromkeys(["dict_type", "model_type", "model_attributes_type"], "must be a mapping"),
    **dict.fromkeys(["bool_type", "bool_parsing"], "must be true or false"),
}


def _show(value: Any) -> str:
    if isinstance(value, str):
        return _one_line(repr(value), 80)
    try:
        return _one_line(json.dumps(value, default=str), 80)
    except (TypeError, ValueError):
        return _one_line(repr(value), 80)


def join_loc(base: str, rel: str) -> str:
    """A field path below ``base``: ``join_loc("committee", "training.loss")``, ``join_loc("systems", "[0]")``."""
    if not rel:
        return base
    if not base or rel.startswith("["):
        return base + rel
    return f"{base}.{rel}"


_UNION_TAG = re.compile(r"^(str|int|float|bool|none|(constrained|function|lax|json|literal|list|dict|tuple|chain)"
                        r"[-\w]*(\[.*\])?)$")


def _drop_union_tags(loc: tuple) -> tuple:
    """``loc`` less the names pydantic gives the members of a union (``species.list[str][1]`` → ``species[1]``)."""
    return tuple(p for p in loc if not (isinstance(p, str) and _UNION_TAG.match(p)))


def _loc_str(loc: tuple) -> str:
    out = ""
    for part in loc:
        out = join_loc(out, f"[{part}]" if isinstance(part, int) else str(part))
    return out


def error_line(source: str, loc: str, msg: str, got: Any = NOTHING, fix: str = "") -> str:
    where = f"{source}: {loc}: " if loc else f"{source}: "
    got_s = "" if got is NOTHING else f" (got {_show(got)})"
    fix = fix.rstrip(".") or "see the field's description in firegen.campaign.config"
    return f"{where}{msg}{got_s}. Fix: {fix}."


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if not isinstance(arg, (str, int, float)) or isinstance(arg, type):
            found = _model_in(arg)
            if found:
                return found
    return None


def _walk(root: type[BaseModel], loc: tuple) -> tuple[type[BaseModel] | None, Any]:
    """(model holding the last named field of `loc` under `root`, that field's FieldInfo or None)."""
    model: type[BaseModel] | None = root
    parent, info = None, None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            break
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        parent, info = model, fields.get(part)
        model = _model_in(info.annotation) if info is not None else None
    return parent, info


def pydantic_lines(source: str, exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per problem of ``exc``, raised validating the model ``root`` from the file ``source``."""
    errors = exc.errors()
    missing = {e["loc"] for e in errors if e["type"] == "missing"}
    covered: set = set()  # missing keys explained by a misspelled one ("did you mean ...")
    lines: list[tuple[tuple, str]] = []
    for err in errors:
        loc, kind, ctx = _drop_union_tags(err["loc"]), err["type"], err.get("ctx") or {}
        path = _loc_str(loc)
        if kind == "firegen":
            lines += [(loc, error_line(source, join_loc(path, p.loc), p.msg, p.got, p.fix))
                      for p in ctx["problems"]]
            continue
        parent, info = _walk(root, loc)
        name = str(loc[-1]) if loc else ""
        fix = ((info.json_schema_extra or {}).get("fix", "") if info is not None else "")
        msg = _MESSAGES.get(kind, err["msg"][:1].lower() + err["msg"][1:])
        try:
            msg = msg.format(**{k: int(v) if isinstance(v, float) and v.is_integer() else v
                                for k, v in ctx.items()})
        except (KeyError, IndexError):
            pass
        got: Any = err.get("input", NOTHING)
        if kind == "missing":
            got = NOTHING
            desc = info.description.rstrip(".") if info is not None and info.description else ""
            fix = f"add `{name}`: {fix}" if fix else f"add `{name}` ({desc})"
        elif kind == "extra_forbidden":
            got = NOTHING
            allowed = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
            near = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            if near and loc[:-1] + (near[0],) in missing:
                covered.add(loc[:-1] + (near[0],))
                fix = f"rename it to `{near[0]}` (a required key)"
            else:
                fix = (f"did you mean `{near[0]}`? " if near else f"remove `{name}`. ") + \
                    f"Allowed keys here: {', '.join(allowed)}"
        elif kind == "literal_error" and not fix:
            fix = "use one of those values"
        elif not fix and info is not None and info.description:
            fix = f"expected: {info.description.rstrip('.')}"
        lines.append((loc if kind == "missing" else (), error_line(source, path, msg, got, fix)))
    return [line for loc, line in lines if not loc or loc not in covered]
