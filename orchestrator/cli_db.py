"""``firegen db up | down | status | init | install``: the database behind the LaunchPad."""

from __future__ import annotations

from pathlib import Path

import typer

from firegen.db.connection import DEFAULT_DB_NAME, LAUNCHPAD_FILE, resolve_target, write_launchpad_file
from firegen.db.errors import FiregenError
from firegen.db.ferretdb_install import FERRETDB_VERSION, install_ferretdb
from firegen.db.ferretdb_sqlite import index_id_lookups
from firegen.db.repository import ResultsStore

db_app = typer.Typer(no_args_is_help=True, help="Start, stop and inspect the database (embedded FerretDB or yours).")


def _target(ctx: typer.Context):
    obj = ctx.find_root().obj or {}
    return resolve_target(uri=obj.get("uri"), launchpad=obj.get("launchpad"))


def prepare_database(lp):
    """Results schema plus FireWorks' own indexes and id counters; idempotent. Returns the schema report.

    A new database gets FireWorks' id counters the way ``lpad reset`` makes them, without the
    reset: nothing stored is ever deleted here.
    """
    lp.fw_id_assigner.update_one({}, {"$setOnInsert": {"next_fw_id": 1, "next_launch_id": 1}}, upsert=True)
    lp.tuneup(bkground=False)
    return ResultsStore.from_launchpad(lp).init()


def bring_up(target, launchpad_path: Path = Path(LAUNCHPAD_FILE), echo=typer.echo):
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
    if target.embedded:  # FerretDB's _id pushdown uses no index of its own (see db/ferretdb_sqlite.py)
        index_id_lookups(target.server.root / "data", lp.db.name)
    return lp


@db_app.command("up")
def up(ctx: typer.Context,
       launchpad_file: Path = typer.Option(Path(LAUNCHPAD_FILE), "--write-launchpad", help="Where to write the launchpad file.")):
    """Start the embedded FerretDB (installing it if missing), create the schema, write my_launchpad.yaml."""
    bring_up(_target(ctx), launchpad_file)


@db_app.command("down")
def down(ctx: typer.Context):
    """Stop the embedded FerretDB (data stay on disk)."""
    target = _target(ctx)
    if not target.embedded:
        typer.echo(f"{target.describe()} is not firegen's embedded server; nothing to stop")
        return
    stopped = target.server.stop()
    typer.echo("embedded FerretDB stopped" if stopped else "embedded FerretDB was not running")


@db_app.command("status")
def status(ctx: typer.Context):
    """Say where the database is, whether it answers, and how many documents each collection holds."""
    target = _target(ctx)
    typer.echo(f"database: {target.describe()}")
    if target.embedded:
        info = target.server.status()
        typer.echo(f"embedded FerretDB: {'running, pid ' + str(info['pid']) if info['running'] else 'not running'}"
                   f"  data: {info['data']}  log: {info['log']}")
        if not info["running"]:
            raise typer.Exit(1)
    lp = target.connect()
    for name in ("campaigns", "iterations", "configurations", "models", "datasets", "fireworks", "workflows"):
        typer.echo(f"  {name:15s} {lp.db[name].estimated_document_count():>9d}")


@db_app.command("init")
def init(ctx: typer.Context):
    """Create the results collections, indexes and validators (idempotent)."""
    lp = _target(ctx).connect()
    result = prepare_database(lp)
    typer.echo(f"created: {', '.join(result.created) or 'nothing (all present)'}; "
               f"validators: {'on the server' if result.server_validators else 'client-side (server lacks $jsonSchema)'}")
    for name, indexes in result.indexes.items():
        typer.echo(f"  {name}: {', '.join(indexes)}")


@db_app.command("install")
def install():
    """Install FerretDB v1.24.2 (a checked binary; firegen builds its own copy with Go when there is none)."""
    typer.echo(f"ferretdb {FERRETDB_VERSION}: {install_ferretdb()}")


@db_app.command("launchpad")
def launchpad(ctx: typer.Context, output: Path = typer.Option(..., "-o", "--output", help="File to write.")):
    """Write a FireWorks launchpad file for the resolved database (mode 0600), for rlaunch/qlaunch."""
    target = _target(ctx)
    if target.launchpad_file is not None:
        raise FiregenError(f"the database already comes from the launchpad file {target.launchpad_file}; use that file.")
    write_launchpad_file(output, target.uri)
    typer.echo(f"launchpad file for {target.describe()}: {output}")
