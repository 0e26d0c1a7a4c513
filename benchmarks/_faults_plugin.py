"""pytest plugin of ``benchmarks/faults.py`` (loaded with ``-p _faults_plugin``): pytest's own result of every test.

For each test it appends one JSON line to ``$FIREGEN_FAULT_RESULTS``: the node id, pytest's outcome (passed,
failed, skipped, interrupted; error for a file that could not be collected), the seconds of its setup, call and teardown,
the first line of why it failed or was skipped, and the rows the test appended meanwhile to
``$FIREGEN_FAULT_TABLE`` (``fault_helpers.record_outcome``). Tests run one after another, so the rows a test
added are the lines of that file that were not there when it started.
"""

from __future__ import annotations

import json
import os

import pytest

RESULTS_ENV = "FIREGEN_FAULT_RESULTS"
TABLE_ENV = "FIREGEN_FAULT_TABLE"

_reports: dict[str, list] = {}


def _lines(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        with open(path) as f:
            return [line for line in f.read().splitlines() if line.strip()]
    except OSError:
        return []


def _why(report) -> str:
    """The first line of a failure's or skip's reason."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (file, line, reason)
        return str(longrepr[-1]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr or "")
    return (text.strip().splitlines() or [""])[0][:200]


def _write(line: dict) -> None:
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(line) + "\n")


def pytest_runtest_logreport(report):
    _reports.setdefault(report.nodeid, []).append(report)


def pytest_collectreport(report):
    if report.failed:
        _write({"nodeid": report.nodeid, "outcome": "error", "seconds": 0.0, "why": _why(report), "rows": []})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    table = os.environ.get(TABLE_ENV)
    before = len(_lines(table))
    yield
    reports = _reports.pop(item.nodeid, [])
    failed = [r for r in reports if r.failed]
    skipped = [r for r in reports if r.skipped]
    ran = any(r.when == "call" for r in reports)
    outcome = "failed" if failed else "skipped" if skipped else "passed" if ran else "interrupted"
    rows = []
    for line in _lines(table)[before:]:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    why = _why((failed or skipped)[0]) if failed or skipped else ""
    _write({"nodeid": item.nodeid, "outcome": outcome, "seconds": sum(r.duration for r in reports), "why": why,
            "rows": rows})
