#!/usr/bin/env python
"""The fault-injection matrix (issue 20): every case of ``tests/faults``, slow ones included, and what each survived.

Runs ``pytest tests/faults -m "slow or not slow"`` (each case a real small campaign: EMT labels, real deepmd-kit
and LAMMPS, the embedded database, ``firegen run``) with ``$FIREGEN_FAULT_TABLE`` set to a temporary JSON-lines
file. A case that survives appends its figures there (``tests/faults/fault_helpers.record_outcome``: labels
lost, i.e. configurations picked for labeling that ended without a label; labels duplicated, i.e. written more
than once; configurations labeled; a note). Every other test (failed, skipped, or recording nothing) gets
pytest's own result, taken by a plugin (``_faults_plugin.py``), not read from pytest's output. The table:

=========  ====================================================================================================
case       what was done (the case's own name; the test's node id when it recorded none)
survived   yes: the case's checks held (the campaign finished whole, or stopped with its reason where that is
           what the case expects); no: the test failed (note: pytest's first line); skipped: the note says why
lost       labels lost (``-``: not recorded)
dup        labels written more than once
labeled    configurations labeled at the end
wall s     the test's setup + call + teardown
note       the case's note, or pytest's
=========  ====================================================================================================

    .venv/bin/python benchmarks/faults.py                  # the whole matrix (CPU heavy: tens of minutes on 2 cores)
    .venv/bin/python benchmarks/faults.py -k "kill or lost_worker"     # a part of it (pytest's -k)

Exit code 0 when every case survived or was skipped, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
from _faults_plugin import RESULTS_ENV, TABLE_ENV  # noqa: E402

COLUMNS = ["case", "survived", "lost", "dup", "labeled", "wall s", "note"]
BENCH = Path(__file__).resolve().parent


def run_matrix(tests: Path, keyword: str | None = None, extra: list[str] | None = None,
               workdir: Path | None = None, quiet: bool = False) -> tuple[list[dict], int]:
    """Run pytest on ``tests`` (slow tests too) with the plugin; return its per-test results (the plugin's lines,
    in run order) and pytest's exit code. ``workdir`` keeps the JSON-lines files (default: a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="firegen-faults-") as tmp:
        folder = Path(workdir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results, table = folder / "results.jsonl", folder / "table.jsonl"
        for path in (results, table):
            path.write_text("")
        env = dict(os.environ, **{RESULTS_ENV: str(results), TABLE_ENV: str(table)})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH), env.get("PYTHONPATH", "")) if p)
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "_faults_plugin", "-q",
               "-m", "slow or not slow", str(tests)]
        if keyword:
            cmd += ["-k", keyword]
        cmd += list(extra or [])
        out = subprocess.run(cmd, cwd=_bench.REPO, env=env, stdout=subprocess.DEVNULL if quiet else None)
        lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return lines, out.returncode


def table_rows(results: list[dict], tests_prefix: str = "tests/faults/") -> list[dict]:
    """One row per recorded outcome; a test that recorded none is one row from pytest's result. A recorded case
    whose test then failed did not survive."""
    rows = []
    for result in results:
        outcome, seconds = result["outcome"], result["seconds"]
        pytest_note = f"pytest: {outcome}" + (f": {result['why']}" if result.get("why") else "")
        recorded = result.get("rows") or []
        for row in recorded:
            survived = bool(row.get("survived")) and outcome == "passed"
            note = row.get("note") or ""
            if outcome != "passed":
                note = f"{note}; {pytest_note}" if note else pytest_note
            rows.append({"case": row.get("case", result["nodeid"]), "survived": "yes" if survived else "no",
                         "lost": row.get("labels_lost"), "dup": row.get("labels_duplicated"),
                         "labeled": row.get("labeled"), "wall s": seconds / len(recorded), "note": note,
                         "nodeid": result["nodeid"]})
        if not recorded:
            survived = {"passed": "yes", "skipped": "skipped"}.get(outcome, "no")
            note = pytest_note if outcome != "passed" else "pytest: passed (no figures recorded)"
            rows.append({"case": result["nodeid"].removeprefix(tests_prefix), "survived": survived, "lost": None,
                         "dup": None, "labeled": None, "wall s": seconds, "note": note, "nodeid": result["nodeid"]})
    return rows


def render(rows: list[dict]) -> str:
    """The table, the note column left-aligned and last."""
    head = _bench.render(rows, COLUMNS[:-1], digits=0).splitlines()
    notes = [row["note"] for row in rows]
    return "\n".join([f"{head[0]}  note", f"{head[1]}  ----"] +
                     [f"{line}  {note}" for line, note in zip(head[2:], notes)])


def render_markdown(rows: list[dict], note_chars: int = 160) -> str:
    """The table as Markdown (for benchmarks/README.md), notes cut to ``note_chars``."""
    def cell(row, column):
        value = row.get(column)
        text = value if isinstance(value, str) else _bench.fmt(value, 0)
        if column == "note" and len(text) > note_chars:
            text = text[:note_chars - 1] + "…"
        return text.replace("|", "\\|")

    out = ["| " + " | ".join(COLUMNS) + " |", "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    out += ["| " + " | ".join(cell(row, c) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(out)


def commit() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=_bench.REPO,
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "unknown (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = _bench.arg_parser(__doc__)
    p.add_argument("-k", dest="keyword", help="run only the cases pytest's -k selects")
    p.add_argument("--tests", type=Path, default=_bench.REPO / "tests" / "faults", help="the fault tests' folder")
    p.add_argument("--keep", type=Path, help="keep the JSON-lines files in this folder")
    p.add_argument("--json", type=Path, help="also write the table's rows as JSON")
    p.add_argument("--quiet", action="store_true", help="hide pytest's own output")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown too")
    p.add_argument("--from-results", type=Path, help="no run: the table of a kept results.jsonl (--keep)")
    args = p.parse_args(argv)
    start, load = time.time(), os.getloadavg()
    if args.from_results:
        results, code = [json.loads(line) for line in args.from_results.read_text().splitlines() if line.strip()], 0
    else:
        results, code = run_matrix(args.tests, args.keyword, workdir=args.keep, quiet=args.quiet)
    rows = table_rows(results)
    print()
    print(f"fault matrix: {len(rows)} rows from {len(results)} tests in {time.time() - start:.0f} s; commit "
          f"{commit()}; load average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} cores); pytest exit code {code}")
    print(render(rows))
    if args.markdown:
        print()
        print(render_markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    survived = all(row["survived"] in ("yes", "skipped") for row in rows) and bool(rows)
    return 0 if survived else 1


if __name__ == "__main__":
    raise SystemExit(main())
