"""Data exchange commands: ``import-dpgen`` (DP-GEN param.json → campaign YAML) and ``export data|model``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from firegen.db.repository import ResultsStore
from firegen.orchestrator.database import cli_target
from firegen.orchestrator.dpgen_import import import_dpgen
from firegen.orchestrator.export import export_data, export_model

export_app = typer.Typer(no_args_is_help=True, help="Export a campaign's data (dpdata) or its frozen committee.")


def print_conversion_messages(conv, ignored: bool) -> None:
    """Unsupported settings (when converting without them) and notes, on stderr."""
    if conv.unsupported and ignored:
        typer.echo(f"firegen: warning: {conv.unsupported_message()}", err=True)
    for note in conv.notes:
        typer.echo(f"firegen: note: {note}", err=True)


def import_dpgen_cmd(
        param: Path = typer.Argument(..., help="DP-GEN param.json (checked with DP-GEN's own schema)."),
        machine: Optional[Path] = typer.Argument(None, help="DP-GEN machine.json: worker and queue-adapter hints."),
        output: Path = typer.Option(..., "-o", "--output", help="Campaign YAML to write (worker files go to "
                                    "<stem>.workers/ beside it)."),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="DP-GEN run folder: import its labeled "
                                               "iterations and resume at the first unfinished model_devi job."),
        name: Optional[str] = typer.Option(None, "--name", help="Campaign name (default: the param file's folder)."),
        ignore_unsupported: bool = typer.Option(False, "--ignore-unsupported", help="Convert without the DP-GEN "
                                                "settings firegen does not support (listed as a warning).")):
    """Convert a DP-GEN campaign (param.json, optionally machine.json) into a firegen campaign YAML."""
    conv = import_dpgen(param, machine, output=output, run_dir=run_dir, name=name,
                        ignore_unsupported=ignore_unsupported)
    print_conversion_messages(conv, ignore_unsupported)
    typer.echo(f"wrote {output}" + (f" and {len(conv.workers)} worker file(s) in "
                                    f"{output.with_name(output.stem + '.workers')}" if conv.workers else ""))
    if run_dir:
        n = len(conv.config["initial_data"].get("imported", []))
        typer.echo(f"imports {n} labeled DP-GEN data folder(s); resumes at model_devi_jobs[{conv.resume_job}]")
    typer.echo(f"next: firegen validate {output} && firegen submit {output}")


@export_app.command("data")
def export_data_cmd(
        ctx: typer.Context,
        campaign: str = typer.Option(..., "--campaign", help="Campaign name."),
        output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
        iteration: Optional[int] = typer.Option(None, "--iteration", help="The snapshot iteration i's models trained on "
                                                "(default: every configuration with --status)."),
        status: str = typer.Option("labeled", "--status", help="labeled, or candidate/selected/rejected/label_failed "
                                   "(structures only)."),
        fmt: str = typer.Option("deepmd/npy", "--format", help="deepmd/npy or extxyz.")):
    """Write configurations with dpdata, grouped by formula, plus manifest.json (ids and content hashes)."""
    store = ResultsStore.from_launchpad(cli_target(ctx).connect())
    result = export_data(store, campaign, output, iteration=iteration, status=status, fmt=fmt)
    n = len(result.manifest["configurations"])
    typer.echo(f"wrote {n} configuration(s) in {len(result.manifest['systems'])} system(s) ({fmt}) to {output}")


@export_app.command("model")
def export_model_cmd(
        ctx: typer.Context,
        campaign: str = typer.Option(..., "--campaign", help="Campaign name."),
        output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
        iteration: Optional[int] = typer.Option(None, "--iteration", help="Iteration (default: the latest trained)."),
        final: bool = typer.Option(False, "--final", help="The final model (firegen finalize) instead of a committee.")):
    """Write a frozen committee (sha256-checked) and manifest.json (seeds, metrics, dataset ids + hashes)."""
    store = ResultsStore.from_launchpad(cli_target(ctx).connect())
    result = export_model(store, campaign, output, iteration=-1 if final else iteration)
    typer.echo(f"wrote {len(result.manifest['models'])} model(s) of iteration {result.manifest['iteration']} "
               f"and manifest.json to {output}")


def register(app: typer.Typer) -> None:
    app.command("import-dpgen")(import_dpgen_cmd)
    app.add_typer(export_app, name="export")
