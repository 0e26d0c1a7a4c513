"""How a DP-GEN input that firegen cannot convert is reported: one line per problem.

:class:`DPGenImportError` is raised by every step of the DP-GEN import (reading and schema-checking
``param.json`` in :mod:`firegen.orchestrator.dpgen_param`, ``machine.json`` in
:mod:`firegen.orchestrator.dpgen_machine`, the conversion in :mod:`firegen.orchestrator.dpgen_import`);
it is a :class:`~firegen.campaign.config.ConfigError`, so the CLI prints it as it prints config
errors. ``_schema_line`` turns a dargs schema error (DP-GEN's and dpdispatcher's schemas) into one
such line naming the key.
"""

from __future__ import annotations

from firegen.campaign.config import ConfigError, _line

__all__ = ["DPGenImportError"]


class DPGenImportError(ConfigError):
    """A DP-GEN input firegen cannot convert; ``str()`` is one line per problem."""


def _schema_line(source: str, exc: Exception, what: str) -> str:
    msg = " ".join(str(exc).split()).rstrip(". ")
    return _line(source, "", f"DP-GEN {what} schema: {msg}",
                 fix="correct that key as DP-GEN documents it (`dpgen run` rejects this file too)")

