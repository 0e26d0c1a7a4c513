"""`firegen run` on this machine: its local workers (:func:`~firegen.launchers.local.plan_workers`), the campaign
followed to its end (progress, a worker that died replaced, the database waited for), its report and what is left of
the embedded database. The command itself is in :mod:`firegen.orchestrator.cli_campaign`."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from firegen.campaign.records import CAMPAIGN_ENDED
from firegen.db.connection import (firegen_home, is_unreachable, retry_unreachable, wait_for_database,
                                   write_launchpad_file)
from firegen.db.healing import heal_lostruns, record_fizzled
from firegen.db.repository import ResultsStore
from firegen.launchers.local import start_worker, stop_workers
from firegen.orchestrator.cli_view import write_campaign_report
from firegen.orchestrator.progress import progress_display, read_progress
from firegen.orchestrator.report import campaign_summary
from firegen.orchestrator.submit import submit

WORKER_RESTARTS = 3
"""How many times `firegen run` starts another worker in place of one that died (counted per worker)."""


def worker_launchpad(target, home: Path | None = None) -> Path:
    """A launchpad file for this target that rlaunch can read (the user's own file when there is one)."""
    if target.launchpad_file is not None:
        return target.launchpad_file
    return write_launchpad_file((home or firegen_home()) / "workers" / "my_launchpad.yaml", target.uri,
                                embedded=target.embedded)


def interrupted(signum, frame):
    """SIGTERM as Ctrl-C: `firegen run` stops the workers it started (each leads its own process group, so a signal
    to the run's group does not reach them) instead of leaving them to run on without it."""
    raise KeyboardInterrupt


def write_report(lp, name: str, path: Path) -> Path | None:
    """Write the campaign's report; a report that cannot be written is said, and does not fail the run."""
    try:
        return write_campaign_report(lp, name, path)
    except Exception as exc:  # the campaign's outcome stands; the report can be written later
        typer.echo(f"could not write the report {path}: {type(exc).__name__}: {exc}; "
                   f"`firegen report {name}` tries again", err=True)
        return None


def leave_database(target, name: str, stop: bool) -> None:
    """Say where the embedded database stands after `firegen run`, stopping it when asked."""
    if not target.embedded:
        return
    data = target.server.root / "data"
    if stop:
        target.server.stop()
        typer.echo(f"stopped the embedded database that this run started (data kept in {data}); "
                   f"`firegen run` or `firegen db up` starts it again, then `firegen status {name}` reads it")
    else:
        typer.echo(f"the embedded database is still running on {target.server.uri} (data in {data}); "
                   f"`firegen status {name}` reads it, `firegen db down` stops it")


def run_campaign(lp, target, cfg, timeout: float, sleep: float, slots) -> int:
    """Submit or resume ``cfg`` on ``lp``, run the local workers ``slots`` (:func:`plan_workers`) until it ends; the
    exit code (0 done)."""
    store = ResultsStore.from_launchpad(lp)
    doc = store.get_campaign(cfg.name)
    if doc is None:
        submit(lp, cfg)
        typer.echo(f"queued campaign '{cfg.name}'")
    elif doc["status"] in CAMPAIGN_ENDED:
        typer.echo(campaign_summary(store, cfg.name))
        if doc["status"] in ("stopped", "failed"):  # as when it stopped under this command: exit 1, the reason
            typer.echo(f"campaign {cfg.name} {doc['status']}: {doc.get('stop_reason', 'see firegen status')}",
                       err=True)
            return 1
        return 0
    else:
        typer.echo(f"resuming campaign '{cfg.name}' (status {doc['status']})")
    lp_file = worker_launchpad(target)

    by_name = {slot.name: slot for slot in slots}

    def start(name: str):
        slot = by_name[name]
        return start_worker(slot.kind, lp_file, firegen_home() / "workers" / name, sleep, name=f"firegen-{name}",
                            threads=slot.threads, device=slot.device)

    workers = {name: start(name) for name in by_name}
    code = 0
    try:
        code = _follow(lp, store, cfg.name, workers, timeout, start)
    finally:
        stop_workers(workers.values())
    typer.echo(retry_unreachable(lambda: campaign_summary(store, cfg.name), lp.connection, echo=_say))
    return code


def _say(line: str) -> None:
    typer.echo(line, err=True)


def _follow(lp, store, name: str, workers: dict, timeout: float, start_worker_of) -> int:
    """Show the campaign's progress (a live panel in a terminal, a line per change elsewhere) until it ends;
    1 on a fizzled Firework, a stopped campaign, a worker that kept dying or the timeout. Waits for the database
    when it stops answering; a worker that died is replaced (:data:`WORKER_RESTARTS` times per worker)."""
    display = progress_display(typer.echo)
    try:
        return _watch(lp, store, name, workers, timeout, display, start_worker_of)
    finally:
        display.close()


def _judge_left_runs(lp, store, name: str) -> None:
    """Before `firegen run` gives up on a worker that kept dying: judge the run it left now, as the workers' duty
    would have (rerun it, or, lost too often, stop the campaign with the reason) and say the campaign's reason.
    Without this a Firework that kills its worker every time left the campaign running, with no reason, its
    last loss never counted (the workers that would have judged it are stopped with this command)."""
    try:
        heal_lostruns(lp)
        doc = store.get_campaign(name) or {}
    except Exception as exc:  # noqa: BLE001 - the command ends anyway; the duty judges it at the next run
        _say(f"could not judge the runs it left: {type(exc).__name__}: {exc}")
        return
    if doc.get("status") in ("stopped", "failed"):
        typer.echo(f"campaign {name} {doc['status']}: {doc.get('stop_reason', 'see firegen status')}", err=True)


def _watch(lp, store, name: str, workers: dict, timeout: float, display, start_worker_of) -> int:
    start = time.monotonic()
    restarts = dict.fromkeys(workers, 0)
    while time.monotonic() - start < timeout:
        try:
            progress = read_progress(lp, store, name)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            wait_for_database(lp.connection, time.time(), echo=_say)
            continue
        display.show(progress, time.monotonic() - start)
        if progress.status in ("stopped", "failed"):
            reason = (store.get_campaign(name) or {}).get("stop_reason", "see firegen status")
            typer.echo(f"campaign {name} {progress.status}: {reason}", err=True)
            return 1
        fizzled = [kind for (_, kind, state) in progress.fireworks if state == "FIZZLED"]
        if fizzled:
            record_fizzled(lp)  # one that fizzled before its task could say why (a full launch directory)
            doc = store.get_campaign(name) or {}
            if doc.get("status") in ("stopped", "failed"):
                typer.echo(f"campaign {name} {doc['status']}: {doc.get('stop_reason', 'see firegen status')}", err=True)
                return 1
            typer.echo(f"a {fizzled[0]} Firework fizzled; see `lpad get_fws -s FIZZLED -d more` and the worker logs "
                       f"under {firegen_home() / 'workers'}", err=True)
            return 1
        active = sum(n for (_, _, state), n in progress.fireworks.items()
                     if state in ("READY", "RESERVED", "RUNNING", "WAITING"))
        if progress.status in CAMPAIGN_ENDED and active == 0:
            return 0
        for worker, proc in list(workers.items()):
            if proc.poll() is None:
                continue
            log = firegen_home() / "workers" / worker / "worker.log"
            if restarts[worker] >= WORKER_RESTARTS:
                _say(f"the {worker} worker exited with code {proc.returncode} ({restarts[worker]} restarts already); "
                     f"see {log}")
                _judge_left_runs(lp, store, name)
                return 1
            restarts[worker] += 1
            _say(f"the {worker} worker exited with code {proc.returncode}; starting another ({restarts[worker]} of "
                 f"{WORKER_RESTARTS}); a run it left is rerun by the workers' lost-run duty (see {log})")
            workers[worker] = start_worker_of(worker)
        time.sleep(1.0)
    typer.echo(f"timed out after {timeout:.0f} s; the campaign goes on when workers run again (firegen run resumes)",
               err=True)
    return 1
