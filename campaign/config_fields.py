"""Shared pieces of the campaign config models: one-line problems (`Problem`, `fail`), fields that state
their own fix (`fx`), the strict base model, names (`Slug`) and chemical symbols (`Symbol`).

Units everywhere in the config (LAMMPS metal): eV, eV/Å, Å, K, bar, fs for `dt`, ps for the
thermostat/barostat damping times.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, NamedTuple

from ase.data import chemical_symbols
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError


NOTHING = object()  # "no value to show" marker for Problem.got


class Problem(NamedTuple):
    """One problem found by a validator; `loc` is relative to the object being validated."""

    loc: str
    msg: str
    got: Any = NOTHING
    fix: str = ""


def fail(*problems: Problem):
    """Raise a pydantic error carrying `problems`; config.py turns each into one line."""
    summary = "; ".join(f"{p.loc + ': ' if p.loc else ''}{p.msg}" for p in problems)
    raise PydanticCustomError("firegen", "{summary}", {"summary": summary, "problems": list(problems)})


def fx(default: Any = ..., *, desc: str, fix: str | None = None, **kw: Any) -> Any:
    """A `Field` with a description (units included) and the fix shown when its value is wrong."""
    extra = {"fix": fix} if fix else None
    if "default_factory" in kw:
        return Field(description=desc, json_schema_extra=extra, **kw)
    return Field(default, description=desc, json_schema_extra=extra, **kw)


Slug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
SLUG_FIX = "use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"


class _Model(BaseModel):
    """Strict: a number is not taken from text or a bool (YAML's `true` is not 1), a whole number not from
    2.0; NaN and infinity are refused; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, strict=True,
                              allow_inf_nan=False)


def one_line(obj: Any, limit: int = 200) -> str:
    """`str(obj)` on one line, at most `limit` characters."""
    text = " ".join(str(obj).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


ELEMENTS = [s for s in chemical_symbols if s != "X"]


def _check_symbol(sym: str) -> str:
    if sym in ELEMENTS:
        return sym
    near = [s for s in ELEMENTS if s.lower() == sym.strip().lower()]
    near = near or difflib.get_close_matches(sym.strip().capitalize(), ELEMENTS, n=3, cutoff=0.5)
    hint = (f"did you mean {' or '.join(repr(s) for s in near)}? " if near else "") + \
        "Use chemical symbols, case as in the periodic table (e.g. 'Cu', 'Na', 'Cl')"
    fail(Problem("", "unknown element", sym, hint))


def _as_triple(value: Any) -> Any:
    return [value] * 3 if isinstance(value, int) and not isinstance(value, bool) else value


def _symbol(value: Any) -> Any:
    return _check_symbol(value) if isinstance(value, str) else value


Symbol = Annotated[str, BeforeValidator(_symbol)]  # a chemical symbol, checked like type_map's
