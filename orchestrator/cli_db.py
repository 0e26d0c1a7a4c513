"""``firegen db up | down | status | init | install``: the database behind the LaunchPad."""

from __future__ import annotations

from pathlib import Path

import typer

from firegen.campaign.errors import FiregenError
from firegen.db.connection import LAUNCHPAD_FILE, write_archive_launchpad_file, write_launchpad_file
from firegen.db.embedded.install import FERRETDB_VERSION, install_ferretdb
from firegen.db.repository import ResultsStore
from firegen.orchestrator.database import bring_up, cli_target, prepare_database

db_app = typer.Typer(no_args_is_help=True, help="Start, stop and inspect the database (embedded FerretDB or yours).")


@db_app.command("up")
def up(ctx: typer.Context,
       launchpad_file: Path = typer.Option(Path(LAUNCHPAD_FILE), "--write-launchpad", help="Where to write the launchpad file.")):
    """Start the embedded FerretDB (installing it if missing), create the schema, write my_launchpad.yaml.
    After a crash or a SIGKILL it cleans the dead server's state and comes back on the same port."""
    target = cli_target(ctx)
    bring_up(target, launchpad_file)
    if target.embedded and target.server.stale_pid:
        typer.echo(f"the previous server (pid {target.server.stale_pid}) had died without `firegen db down`; "
                   f"its state was cleaned and the server is back on the same port")


@db_app.command("down")
def down(ctx: typer.Context):
    """Stop the embedded FerretDB (data stay on disk)."""
    target = cli_target(ctx)
    if not target.embedded:
        typer.echo(f"{target.describe()} is not firegen's embedded server; nothing to stop")
        return
    stopped = target.server.stop()
    typer.echo("embedded FerretDB stopped" if stopped else "embedded FerretDB was not running")


@db_app.command("status")
def status(ctx: typer.Context):
    """Say where the database is, whether it answers, and how many documents each collection holds."""
    target = cli_target(ctx)
    typer.echo(f"database: {target.describe()}")
    if target.embedded:
        info = target.server.status()
        typer.echo(f"embedded FerretDB: {'running, pid ' + str(info['pid']) if info['running'] else 'not running'}"
                   f"  data: {info['data']}  log: {info['log']}")
        if not info["running"]:
            raise typer.Exit(1)
    counts = ResultsStore.from_launchpad(target.connect()).document_counts(
        ("campaigns", "iterations", "configurations", "models", "datasets", "fireworks", "workflows"))
    for name, n in counts.items():
        typer.echo(f"  {name:15s} {n:>9d}")


@db_app.command("init")
def init(ctx: typer.Context):
    """Create the results collections, indexes and validators (idempotent)."""
    lp = cli_target(ctx).connect()
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
def launchpad(ctx: typer.Context, output: Path = typer.Option(..., "-o", "--output", help="File to write."),
              archive: bool = typer.Option(False, "--archive", help="For the archive of finished iterations "
                                           "(database <name>_archive): `lpad -l FILE get_fws` shows them.")):
    """Write a FireWorks launchpad file for the resolved database (mode 0600), for rlaunch/qlaunch/lpad."""
    target = cli_target(ctx)
    if target.launchpad_file is not None and not archive:
        raise FiregenError(f"the database already comes from the launchpad file {target.launchpad_file}; use that file.")
    if archive:
        write_archive_launchpad_file(output, target)
    else:
        write_launchpad_file(output, target.uri)
    typer.echo(f"launchpad file for {target.describe()}{' (its archive of finished iterations)' if archive else ''}: "
               f"{output}")
