"""The ``firegen`` command line. Each command is a thin shell over a library function.

Errors that users can fix (bad config, unreachable database, missing FerretDB) are printed as one
line ``firegen: error: ...`` with exit code 2, never as a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from firegen.campaign.errors import FiregenError
from firegen.db.uri import mask_secrets
from firegen.orchestrator.cli_campaign import register as register_campaign_commands
from firegen.orchestrator.cli_db import db_app
from firegen.orchestrator.cli_exchange import register as register_exchange_commands
from firegen.orchestrator.cli_properties import register as register_property_commands
from firegen.orchestrator.cli_view import register as register_view_commands
from firegen.workflows import claim_root_logger

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Active learning of DeePMD potentials as FireWorks workflows on MongoDB.")
app.add_typer(db_app, name="db")
register_campaign_commands(app)
register_exchange_commands(app)
register_view_commands(app)
register_property_commands(app)


@app.callback()
def _global(ctx: typer.Context,
            uri: Optional[str] = typer.Option(None, "--uri", envvar=None, help="MongoDB URI to use (else FIREGEN_MONGO_URI, a launchpad file, or the embedded FerretDB)."),
            launchpad: Optional[Path] = typer.Option(None, "--launchpad", "-l", help="FireWorks my_launchpad.yaml to use.")):
    ctx.obj = {"uri": uri, "launchpad": launchpad}


@app.command()
def version():
    """Print firegen's version."""
    from importlib.metadata import version as v

    typer.echo(f"firegen {v('firegen')}")


def main(argv: list[str] | None = None) -> None:
    claim_root_logger()
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except FiregenError as exc:  # its message is the whole story for the user (ConfigError included)
        for line in mask_secrets(str(exc)).splitlines() or [type(exc).__name__]:
            print(f"firegen: error: {line}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
