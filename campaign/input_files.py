"""Reading the files users write (campaign YAML/JSON, DP-GEN param.json and machine.json) into plain data,
with every way such a file can be malformed turned into one :class:`InputProblem` instead of a traceback.

    data = read_input_file(Path("campaign.yaml"))   # raises InputProblem (loc, msg, fix)
    problems = plain_data_problems(data)             # non-text keys, too deep, ints beyond int64, odd types

What is refused, and why:

- text that is not UTF-8 (a UTF-16 file from a Windows editor, Latin-1 bytes): YAML and JSON here are
  UTF-8, and a guess at another encoding could read a different number than the user wrote;
- YAML or JSON syntax errors and duplicate mapping keys (both would keep the last one silently);
- nesting deeper than :data:`MAX_DEPTH` levels (no campaign needs more than about 8; the parsers and
  everything after them recurse, so 1,000 levels would end in a ``RecursionError``);
- mapping keys that are not text (``[a, b]: 1``, ``5: x``, YAML 1.1's ``on:``/``yes:`` read as true):
  MongoDB stores text keys only, and every firegen key is text;
- integers outside MongoDB's 64-bit range (``-2**63 .. 2**63 - 1``): they cannot be stored;
- values that are not JSON-like (YAML dates, ``!!binary``, ``!!set``): they cannot be stored as written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["INT64_MAX", "INT64_MIN", "MAX_DEPTH", "InputProblem", "plain_data_problems", "read_input_file"]

#: Deepest nesting of mappings and lists accepted in an input file (a deepmd-kit template nests 4).
MAX_DEPTH = 64
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


class InputProblem(Exception):
    """One problem with an input file: ``loc`` (a line, or the key path; may be empty), ``msg``, ``fix``."""

    def __init__(self, loc: str, msg: str, fix: str, got: Any = None):
        self.loc, self.msg, self.fix, self.got = loc, msg, fix, got
        super().__init__(f"{loc + ': ' if loc else ''}{msg}. Fix: {fix}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate and non-text mapping keys instead of keeping the last one or
    failing with a Python ``TypeError``."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys: set = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden here
            continue
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            what = (f"key {key_node.value!r} is not text ({type(key).__name__})"
                    if isinstance(key_node, yaml.ScalarNode) else f"a {type(key).__name__} is used as a key, not text")
            raise yaml.constructor.ConstructorError(None, None, what, key_node.start_mark)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputProblem("", "file not found", "check the path") from None
    except IsADirectoryError:
        raise InputProblem("", "is a folder, not a file", "give the path of the file") from None
    except OSError as exc:
        raise InputProblem("", f"cannot read: {exc.strerror or exc}", "check the path and its permissions") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputProblem("", "is UTF-16 text", "save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputProblem(f"line {line}", f"is not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                           "save the file as UTF-8 (e.g. `iconv -f LATIN1 -t UTF-8`)") from None
    return text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is harmless


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object that keeps each key once (``json`` would keep the last of a repeated key silently)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise InputProblem("", f"invalid JSON: duplicate key {key!r}", "keep each key once")
        out[key] = value
    return out


def read_input_file(path: Path, fmt: str | None = None, check: bool = True) -> Any:
    """The parsed content of a YAML or JSON input file (``fmt`` "yaml"/"json"; default by suffix: ``.json``
    is JSON, anything else YAML), checked with :func:`plain_data_problems` (unless not ``check``: parsed only).

    Raises:
        InputProblem: the first problem (unreadable, not UTF-8, bad syntax, duplicate or non-text key,
            too deep, an integer beyond int64, a value that is not JSON-like).
    """
    text = _text(path)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "yaml")
    try:
        if fmt == "json":
            try:
                data = json.loads(text, object_pairs_hook=_unique_pairs)
            except json.JSONDecodeError as exc:
                raise InputProblem(f"line {exc.lineno}", f"invalid JSON: {exc.msg}",
                                   "correct the JSON syntax there") from None
        else:
            try:
                data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f"line {mark.line + 1}" if mark is not None else ""
                what = " ".join(str(getattr(exc, "problem", None) or exc).split())
                fix = ("keep each key once" if "duplicate key" in what else
                       "write keys as text (quote them, e.g. \"on\": or \"5\":)" if "not text" in what else
                       "check indentation, colons and quoting there")
                raise InputProblem(where, f"invalid YAML: {what}", fix) from None
    except RecursionError:
        raise InputProblem("", f"nests lists or mappings deeper than Python can read (more than {MAX_DEPTH} "
                           "levels are refused anyway)", "flatten the nesting") from None
    for problem in plain_data_problems(data) if check else ():
        raise problem
    return data


def _loc(parts: tuple) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _walk(data: Any) -> Iterator[tuple[tuple, Any, int]]:
    """(path, value, depth) of every node, parents first; iterative (no recursion on deep input)."""
    stack: list[tuple[tuple, Any, int]] = [((), data, 0)]
    while stack:
        path, value, depth = stack.pop()
        yield path, value, depth
        if depth > MAX_DEPTH:
            continue  # reported by the caller; do not descend further
        if isinstance(value, dict):
            stack.extend((path + (k,), v, depth + 1) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((path + (i,), v, depth + 1) for i, v in reversed(list(enumerate(value))))


def plain_data_problems(data: Any) -> Iterator[InputProblem]:
    """Each place where ``data`` is not plain, storable data: a mapping key that is not text, nesting
    deeper than :data:`MAX_DEPTH`, an integer outside int64, a value that is not null, a bool, a number,
    text, a list or a mapping. ``loc`` is the key path (e.g. ``stages[0].nsteps``)."""
    for path, value, depth in _walk(data):
        loc = _loc(path)
        if depth > MAX_DEPTH:
            yield InputProblem(_loc(path[:3]) + "...", f"nests deeper than {MAX_DEPTH} levels",
                               "flatten the nesting (no firegen setting needs more than a few levels)")
            return
        if isinstance(value, dict):
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                bad = bad[0]
                yield InputProblem(loc, f"has a key that is not text ({bad!r}, {type(bad).__name__})",
                                   "write every key as text (quote it, e.g. \"5\": or \"on\":)")
        elif isinstance(value, bool) or value is None or isinstance(value, (str, float, list)):
            continue
        elif isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                yield InputProblem(loc, "is an integer beyond the 64-bit range MongoDB stores",
                                   f"use a whole number between {INT64_MIN} and {INT64_MAX}", value)
        else:
            yield InputProblem(loc, f"is a {type(value).__name__}, not a number, text, list or mapping",
                               "quote it to make it text (YAML reads 2024-01-01 as a date)")
