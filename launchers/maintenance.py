"""The lost-run duty of a firegen worker: a thread that finds lost runs and reruns them, so that no person has
to run ``firegen lostruns``.

Every firegen worker (``firegen worker``, and those ``firegen run`` starts) runs one; a lease in the
database (:func:`firegen.db.healing.claim_duty`) lets one of them work at a time, and another takes over
at once when that one is seen dead on its machine, else within three periods. Each pass is
:func:`firegen.db.healing.heal_lostruns` (the expiries, the rerun cap and why they are what they are live
there), then :func:`firegen.workflows.schedule_duty.advance_schedules` (asynchronous campaigns' deadlines).
After the database was unreachable, the duty waits two ping intervals before it judges again, so that live
runs have pinged since it came back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from firegen.db.connection import is_unreachable
from firegen.db.embedded.capabilities import adapt_launchpad
from firegen.db.healing import DUTY_SECS, PING_SECS, claim_duty, heal_lostruns, process_identity
from firegen.workflows.schedule_duty import advance_schedules


class LostRunDuty(threading.Thread):
    """Runs :func:`~firegen.db.healing.heal_lostruns` every ``period`` s while this process lives (a daemon thread).

    Args:
        launchpad_file: the worker's ``my_launchpad.yaml`` (the thread opens its own LaunchPad).
        echo: where its lines go (the worker's log).
        period: seconds between passes.
        quiet_after_outage: seconds without a pass after the database answers again.
    """

    def __init__(self, launchpad_file, echo: Callable[[str], None], period: float = DUTY_SECS,
                 quiet_after_outage: float = 2 * PING_SECS):
        super().__init__(name="firegen-lostruns", daemon=True)
        self.launchpad_file, self.echo, self.period, self.quiet = str(launchpad_file), echo, period, quiet_after_outage
        self.holder = process_identity()
        self.stopped = threading.Event()
        self.launchpad = None
        self.unreachable = False
        self.quiet_until = 0.0

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            self.run_once()

    def run_once(self):
        """One pass; returns its :class:`~firegen.db.healing.Healed`, or None when it did nothing."""
        from fireworks import LaunchPad

        try:
            if self.launchpad is None:
                self.launchpad = adapt_launchpad(LaunchPad.from_file(self.launchpad_file))
            if self.unreachable:
                self.launchpad.connection.admin.command("ping")
                self.unreachable, self.quiet_until = False, time.time() + self.quiet
            if time.time() < self.quiet_until or not claim_duty(self.launchpad, self.holder, self.period):
                return None
            healed = heal_lostruns(self.launchpad)
            started = advance_schedules(self.launchpad)
        except Exception as exc:  # the duty must outlive anything one pass meets
            if is_unreachable(exc):
                self.unreachable = True
            else:
                self.echo(f"firegen worker: lost-run duty: {type(exc).__name__}: {str(exc)[:300]}")
            return None
        for campaign, iteration, why in started:
            self.echo(f"firegen worker: {campaign} iteration {iteration} queued ({why})")
        for fw_id in healed.rerun:
            self.echo(f"firegen worker: Firework {fw_id} was lost ({healed.reasons[fw_id]}); rerun")
        for fw_id, why in healed.given_up:
            self.echo(f"firegen worker: Firework {fw_id} was lost ({why}) once too often; its campaign stops")
        return healed
