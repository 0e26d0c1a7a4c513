"""Reading a DP-GEN ``param.json`` and checking it with DP-GEN's own schema.

    jdata = load_dpgen_file("param.json")     # JSON (or YAML by suffix) → dict; one-line errors
    j = check_param(jdata, "param.json")      # normalized and checked strictly, as ``dpgen run`` does
    is_dpgen_param("param.json")              # True when the top level has ``model_devi_jobs``

The schema is ``dpgen.generator.arginfo.run_jdata_arginfo``; a schema error is one
:class:`~firegen.orchestrator.dpgen_errors.DPGenImportError` line naming the key. The conversion of
the checked dict is :mod:`firegen.orchestrator.dpgen_import`.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from firegen.campaign.config_errors import error_line
from firegen.campaign.config_fields import NOTHING
from firegen.campaign.input_files import InputProblem, read_input_file
from firegen.orchestrator.dpgen_errors import DPGenImportError, _schema_line

__all__ = ["check_param", "is_dpgen_param", "load_dpgen_file"]


def load_dpgen_file(path: str | os.PathLike) -> dict:
    """A DP-GEN input file (JSON, or YAML by suffix) as a dict; one-line errors (not UTF-8, bad syntax,
    nesting too deep, a key that is not text, an integer beyond int64: see
    :mod:`firegen.campaign.input_files`)."""
    path = Path(path)
    source = str(path)
    try:
        data = read_input_file(path, "yaml" if path.suffix.lower() in (".yaml", ".yml") else "json")
    except InputProblem as exc:
        raise DPGenImportError([error_line(source, exc.loc, exc.msg, NOTHING if exc.got is None else exc.got,
                                           exc.fix)]) from None
    if not isinstance(data, dict):
        raise DPGenImportError([error_line(source, "", "must be a mapping of DP-GEN keys at the top level",
                                           fix="give a DP-GEN param.json")])
    return data


def is_dpgen_param(path: str | os.PathLike) -> bool:
    """True for a ``.json`` file whose top level has DP-GEN's ``model_devi_jobs``."""
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:  # leniently (a repeated key, a byte-order mark): load_dpgen_file says what is wrong with it
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError, RecursionError):  # not JSON at all: read as a campaign file, which says why
        return False
    return isinstance(data, dict) and "model_devi_jobs" in data


def check_param(jdata: dict, source: str = "param.json") -> dict:
    """``jdata`` normalized and checked by DP-GEN's own schema, as ``dpgen run`` does.

    Raises:
        DPGenImportError: one line with dargs' message (it names the key and its location).
    """
    from dargs.dargs import ArgumentError
    from dpgen.generator.arginfo import run_jdata_arginfo

    arginfo = run_jdata_arginfo()
    try:
        data = arginfo.normalize_value(copy.deepcopy(jdata), trim_pattern="_*")
        arginfo.check_value(data, strict=True)
    except (ArgumentError, KeyError, TypeError, ValueError) as exc:
        raise DPGenImportError([_schema_line(source, exc, "param")]) from None
    return data
