"""Campaign commands: validate, submit, run, status, worker, lostruns."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Optional

import typer

from firegen.campaign.config import load_config
from firegen.campaign.errors import FiregenError
from firegen.db.connection import firegen_home
from firegen.db.embedded.lostruns import detect_lostruns
from firegen.db.healing import heal_lostruns, running_launches
from firegen.db.provenance import configuration_provenance, failed_labels, model_provenance
from firegen.db.repository import ResultsStore
from firegen.launchers.local import NOT_FOR_WORKERS, plan_workers, worker_env, write_fworker
from firegen.launchers.worker import DEFAULT_SLEEP
from firegen.launchers.worker import run as run_worker
from firegen.orchestrator.cli_exchange import print_conversion_messages
from firegen.orchestrator.cli_properties import properties_brief
from firegen.orchestrator.database import bring_up, cli_target, prepare_database
from firegen.orchestrator.dpgen_import import import_dpgen, is_dpgen_param
from firegen.orchestrator.relabel import merge_settings, parse_assignments, relabel
from firegen.orchestrator.local_run import (interrupted, leave_database, run_campaign, worker_launchpad,
                                             write_report)
from firegen.orchestrator.report import campaign_summary
from firegen.orchestrator.submit import submit, write_workflow
from firegen.workflows.steps.label import get_labeler

def validate_everything(config: Path, machine: Path | None = None, ignore_unsupported: bool = False):
    """Load the config and check everything it references; no database is touched.

    A DP-GEN ``param.json`` (a ``.json`` with ``model_devi_jobs``) is converted in memory first
    (:mod:`firegen.orchestrator.dpgen_import`; ``machine`` is its machine.json).
    """
    if is_dpgen_param(config):
        conv = import_dpgen(config, machine, ignore_unsupported=ignore_unsupported, check_files=False)
        print_conversion_messages(conv, ignore_unsupported)
        cfg = conv.campaign()  # the references checked too, errors named by the param.json keys
    elif machine is not None:
        raise FiregenError(f"{config}: --machine goes with a DP-GEN param.json only. Fix: drop --machine "
                           "(a campaign YAML has no machine file)")
    else:
        cfg = load_config(config)  # the references checked too
    try:
        get_labeler(cfg.labeler.kind, cfg.labeler.settings)
    except (ValueError, ImportError) as exc:
        raise FiregenError(f"{config}: labeler: {exc}") from None
    return cfg


_MACHINE = typer.Option(None, "--machine", help="DP-GEN machine.json, with a DP-GEN param.json.")
_IGNORE = typer.Option(False, "--ignore-unsupported", help="DP-GEN param.json: convert without the settings firegen "
                       "does not support (listed as a warning).")


def validate(config: Path = typer.Argument(..., help="Campaign YAML (or DP-GEN param.json)."),
             machine: Optional[Path] = _MACHINE, ignore_unsupported: bool = _IGNORE):
    """Check a campaign config and the files it references, without touching the database."""
    cfg = validate_everything(config, machine, ignore_unsupported)
    n_cond = sum(len(s.systems) * len(s.conditions()) for s in cfg.stages)
    typer.echo(f"{config}: OK — campaign '{cfg.name}', {len(cfg.systems)} system(s), {len(cfg.stages)} stage(s), "
               f"{n_cond} (system, condition) explorations, committee of {cfg.committee.size}, labeler {cfg.labeler.kind}")


def submit_cmd(ctx: typer.Context, config: Path = typer.Argument(..., help="Campaign YAML (or DP-GEN param.json)."),
               dry_run: bool = typer.Option(False, "--dry-run", help="Write the workflow instead of queueing it."),
               output: Optional[Path] = typer.Option(None, "-o", "--output", help="Workflow file for --dry-run."),
               machine: Optional[Path] = _MACHINE, ignore_unsupported: bool = _IGNORE):
    """Validate and queue a campaign (or, with --dry-run -o wf.yaml, write what `lpad add` queues)."""
    cfg = validate_everything(config, machine, ignore_unsupported)
    if dry_run:
        out = output or Path(f"{cfg.name}.wf.yaml")
        write_workflow(cfg, out)
        typer.echo(f"wrote {out}; queue it with: lpad add {out}")
        return
    lp = cli_target(ctx).connect()
    prepare_database(lp)
    fw_id = submit(lp, cfg)
    typer.echo(f"queued campaign '{cfg.name}' (init Firework {fw_id}); start workers: firegen worker --gpu / --cpu")


def status(ctx: typer.Context, campaign: Optional[str] = typer.Argument(None, help="Campaign name (default: all).")):
    """Print the per-iteration table of a campaign (or of every campaign)."""
    store = ResultsStore.from_launchpad(cli_target(ctx).connect())
    names = [campaign] if campaign else store.campaign_names()
    if not names:
        typer.echo("no campaigns in the database")
    for name in names:
        typer.echo(campaign_summary(store, name))
        typer.echo(properties_brief(store.db, name) or "", nl=False)  # final model and properties, if any


def worker(ctx: typer.Context, gpu: bool = typer.Option(False, "--gpu", help="Train and explore (category gpu)."),
           cpu: bool = typer.Option(False, "--cpu", help="Label and select (category cpu)."),
           sleep: float = typer.Option(DEFAULT_SLEEP, min=0.05, help="Seconds between polls when idle."),
           timeout: Optional[float] = typer.Option(None, help="Stop after this many seconds."),
           preload: bool = typer.Option(True, help="Import the category's libraries (TensorFlow, dpdata, ASE) "
                                        "before the first Firework instead of during it."),
           heal: bool = typer.Option(True, help="Run the lost-run duty: find runs of dead workers and rerun them "
                                     "(expiry per kind of Firework; see `firegen lostruns`)."),
           threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads of what it runs "
                                                 "(OMP_NUM_THREADS, deepmd-kit's intra-op threads; default: the cores, "
                                                 "or OMP_NUM_THREADS when set).")):
    """FireWorks' `rapidfire` for one category against the resolved database, in a preloaded process; waits for
    the database when it stops answering."""
    if gpu == cpu:
        raise FiregenError("choose one of --gpu or --cpu. Fix: start one worker per category.")
    kind = "gpu" if gpu else "cpu"
    target = cli_target(ctx)
    target.connect()
    lp_file = worker_launchpad(target)
    workdir = firegen_home() / "workers" / kind
    workdir.mkdir(parents=True, exist_ok=True)
    fworker = write_fworker(kind, lp_file, workdir)
    for name in NOT_FOR_WORKERS:  # the launchpad file holds the database now; keep the URI from child processes
        os.environ.pop(name, None)
    os.environ.update(worker_env(lp_file, threads))
    os.chdir(workdir)
    run_worker(lp_file, fworker, kind, sleep, timeout, load_modules=preload, heal=heal)


def lostruns(ctx: typer.Context, rerun: bool = typer.Option(False, "--rerun", help="Requeue the lost runs."),
             expiration_secs: Optional[int] = typer.Option(None, help="A RUNNING launch not pinged for this long is "
                                                           "lost (default: firegen's expiry per kind of Firework, "
                                                           "as its workers' lost-run duty applies it).")):
    """`lpad detect_lostruns` that also works on FerretDB (tasks are idempotent, so --rerun is safe). firegen's
    workers do this by themselves; without --expiration-secs this shows their view and acts as they would."""
    lp = cli_target(ctx).connect()
    if expiration_secs is not None:
        lost_launches, lost_fws, inconsistent = detect_lostruns(lp, expiration_secs, rerun=rerun, refresh=rerun)
        typer.echo(f"lost launches: {lost_launches}; lost Fireworks: {lost_fws}; inconsistent: {inconsistent}"
                   + ("; requeued" if rerun and lost_fws else ""))
        return
    for run in running_launches(lp):
        typer.echo(f"RUNNING {run['kind'] or '-'} Firework {run['fw_id']} (launch {run['launch_id']}, host "
                   f"{run['host']}): " + ("its worker process is gone" if run["gone"] else
                                          f"lost after {run['expiry']:.0f} s without a ping"))
    healed = heal_lostruns(lp, rerun=rerun)
    lost = sorted(healed.reasons)
    typer.echo(f"lost Fireworks: {lost}" + (f"; rerun: {healed.rerun}; given up (lost too often): "
                                            f"{[fw_id for fw_id, _ in healed.given_up]}" if rerun else ""))


def run(ctx: typer.Context, config: Path = typer.Argument(..., help="Campaign YAML or DP-GEN param.json."),
        timeout: float = typer.Option(3600, help="Give up after this many seconds."),
        sleep: float = typer.Option(DEFAULT_SLEEP, min=0.05, help="Worker poll interval when idle (s)."),
        machine: Optional[Path] = _MACHINE, ignore_unsupported: bool = _IGNORE,
        stop_db: bool = typer.Option(False, "--stop-db", help="Stop the embedded database at the end when this run "
                                     "started it (the main job does)."),
        report_file: Optional[Path] = typer.Option(None, "--report", help="Where to write the campaign's report "
                                                   "(default: <FIREGEN_HOME>/reports/<campaign>.html)."),
        gpu_workers: Optional[int] = typer.Option(None, "--gpu-workers", min=1, help="Local train/explore workers "
                                                  "(default: one per GPU; without one, one per core up to the "
                                                  "committee's size)."),
        cpu_workers: Optional[int] = typer.Option(None, "--cpu-workers", min=1, help="Local label/select workers "
                                                  "(default: one per core, up to 8).")):
    """All in one: database up, submit (or resume), local gpu + cpu workers, progress, the final table and report.
    Workers of a category share the cores (each runs cores / workers threads)."""
    cfg = validate_everything(config, machine, ignore_unsupported)
    slots = plan_workers(gpu_workers, cpu_workers, committee=cfg.committee.size)
    target = cli_target(ctx)
    started_here = target.embedded and not target.server.is_running()
    lp = bring_up(target)
    written = None
    previous = signal.signal(signal.SIGTERM, interrupted)  # `kill`: stop the workers as Ctrl-C does
    try:
        code = run_campaign(lp, target, cfg, timeout, sleep, slots)
        written = write_report(lp, cfg.name, report_file or firegen_home() / "reports" / f"{cfg.name}.html")
    except KeyboardInterrupt:
        typer.echo(f"interrupted; campaign {cfg.name} goes on when workers run again (`firegen run` resumes it)",
                   err=True)
        code = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        leave_database(target, cfg.name, stop=stop_db and started_here)
    if written is not None:
        typer.echo(f"report: {written.resolve()}")
    if code:
        raise typer.Exit(code)


provenance_app = typer.Typer(no_args_is_help=True, help="Where models and configurations came from.")


def _print_json(obj) -> None:
    import json

    from bson import json_util

    typer.echo(json.dumps(json.loads(json_util.dumps(obj)), indent=2, sort_keys=False))


@provenance_app.command("model")
def provenance_model(ctx: typer.Context, model_id: str,
                     limit: int = typer.Option(100, min=1, help="Labels per page."),
                     skip: int = typer.Option(0, min=0, help="Labels to skip (the previous answer's next_skip)."),
                     all_labels: bool = typer.Option(False, "--all", help="Every label, in one answer.")):
    """The dataset, the labeler settings and the labels behind a model (a page of them; --all for every one)."""
    _print_json(model_provenance(cli_target(ctx).connect().db, model_id, None if all_labels else limit, skip))


@provenance_app.command("config")
def provenance_config(ctx: typer.Context, config_id: str):
    """A configuration's origin chain and the models later trained on it."""
    _print_json(configuration_provenance(cli_target(ctx).connect().db, config_id))


@provenance_app.command("failures")
def provenance_failures(ctx: typer.Context, campaign: str):
    """Every configuration of a campaign whose label failed, and why."""
    _print_json(failed_labels(cli_target(ctx).connect().db, campaign))


def relabel_cmd(ctx: typer.Context, campaign: str = typer.Argument(..., help="Campaign name."),
                set_: list[str] = typer.Option([], "--set", help="Changed labeler setting KEY=VALUE (YAML value; "
                                               "dotted keys for nested settings); repeatable."),
                settings_file: Optional[Path] = typer.Option(None, "--settings-file",
                                                             help="YAML mapping of changed settings."),
                kind: Optional[str] = typer.Option(None, "--kind", help="Another labeler kind."),
                iteration: Optional[int] = typer.Option(None, "--iteration", help="Only the failures of the "
                                                        "candidates picked by this iteration (-1: initial data)."),
                persist: bool = typer.Option(False, "--persist", help="Use the changed labeler for every later "
                                             "label of the campaign too."),
                skipped: bool = typer.Option(False, "--skipped", help="Label the configurations that re-scoring "
                                             "skipped (asynchronous campaigns) instead of the failed ones.")):
    """Retry label_failed configurations with changed settings (the failed attempts stay on record);
    a campaign stopped by labeler.max_failed_ratio resumes by itself once they are labeled. With --skipped, label
    the configurations an asynchronous campaign's re-scoring skipped."""
    import yaml


    changes = {}
    if settings_file is not None:
        changes = yaml.safe_load(settings_file.read_text()) or {}
        if not isinstance(changes, dict):
            raise FiregenError(f"{settings_file}: expected a mapping of labeler settings")
    changes = merge_settings(changes, parse_assignments(set_))
    done = relabel(cli_target(ctx).connect(), campaign, changes, kind=kind, iteration=iteration, persist=persist,
                   status="skipped" if skipped else "label_failed")
    resumed = (f"; iteration {done['resumed_iteration']} is queued again behind them"
               if done["resumed_iteration"] is not None else "")
    typer.echo(f"queued {done['configurations']} configuration(s) for relabeling with {done['labeler']['kind']} "
               f"(Fireworks {done['fw_ids'][0]}..{done['fw_ids'][-1]}){resumed}")


def register(app: typer.Typer) -> None:
    app.command("relabel")(relabel_cmd)
    app.command("validate")(validate)
    app.command("submit")(submit_cmd)
    app.command("run")(run)
    app.command("status")(status)
    app.command("worker")(worker)
    app.command("lostruns")(lostruns)
    app.add_typer(provenance_app, name="provenance")
