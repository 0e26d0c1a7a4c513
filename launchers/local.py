"""Local workers for the ``gpu`` and ``cpu`` categories: FireWorks' ``rapidfire`` loop in a process
that preloaded its FireTasks' imports (:mod:`firegen.launchers.worker`).

``firegen worker`` and ``firegen run`` use these; on a cluster, run ``firegen worker`` or the plain
``rlaunch`` line (or ``qlaunch`` with the queue adapters in this folder). Workers poll with a short
sleep (``--sleep``, default 0.5 s) instead of FireWorks' 60 s default, which dominates small jobs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from firegen.db.connection import firegen_home, write_private_yaml
from firegen.db.files import BLOB_CACHE_ENV
from firegen.launchers.worker import DEFAULT_SLEEP, command

LAUNCHERS = Path(__file__).resolve().parent
CATEGORIES = ("gpu", "cpu")


def fireworks_bin(name: str) -> str:
    """``rlaunch``/``lpad``/``qlaunch`` of this Python environment (falls back to PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def write_fworker(kind: str, launchpad_file: Path, out_dir: Path, name: str | None = None) -> Path:
    """A copy of ``launchers/<kind>_worker.yaml`` (named ``name`` when given) in ``out_dir``.

    The tasks need nothing in it about the database: each uses the LaunchPad its Rocket was given.
    """
    if kind not in CATEGORIES:
        raise ValueError(f"worker kind must be one of {CATEGORIES}, got {kind!r}")
    spec = yaml.safe_load((LAUNCHERS / f"{kind}_worker.yaml").read_text())
    if name:
        spec["name"] = name
    # written beside and renamed over: workers started together each rewrite it, and one reading it meanwhile
    # saw it empty and died (FWSerializationError 'must be a dict but is NoneType')
    return write_private_yaml(Path(out_dir) / f"{kind}_worker.yaml", spec)


#: Left out of a worker's environment: the worker reads its database from the launchpad file (mode 0600), so a
#: password in this URI does not reach the worker, nor DFT codes, LAMMPS or ``dp`` that it starts.
NOT_FOR_WORKERS = ("FIREGEN_MONGO_URI",)


def worker_env(launchpad_file: Path) -> dict:
    """The environment of a worker: thread count, blob cache (``<home>/cache/blobs``) and ``FIREGEN_LAUNCHPAD``
    (read only by tasks of Fireworks queued before their spec had ``_add_launchpad_and_fw_id``), without
    :data:`NOT_FOR_WORKERS`."""
    env = {key: value for key, value in os.environ.items() if key not in NOT_FOR_WORKERS}
    env["FIREGEN_LAUNCHPAD"] = str(Path(launchpad_file).resolve())
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    env.setdefault(BLOB_CACHE_ENV, str(firegen_home() / "cache" / "blobs"))
    return env


def start_worker(kind: str, launchpad_file: Path, workdir: Path, sleep: float = DEFAULT_SLEEP,
                 log: Path | None = None, name: str | None = None) -> subprocess.Popen:
    """Start one local worker of ``kind`` in ``workdir`` (:func:`firegen.launchers.worker.run`); return its process."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fworker = write_fworker(kind, launchpad_file, workdir, name)
    out = open(log or workdir / "worker.log", "ab")
    return subprocess.Popen(command(launchpad_file, fworker, kind, sleep), cwd=workdir, env=worker_env(launchpad_file),
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
