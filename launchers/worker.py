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
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from firegen.db.embedded.capabilities import adapt_launchpad

#: Modules of the FireTasks both categories run (dpdata via the labeled-data reader and writer).
COMMON_MODULES = ("firegen.workflows.tasks", "firegen.workflows.jobs.init", "firegen.workflows.jobs.select")

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


def run(launchpad_file: str | os.PathLike, fworker_file: str | os.PathLike, kind: str,
        sleep: float = DEFAULT_SLEEP, timeout: float | None = None, nlaunches: int = -1,
        load_modules: bool = True, log_level: str = "CRITICAL") -> None:
    """Preload, then FireWorks' ``rapidfire`` with this launchpad and FWorker file.

    Args:
        launchpad_file: ``my_launchpad.yaml``.
        fworker_file: The FWorker file (category ``kind``).
        kind: ``gpu`` or ``cpu`` (what to preload).
        sleep: Seconds between polls while nothing is ready (> 0).
        timeout: Stop starting new Fireworks after this many seconds (None: never).
        nlaunches: As ``rlaunch rapidfire --nlaunches``: -1 forever, 0 until no Firework can become ready.
        load_modules: Run :func:`preload` first.
        log_level: FireWorks' stream log level (``rlaunch -s`` is CRITICAL).
    """
    from fireworks import FWorker, LaunchPad
    from fireworks.core.rocket_launcher import rapidfire

    if sleep <= 0:
        raise ValueError(f"sleep must be > 0 s, got {sleep} (FireWorks reads 0 as its 60 s default)")
    if load_modules:
        for name, value in preload(kind).items():
            what = f"{value:.1f} s" if isinstance(value, float) else f"not loaded ({value})"
            print(f"firegen worker ({kind}): import {name}: {what}", file=sys.stderr, flush=True)
    launchpad = adapt_launchpad(LaunchPad.from_file(str(launchpad_file)))
    fworker = FWorker.from_file(str(fworker_file))
    rapidfire(launchpad, fworker=fworker, nlaunches=nlaunches, sleep_time=sleep, strm_lvl=log_level,
              timeout=timeout)


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
    args = p.parse_args(argv)
    run(args.launchpad_file, args.fworker_file, args.kind, args.sleep, args.timeout,
        load_modules=not args.no_preload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
