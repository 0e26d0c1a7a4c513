"""Bringing a campaign's database up: start the embedded server, create the schema and FireWorks' indexes.

Shared by the ``firegen db`` commands and the campaign commands (``submit``, ``run``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from firegen.db.connection import DEFAULT_DB_NAME, LAUNCHPAD_FILE, DBTarget, resolve_target, write_launchpad_file
from firegen.db.embedded.install import FERRETDB_VERSION
from firegen.db.repository import ResultsStore
from firegen.db.uri import has_password


def cli_target(ctx) -> DBTarget:
    """The database the command line names (``--uri``/``--launchpad``), else firegen's usual lookup."""
    obj = ctx.find_root().obj or {}
    if obj.get("uri") and has_password(obj["uri"]):
        print("firegen: warning: --uri puts the password on the command line, where `ps` shows it to every user "
              "of this machine. Fix: export FIREGEN_MONGO_URI instead, or use a launchpad file (mode 0600).",
              file=sys.stderr)
    return resolve_target(uri=obj.get("uri"), launchpad=obj.get("launchpad"))


def prepare_database(lp):
    """Results schema plus FireWorks' own indexes and id counters; idempotent. Returns the schema report.

    A new database gets FireWorks' id counters the way ``lpad reset`` makes them, without the
    reset: nothing stored is ever deleted here.
    """
    lp.fw_id_assigner.update_one({}, {"$setOnInsert": {"next_fw_id": 1, "next_launch_id": 1}}, upsert=True)
    lp.tuneup(bkground=False)
    return ResultsStore.from_launchpad(lp).init()


def bring_up(target: DBTarget, launchpad_path: Path = Path(LAUNCHPAD_FILE), echo=print):
    """Start the embedded server when ``target`` is embedded, then prepare the schema. Returns the LaunchPad."""
    if target.embedded:
        uri = target.server.start()
        target.uri = uri + DEFAULT_DB_NAME  # the port is known only now
        write_launchpad_file(launchpad_path, target.uri, embedded=True)
        echo(f"FerretDB {FERRETDB_VERSION} (SQLite) on {uri}  data: {target.server.root / 'data'}")
        echo(f"launchpad file: {launchpad_path.resolve()}  (try: lpad -l {launchpad_path} get_wflows)")
    else:
        echo(f"using {target.describe()}; starting nothing")
    lp = target.connect()
    prepare_database(lp)
    if target.embedded:  # collections made just now get the server's _id look-up index too
        target.server.index_lookups(lp.db.name)
    return lp
