"""Indexed ``_id`` look-ups on the embedded FerretDB (SQLite handler).

FerretDB 1.24 sends exactly one filter shape to SQLite: ``{_id: <string or ObjectId>}`` alone,
as ``WHERE _ferretdb_sjson->'$._id' = ?`` (``filterPushdown: true`` in ``explain``). Every other
filter reads and decodes the whole collection in Go. Its own unique ``_id`` index is built on
``_ferretdb_sjson->"_id"``, a different expression, and SQLite only uses an expression index
whose expression matches the query's word for word, so even the pushed-down look-up scans the
table (``explain``: ``SCAN configurations_...``): 0.3 s per ``find_one({_id})`` at 10^4
configurations, growing linearly.

:func:`index_id_lookups` adds to every collection table of a database an expression index on
exactly the pushed-down expression. FerretDB's metadata does not list it (``listIndexes`` shows
the indexes firegen asked for), ``dropIndexes`` leaves it, dropping the collection drops it with
the table. FerretDB's connections pick it up at their next query (``explain`` then shows
``SEARCH ... USING INDEX <table>_firegen_id_lookup``). Only firegen's embedded server is touched:
MongoDB has real ``_id`` indexes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

#: Suffix of the index name (``<table><suffix>``).
INDEX_SUFFIX = "_firegen_id_lookup"
#: FerretDB 1.24's ``metadata.IDColumn``: the expression its ``_id`` pushdown compares.
ID_EXPRESSION = "_ferretdb_sjson->'$._id'"


def index_every_database(data_dir: str | Path, timeout: float = 60.0) -> dict[str, list[str]]:
    """:func:`index_id_lookups` for every database under ``data_dir`` (what a server start does, so that
    collections created since the last start are indexed too)."""
    return {path.stem: index_id_lookups(data_dir, path.stem, timeout) for path in sorted(Path(data_dir).glob("*.sqlite"))}


def index_id_lookups(data_dir: str | Path, database: str, timeout: float = 60.0) -> list[str]:
    """Create the ``_id`` look-up index on every collection of ``database``; return the tables indexed now.

    Idempotent. The database file is ``<data_dir>/<database>.sqlite``; a database FerretDB has not
    created yet is skipped (empty list).

    Args:
        data_dir: FerretDB's ``--sqlite-url`` folder.
        database: The MongoDB database name (firegen's is ``firegen``).
        timeout: Seconds to wait for FerretDB's write lock.
    """
    path = Path(data_dir) / f"{database}.sqlite"
    if not path.is_file():
        return []
    created = []
    con = sqlite3.connect(path, timeout=timeout)
    try:
        present = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        tables = [t for (t,) in con.execute("SELECT table_name FROM _ferretdb_collections")]
        for table in tables:
            name = f"{table}{INDEX_SUFFIX}"
            if name not in present:
                con.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ({ID_EXPRESSION})')
                created.append(table)
        con.commit()
    except sqlite3.OperationalError as exc:
        if "no such table: _ferretdb_collections" in str(exc):
            return []
        raise
    finally:
        con.close()
    return created
