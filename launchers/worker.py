"""A long-lived FireWorks worker: FireWorks' own ``rapidfire`` loop, run in a process that has
already imported what its category's FireTasks need.

``rlaunch rapidfire`` imports firegen, dpdata and (for model testing in a train Firework)
TensorFlow with deepmd-kit's op library only when its first Firework runs: 5 to 8 s on the
critical path of every campaign, paid again by every new worker. ``firegen worker`` pays it at
start-up instead (:func:`preload`), then calls :func:`fireworks.core.rocket_launcher.rapidfire`
exactly as ``rlaunch -s rapidfire --nlaunches infinite`` does, but with a sub-second poll
(``rlaunch --sleep`` only takes whole seconds).

Run it as ``firegen worker --gpu|--cpu`` or ``python -m firegen.launchers.worker``; on a cluster
the plain ``rlaunch`` line in ``launchers/*.yaml`` still works (without the preload).

Faults (:mod:`firegen.db.healing` has the defaults and why): the Rocket pings its launch every
``PING_SECS`` (FireWorks' ``PING_TIME_SECS``, 3600 s by default) from a ping thread that outlives a
database outage; the FWorker's ``env`` records that interval and this process's identity in every
launch. When the database stops answering, rapidfire's exception is caught here: one line says so,
the worker waits (up to ``FIREGEN_DB_WAIT_S``, default 1 hour), requeues the launch it was running
when the database went away (its Rocket is gone) and carries on. A thread runs the lost-run duty
(:mod:`firegen.launchers.maintenance`). A workflow lock that a killed worker left is taken over after
``WFLOCK_SECS`` (60 s) instead of failing every later refresh of that workflow. A worker whose database comes
back as another database (another folder's embedded server on its port) stops with one line instead of
running that database's Fireworks (:func:`check_same_database`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

import pymongo

from firegen.db.connection import DB_WAIT_S, database_address, is_unreachable, wait_for_database
from firegen.db.embedded.capabilities import adapt_launchpad
from firegen.db.errors import DatabaseUnreachable
from firegen.db.healing import (ENV_PING, ENV_PROCESS, PING_RETRY_SECS, PING_SECS, configure_workflow_locks,
                                process_identity, requeue_lost)
from firegen.launchers.maintenance import LostRunDuty

#: Modules of the FireTasks both categories run (dpdata via the labeled-data reader and writer).
COMMON_MODULES = ("firegen.workflows.tasks", "firegen.workflows.builders", "firegen.workflows.jobs.init",
                  "firegen.workflows.jobs.select")

#: Extra modules per worker category: the gpu worker tests each trained model in-process with
#: deepmd-kit's TensorFlow inference (``deepmd.tf.env`` loads TensorFlow and the op library, the slow
#: part); the cpu worker labels with ASE calculators.
CATEGORY_MODULES = {
    "gpu": ("deepmd.infer", "deepmd.tf.env", "firegen.workflows.jobs.train", "firegen.workflows.jobs.explore"),
    "cpu": ("firegen.workflows.jobs.label", "firegen.workflows.jobs.gate", "firegen.workflows.steps.ase_labelers"),
}

#: Default idle poll (s). Every poll is one query on the ``fireworks`` collection.
DEFAULT_SLEEP = 0.5


def preload(kind: str) -> dict[str, float | str]:
    """Import the modules of :data:`COMMON_MODULES` and ``CATEGORY_MODULES[kind]``.

    A module that cannot be imported is reported, not raised: a cpu node without deepmd-kit
    still runs label Fireworks, and a Firework that needs the module fails with its own error.

    Returns:
        dict: module name to seconds spent importing it, or to the import error's text.
    """
    if kind not in CATEGORY_MODULES:
        raise ValueError(f"worker kind must be one of {sorted(CATEGORY_MODULES)}, got {kind!r}")
    report: dict[str, float | str] = {}
    for name in COMMON_MODULES + CATEGORY_MODULES[kind]:
        start = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or a library failing at import (no GPU runtime, ...)
            report[name] = f"{type(exc).__name__}: {exc}"
        else:
            report[name] = time.perf_counter() - start
    return report


def _ping_launch(launchpad, launch_id, stop_event, master_thread) -> None:
    """FireWorks' ping thread (``fireworks.core.rocket.ping_launch``), except that a ping the database does not
    answer is tried again after ``PING_RETRY_SECS`` instead of ending the thread (a live run that stopped pinging
    would be taken for lost), and no ping follows the Rocket's stop."""
    from fireworks.core import rocket

    wait = rocket.PING_TIME_SECS
    while not stop_event.is_set() and master_thread.is_alive():
        if stop_event.wait(wait):
            break
        try:
            rocket.do_ping(launchpad, launch_id)
            wait = rocket.PING_TIME_SECS
        except pymongo.errors.PyMongoError:
            wait = PING_RETRY_SECS


def configure_pings(ping_secs: float = PING_SECS) -> None:
    """Rockets of this process ping every ``ping_secs`` (FireWorks' ``PING_TIME_SECS``) with :func:`_ping_launch`."""
    import fireworks.core.rocket as rocket
    import fireworks.fw_config as fw_config

    fw_config.PING_TIME_SECS = rocket.PING_TIME_SECS = ping_secs
    rocket.ping_launch = _ping_launch


class LaunchTracker:
    """Remembers the launch this process's Rocket checked out last (FireWorks' ``checkout_fw`` of ``launchpad``)."""

    def __init__(self, launchpad):
        self.launch_id: int | None = None
        checkout = launchpad.checkout_fw

        def tracked(*args, **kwargs):
            fw, launch_id = checkout(*args, **kwargs)
            if launch_id is not None:
                self.launch_id = launch_id
            return fw, launch_id

        launchpad.checkout_fw = tracked


def recover_own_launch(launchpad, launch_id: int | None, echo=None) -> str | None:
    """After rapidfire stopped on a database outage: requeue the launch this worker was running (its Rocket is
    gone; :func:`firegen.db.healing.requeue_lost`, which caps reruns), or refresh its Firework when the launch
    ended but the Firework was not updated. Returns what was done, or None."""
    if launch_id is None:
        return None
    doc = launchpad.launches.find_one({"launch_id": launch_id}, {"state": 1, "fw_id": 1})
    if doc is None:
        return None
    fw_id = doc["fw_id"]
    if doc["state"] == "RUNNING":
        rerun = requeue_lost(launchpad, fw_id, [launch_id], "its worker lost the database while running it")
        done = f"Firework {fw_id} (launch {launch_id}) was interrupted; " + ("requeued" if rerun else
                                                                              "not requeued: lost too often")
    else:
        fw = launchpad.fireworks.find_one({"fw_id": fw_id}, {"state": 1}) or {}
        if fw.get("state") != "RUNNING":
            return None
        launchpad._refresh_wf(fw_id)  # FireWorks' own repair of a Firework behind its launch
        done = f"Firework {fw_id} refreshed after its launch {launch_id} ended {doc['state']}"
    (echo or _echo)(f"firegen worker: {done}")
    return done


class DatabaseReplaced(Exception):
    """Another database answers at the address of the one this worker started on."""


def database_identity(launchpad) -> str | None:
    """Which database this is: the id of FireWorks' Firework-id counter document, written once when its LaunchPad
    was reset (``firegen db up``, ``lpad reset``) and kept across restarts of its server; None when there is none."""
    doc = launchpad.fw_id_assigner.find_one({}, {"_id": 1})
    return str(doc["_id"]) if doc else None


def check_same_database(launchpad, identity: str | None) -> None:
    """Raise :class:`DatabaseReplaced` when the database that answers again is not the one of ``identity``: a worker
    orphaned by a killed ``firegen run`` waits for its database's address, and the embedded server of another
    folder may start there next (it prefers port 27117); this worker must not run that database's Fireworks."""
    if identity is not None and database_identity(launchpad) != identity:
        raise DatabaseReplaced(f"the database at {database_address(launchpad.connection)} is not the one this worker "
                               "started on (another database answers at its address now); stopping. Fix: start a "
                               "worker for that database (`firegen worker`) if it should run its Fireworks")


def _echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(launchpad_file: str | os.PathLike, fworker_file: str | os.PathLike, kind: str,
        sleep: float = DEFAULT_SLEEP, timeout: float | None = None, nlaunches: int = -1,
        load_modules: bool = True, log_level: str = "CRITICAL", heal: bool = True,
        ping_secs: float = PING_SECS, db_wait: float = DB_WAIT_S) -> None:
    """Preload, then FireWorks' ``rapidfire`` with this launchpad and FWorker file, riding out database outages.

    Args:
        launchpad_file: ``my_launchpad.yaml``.
        fworker_file: The FWorker file (category ``kind``).
        kind: ``gpu`` or ``cpu`` (what to preload).
        sleep: Seconds between polls while nothing is ready (> 0).
        timeout: Stop starting new Fireworks after this many seconds (None: never).
        nlaunches: As ``rlaunch rapidfire --nlaunches``: -1 forever, 0 until no Firework can become ready.
        load_modules: Run :func:`preload` first.
        log_level: FireWorks' stream log level (``rlaunch -s`` is CRITICAL).
        heal: Run the lost-run duty (:class:`firegen.launchers.maintenance.LostRunDuty`) in a thread.
        ping_secs: FireWorks' ``PING_TIME_SECS`` for this process's Rockets.
        db_wait: How long to wait for a database that stopped answering (s); then :class:`DatabaseUnreachable`.
    """
    from fireworks import FWorker, LaunchPad
    from fireworks.core.rocket_launcher import rapidfire

    if sleep <= 0:
        raise ValueError(f"sleep must be > 0 s, got {sleep} (FireWorks reads 0 as its 60 s default)")
    if load_modules:
        for name, value in preload(kind).items():
            what = f"{value:.1f} s" if isinstance(value, float) else f"not loaded ({value})"
            print(f"firegen worker ({kind}): import {name}: {what}", file=sys.stderr, flush=True)
    configure_pings(ping_secs)
    configure_workflow_locks()  # a worker killed holding its workflow's lock must not stop the campaign
    launchpad = LaunchPad.from_file(str(launchpad_file))
    while True:  # the database may be down as the worker starts
        try:
            launchpad = adapt_launchpad(launchpad)
            break
        except pymongo.errors.ConnectionFailure:
            wait_for_database(launchpad.connection, max_wait=db_wait)
    identity = database_identity(launchpad)
    fworker = FWorker.from_file(str(fworker_file))
    fworker.env = {**(fworker.env or {}), ENV_PING: ping_secs, ENV_PROCESS: process_identity()}
    tracker = LaunchTracker(launchpad)
    if heal:
        LostRunDuty(launchpad_file, echo=_echo).start()
    home, start = os.getcwd(), time.monotonic()
    while True:
        left = None if timeout is None else timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            return
        try:
            rapidfire(launchpad, fworker=fworker, m_dir=home, nlaunches=nlaunches, sleep_time=sleep,
                      strm_lvl=log_level, timeout=left)
            return
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            since = time.time()
        os.chdir(home)  # rapidfire stopped inside a launch directory
        wait_for_database(launchpad.connection, since, db_wait, _echo)
        check_same_database(launchpad, identity)
        recover_own_launch(launchpad, tracker.launch_id)


def command(launchpad_file: Path, fworker_file: Path, kind: str, sleep: float = DEFAULT_SLEEP,
            timeout: float | None = None) -> list[str]:
    """The command line that runs :func:`run` in a new process of this Python."""
    cmd = [sys.executable, "-m", "firegen.launchers.worker", "-l", str(launchpad_file), "-w", str(fworker_file),
           "--kind", kind, "--sleep", str(sleep)]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m firegen.launchers.worker", description=__doc__.split("\n\n")[0])
    p.add_argument("-l", "--launchpad-file", required=True)
    p.add_argument("-w", "--fworker-file", required=True)
    p.add_argument("--kind", choices=sorted(CATEGORY_MODULES), required=True)
    p.add_argument("--sleep", type=float, default=DEFAULT_SLEEP, help="seconds between polls when idle (> 0)")
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--no-preload", action="store_true")
    p.add_argument("--no-heal", action="store_true", help="no lost-run duty in this worker")
    args = p.parse_args(argv)
    try:
        run(args.launchpad_file, args.fworker_file, args.kind, args.sleep, args.timeout,
            load_modules=not args.no_preload, heal=not args.no_heal)
    except (DatabaseUnreachable, DatabaseReplaced) as exc:
        _echo(f"firegen worker: {exc}")
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
