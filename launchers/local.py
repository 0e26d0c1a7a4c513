"""Local workers: ``rlaunch rapidfire`` processes for the ``gpu`` and ``cpu`` categories.

``firegen worker`` and ``firegen run`` use these; on a cluster, run the same ``rlaunch`` line (or
``qlaunch`` with the queue adapters in this folder). Workers poll with a short sleep
(``--sleep``, default 1 s) instead of FireWorks' 60 s default, which dominates small jobs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

LAUNCHERS = Path(__file__).resolve().parent
CATEGORIES = ("gpu", "cpu")


def fireworks_bin(name: str) -> str:
    """``rlaunch``/``lpad``/``qlaunch`` of this Python environment (falls back to PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def write_fworker(kind: str, launchpad_file: Path, out_dir: Path, name: str | None = None) -> Path:
    """A copy of ``launchers/<kind>_worker.yaml`` whose env names the launchpad file for firegen's tasks."""
    if kind not in CATEGORIES:
        raise ValueError(f"worker kind must be one of {CATEGORIES}, got {kind!r}")
    spec = yaml.safe_load((LAUNCHERS / f"{kind}_worker.yaml").read_text())
    spec.setdefault("env", {})["firegen_launchpad"] = str(Path(launchpad_file).resolve())
    if name:
        spec["name"] = name
    out = Path(out_dir) / f"{kind}_worker.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def rlaunch_command(launchpad_file: Path, fworker_file: Path, sleep: int = 1, nlaunches: str = "infinite",
                    timeout: float | None = None) -> list[str]:
    cmd = [fireworks_bin("rlaunch"), "-s", "-l", str(launchpad_file), "-w", str(fworker_file), "rapidfire",
           "--nlaunches", str(nlaunches), "--sleep", str(sleep)]
    if timeout:
        cmd += ["--timeout", str(int(timeout))]
    return cmd


def worker_env(launchpad_file: Path) -> dict:
    env = dict(os.environ, FIREGEN_LAUNCHPAD=str(Path(launchpad_file).resolve()))
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return env


def start_worker(kind: str, launchpad_file: Path, workdir: Path, sleep: int = 1, log: Path | None = None,
                 name: str | None = None) -> subprocess.Popen:
    """Start one local ``rlaunch rapidfire`` worker of ``kind`` in ``workdir``; return its process."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fworker = write_fworker(kind, launchpad_file, workdir, name)
    out = open(log or workdir / "worker.log", "ab")
    return subprocess.Popen(rlaunch_command(launchpad_file, fworker, sleep), cwd=workdir, env=worker_env(launchpad_file),
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
