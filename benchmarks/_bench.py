"""Shared helpers of the benchmark scripts: a private FerretDB, order statistics, tables.

Not a package module: the scripts put ``benchmarks/`` on ``sys.path`` and ``import _bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"


@contextlib.contextmanager
def private_ferretdb(prefix: str = "firegen-bench-", keep: bool = False) -> Iterator:
    """A FerretDB (SQLite) of our own on a free loopback port, in a fresh temporary folder.

    Yields the :class:`firegen.db.embedded.server.EmbeddedServer` (``.uri``, ``.root``); stops it and removes
    the folder afterwards (also after an error or Ctrl-C), unless ``keep``.
    """
    from firegen.db.embedded.install import find_ferretdb
    from firegen.db.embedded.server import EmbeddedServer, free_port

    if find_ferretdb() is None:
        raise SystemExit("FerretDB is not installed; run `.venv/bin/firegen db install` (or scripts/bootstrap.sh)")
    root = Path(tempfile.mkdtemp(prefix=prefix))
    server = EmbeddedServer(root / "db", port=free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def describe(values: Sequence[float]) -> dict[str, float]:
    """``n``, ``median``, ``p95``, ``min``, ``max``, ``mean`` of ``values`` (NaN when empty)."""
    xs = [float(v) for v in values]
    if not xs:
        return {"n": 0, "median": math.nan, "p95": math.nan, "min": math.nan, "max": math.nan, "mean": math.nan}
    return {"n": len(xs), "median": statistics.median(xs), "p95": percentile(xs, 95), "min": min(xs),
            "max": max(xs), "mean": statistics.fmean(xs)}


def fmt(value, digits: int = 1) -> str:
    """A table cell: ``-`` for None/NaN, fixed digits for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(rows: list[dict], columns: list[str], digits: int = 1) -> str:
    """Right-aligned plain-text table of ``rows`` (dicts) over ``columns``."""
    cells = [[v if isinstance(v, str) else fmt(v, digits) for v in (r.get(c) for c in columns)] for r in rows]
    widths = [max([len(c)] + [len(row[k]) for row in cells]) for k, c in enumerate(columns)]
    out = ["  ".join(c.rjust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def union_length(intervals: Sequence[tuple[float, float]], lo: float = -math.inf, hi: float = math.inf) -> float:
    """Length of the union of ``intervals`` ``(start, end)`` clipped to ``[lo, hi]`` (same unit as the input)."""
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if min(b, hi) > max(a, lo))
    total, cur_a, cur_b = 0.0, None, None
    for a, b in clipped:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def epoch(value) -> float | None:
    """FireWorks' naive-UTC timestamps (ISO strings, or datetimes through some drivers) as epoch seconds."""
    import datetime as dt

    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def arg_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark script's parser: the first paragraph of its docstring as the description, the rest kept as written."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)

