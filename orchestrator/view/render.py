"""HTML of the views: tables as cells, sections and pages through the Jinja templates beside this module."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, an optional link, and ``field`` (``data-field``: what tests and scripts read)."""

    text: str
    href: str | None = None
    field: str | None = None
    number: bool = False

    @property
    def long(self) -> bool:
        """Text long enough to wrap (a reason, a message) rather than widen its column."""
        return len(self.text) > 40


@dataclass(frozen=True)
class Table:
    """A table: headers, rows of cells, and an ``id`` per row (an anchor) where rows have one."""

    headers: list[str]
    rows: list[list[Cell]]
    row_ids: list[str | None] = field(default_factory=list)


def text_of(value) -> str:
    """A value as a table shows it: floats with 4 significant digits, times in UTC to the second, None as –."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def table(rows: Sequence[dict], columns: Sequence[str], name: str, key: str | None = None,
          links: dict[str, Callable[[dict], str | None]] | None = None,
          row_id: Callable[[dict], str | None] | None = None) -> Table:
    """A :class:`Table` of ``rows`` (dicts) showing ``columns``.

    Args:
        rows: the rows.
        columns: the keys shown, in order (also the headers).
        name: the table's name in each cell's ``data-field`` (``<name>.<row key>.<column>``).
        key: the column whose value names a row in ``data-field`` (default: the row's position).
        links: column -> a function of the row giving the cell's link (None: no link).
        row_id: a function of the row giving its anchor.
    """
    links = links or {}
    out = []
    for k, row in enumerate(rows):
        name_of_row = text_of(row[key]) if key else str(k)
        out.append([Cell(text_of(row.get(c)), links[c](row) if c in links else None, f"{name}.{name_of_row}.{c}",
                         isinstance(row.get(c), (int, float)) and not isinstance(row.get(c), bool))
                    for c in columns])
    return Table(list(columns), out, [row_id(r) for r in rows] if row_id else [])


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["text"] = text_of
    return env


def fragment(template: str, **context) -> str:
    """A piece of HTML from ``templates/<template>``."""
    return environment().get_template(template).render(**context)


def script_json(value) -> str:
    """JSON to put inside a ``<script>`` element (no ``</`` that would close it)."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


@cache
def stylesheet() -> str:
    return (HERE / "static" / "style.css").read_text()


@cache
def page_script() -> str:
    """The page's own script: draws each figure with Plotly and, on the dashboard, keeps it current."""
    return (HERE / "static" / "page.js").read_text()
