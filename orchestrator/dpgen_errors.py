"""How a DP-GEN input that firegen cannot convert is reported: one line per problem.

:class:`DPGenImportError` is raised by every step of the DP-GEN import (reading and schema-checking
``param.json`` in :mod:`firegen.orchestrator.dpgen_param`, ``machine.json`` in
:mod:`firegen.orchestrator.dpgen_machine`, the conversion in :mod:`firegen.orchestrator.dpgen_import`);
it is a :class:`~firegen.campaign.config.ConfigError`, so the CLI prints it as it prints config
errors. ``_schema_line`` turns a dargs schema error (DP-GEN's and dpdispatcher's schemas) into one
such line naming the key. ``name_user_keys`` renames the firegen field of a converted campaign's
error (``committee.size``) to the param.json key the user wrote (``numb_models``).
"""

from __future__ import annotations

import re

from firegen.campaign.config_errors import ConfigError, error_line

__all__ = ["DPGenImportError", "name_user_keys"]

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\]|\.[A-Za-z_][A-Za-z0-9_]*)*$")


class DPGenImportError(ConfigError):
    """A DP-GEN input firegen cannot convert; ``str()`` is one line per problem."""


def _schema_line(source: str, exc: Exception, what: str, base: str = "") -> str:
    """One line for a dargs schema error, led by the key it names (``model_devi_jobs[0].nsteps``) under
    ``base`` (e.g. ``train`` in a machine.json)."""
    message = " ".join(str(getattr(exc, "message", None) or exc).split()).rstrip(". ")
    parts = ([base] if base else []) + [p for p in str(getattr(exc, "path", "") or "").split("/") if p]
    key = re.search(r"key `([^`]+)`", message)
    if key:  # "key `nsteps` gets wrong value type", "undefined key `numb_model`"
        parts.append(key.group(1))
    loc = ""
    for part in parts:
        loc += f"[{part}]" if part.isdigit() else (f".{part}" if loc else part)
    return error_line(source, loc, f"DP-GEN {what} schema: {message}",
                      fix="correct that key as DP-GEN documents it (`dpgen run` rejects this file too)")



def _user_key(loc: str, origins: dict[str, str]) -> str | None:
    """The DP-GEN key a firegen field came from: the longest known prefix of ``loc`` renamed, the rest kept
    (an origin with a remark in parentheses, e.g. a file name, is the whole answer)."""
    for prefix in sorted(origins, key=len, reverse=True):
        if loc == prefix or loc.startswith((prefix + ".", prefix + "[")):
            origin = origins[prefix]
            return origin if " (" in origin else origin + loc[len(prefix):]
    return None


def name_user_keys(lines: list[str], source: str, origins: dict[str, str]) -> list[str]:
    """Config error lines of a converted campaign (``<source>: <firegen field>: <msg>. Fix: ...``) with the
    field named as the user wrote it in the DP-GEN file, firegen's name kept in parentheses."""
    out = []
    for line in lines:
        loc, sep, tail = line.removeprefix(f"{source}: ").partition(": ")
        user = _user_key(loc, origins) if line.startswith(f"{source}: ") and sep and _FIELD.match(loc) else None
        unit = ", in fs: 1000 × DP-GEN's ps" if loc.endswith(".dt") else ""
        out.append(f"{source}: {user} (firegen's {loc}{unit}): {tail}" if user else line)
    return out
