"""Commands that show campaigns: ``firegen report`` (one HTML file) and ``firegen dashboard`` (live, in a browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from firegen.db.repository import ResultsStore
from firegen.orchestrator.database import cli_target


def write_campaign_report(lp, campaign: str, path: Path) -> Path:
    """Write ``campaign``'s report file to ``path``; returns the path."""
    from firegen.orchestrator.view.report import write_report  # start-up: Plotly and Jinja load only here
    from firegen.orchestrator.view.source import CampaignSource  # start-up, as above

    return write_report(CampaignSource(ResultsStore.from_launchpad(lp), lp, campaign), path)


def report(ctx: typer.Context, campaign: str = typer.Argument(..., help="Campaign name."),
           output: Optional[Path] = typer.Option(None, "-o", "--output", help="HTML file to write "
                                                 "(default: <campaign>-report.html).")):
    """Write one self-contained HTML file with the campaign's tables and plots (opens offline)."""
    lp = cli_target(ctx).connect()
    path = write_campaign_report(lp, campaign, output or Path(f"{campaign}-report.html"))
    typer.echo(f"wrote {path}")


def dashboard(ctx: typer.Context,
              port: int = typer.Option(8050, min=0, max=65535, help="Port to listen on (0: any free port)."),
              host: str = typer.Option("127.0.0.1", help="Address to bind; any but a loopback address needs the token."),
              token: Optional[str] = typer.Option(None, envvar="FIREGEN_DASHBOARD_TOKEN",
                                                  help="Token every request must present (default: a new one when "
                                                       "--host is not a loopback address, printed at start)."),
              refresh: float = typer.Option(3.0, min=0.5, help="Seconds between a page's updates.")):
    """Serve every campaign's views live from the database, read-only, until Ctrl-C."""
    from firegen.orchestrator.view.server import serve, token_for  # start-up: Flask and Plotly load only here

    lp = cli_target(ctx).connect()
    needed, made_here = token_for(host, token)

    def ready(url: str) -> None:
        if needed is None:
            typer.echo(f"firegen dashboard on {url} (read-only; Ctrl-C stops it)")
        elif made_here:
            typer.echo(f"firegen dashboard on {url}?token={needed} (read-only; every request needs this token; "
                       "Ctrl-C stops it)")
        else:
            typer.echo(f"firegen dashboard on {url} (read-only; every request needs the token you gave: "
                       "open it with ?token=...; Ctrl-C stops it)")

    serve(lp, host, port, needed, refresh, ready)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("dashboard")(dashboard)
