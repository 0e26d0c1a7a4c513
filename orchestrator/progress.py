"""What ``firegen run`` shows while its campaign runs: a live panel in a terminal, plain lines elsewhere.

The panel (rich) holds the campaign's status, stage and iteration, its Fireworks per category (running,
ready, waiting, done, fizzled), the labels done and still to do, and the elapsed time. Where the output
is not a terminal (CI, a log file), one line is printed each time that picture changes. A Firework that
is RUNNING without a recent ping (its worker may be dead) is named with the time of its last ping and what
happens next (:mod:`firegen.db.healing`), so a campaign that does not move says why.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from firegen.db.healing import DUTY_SECS, silent_runs
from firegen.db.launchpad_queries import firework_states, labels_queued
from firegen.db.repository import ResultsStore

#: FireWorks states as the display groups them.
GROUPS = {"RUNNING": "running", "RESERVED": "ready", "READY": "ready", "WAITING": "waiting", "COMPLETED": "done",
          "FIZZLED": "fizzled"}
COLUMNS = ("running", "ready", "waiting", "done", "fizzled")


@dataclass(frozen=True)
class Progress:
    """Where a campaign stands.

    Attributes:
        campaign, status, stage (its name), iteration: the campaign document's.
        fireworks: ``(category, kind, state) -> n`` over the campaign's Fireworks.
        labels_done, labels_todo: configurations in label Fireworks that completed, and in those still to run.
        silent: one phrase per RUNNING Firework without a recent ping (:func:`silent_phrase`).
    """

    campaign: str
    status: str | None
    stage: str
    iteration: int | None
    fireworks: dict[tuple[str, str, str], int]
    labels_done: int
    labels_todo: int
    silent: tuple[str, ...] = ()

    def by_category(self) -> dict[str, dict[str, int]]:
        """``category -> {running, ready, waiting, done, fizzled}`` counts."""
        out: dict[str, dict[str, int]] = {}
        for (category, _, state), n in sorted(self.fireworks.items()):
            row = out.setdefault(category, dict.fromkeys(COLUMNS, 0))
            if state in GROUPS:
                row[GROUPS[state]] += n
        return out

    def running(self, category: str | None = None) -> list[str]:
        """The kinds of the Fireworks running now (of ``category`` only when given)."""
        return sorted({kind for (cat, kind, state) in self.fireworks
                       if state == "RUNNING" and category in (None, cat)})

    def line(self) -> str:
        """One line for logs (no time: it changes only when the picture does)."""
        counts = "; ".join(f"{cat} " + " ".join(f"{n} {k}" for k, n in row.items() if n)
                           for cat, row in self.by_category().items())
        silent = f"; not pinged: {'; '.join(self.silent)}" if self.silent else ""
        return (f"{self.campaign}: {self.status} stage {self.stage} iteration {self.iteration}; running: "
                f"{', '.join(self.running()) or '-'}; labels {self.labels_done} done, {self.labels_todo} to do; "
                f"{counts}{silent}")


def silent_phrase(run: dict) -> str:
    """What a RUNNING Firework without a recent ping waits for, in words that do not change every second (the
    plain display prints a line per change)."""
    last = time.strftime("%H:%M:%S", time.localtime(run["last_ping"].timestamp()))
    what = f"{run['kind'] or 'a'} Firework {run['fw_id']} (host {run.get('host') or '?'}) not pinged since {last}"
    if run["gone"]:
        return f"{what}: its worker process is gone; rerun within {DUTY_SECS} s by a firegen worker's lost-run duty"
    if not run["ping_secs"]:
        return (f"{what}: its worker is not firegen's and may ping only hourly; lost after {run['expiry']:.0f} s "
                f"(`firegen lostruns --rerun --expiration-secs S` if that worker is gone)")
    return f"{what}: lost after {run['expiry']:.0f} s without a ping, then rerun by a firegen worker"


def read_progress(lp, store: ResultsStore, campaign: str) -> Progress:
    """The campaign's progress, from its document and its Fireworks."""
    doc = store.get_campaign(campaign) or {}
    stage = doc.get("stage") or 0
    stages = (doc.get("config") or {}).get("stages") or []
    name = stages[stage].get("name") if stage < len(stages) else None
    done, todo = labels_queued(lp, campaign)
    silent = tuple(silent_phrase(run) for run in silent_runs(lp, campaign))
    return Progress(campaign, doc.get("status"), name or str(stage), doc.get("iteration"), firework_states(lp, campaign),
                    done, todo, silent)


def panel(progress: Progress, elapsed: float) -> Group:
    """The live panel of one moment."""
    minutes, seconds = divmod(int(elapsed), 60)
    head = Text.assemble((f"{progress.campaign}", "bold"), f"  {progress.status}  stage ", (progress.stage, "bold"),
                         "  iteration ", (str(progress.iteration), "bold"),
                         f"  labels {progress.labels_done} done / {progress.labels_todo} to do",
                         f"  elapsed {minutes}:{seconds:02d}")
    grid = Table(box=None, pad_edge=False)
    grid.add_column("category")
    for column in COLUMNS:
        grid.add_column(column, justify="right")
    grid.add_column("running now")
    for category, row in progress.by_category().items():
        grid.add_row(category, *(str(row[c]) for c in COLUMNS), ", ".join(progress.running(category)) or "-")
    return Group(head, grid, *(Text(f"not pinged: {phrase}", style="yellow") for phrase in progress.silent))


class PlainProgress:
    """Prints a line, with the elapsed seconds, each time the picture changes."""

    def __init__(self, echo: Callable[[str], None]):
        self.echo, self.last = echo, None

    def show(self, progress: Progress, elapsed: float) -> None:
        line = progress.line()
        if line != self.last:
            self.echo(f"[{elapsed:6.0f} s] {line}")
            self.last = line

    def close(self) -> None:
        pass


class LiveProgress:
    """Redraws the panel in place (a terminal only); what else is printed meanwhile goes above it."""

    def __init__(self, console: Console | None = None):
        self.live = Live(console=console or Console(), refresh_per_second=2, transient=False)
        self.live.start()

    def show(self, progress: Progress, elapsed: float) -> None:
        self.live.update(panel(progress, elapsed))

    def close(self) -> None:
        self.live.stop()


def progress_display(echo: Callable[[str], None], stream=None) -> PlainProgress | LiveProgress:
    """The live panel when ``stream`` (default stdout) is a terminal, plain lines through ``echo`` otherwise."""
    stream = stream or sys.stdout
    return LiveProgress() if stream.isatty() else PlainProgress(echo)
