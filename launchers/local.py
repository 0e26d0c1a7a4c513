"""Local workers for the ``gpu`` and ``cpu`` categories: FireWorks' ``rapidfire`` loop in a process
that preloaded its FireTasks' imports (:mod:`firegen.launchers.worker`).

``firegen worker`` and ``firegen run`` use these; on a cluster, run ``firegen worker`` or the plain
``rlaunch`` line (or ``qlaunch`` with the queue adapters in this folder). Workers poll with a short
sleep (``--sleep``, default 0.5 s) instead of FireWorks' 60 s default, which dominates small jobs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from firegen.db.connection import firegen_home, write_private_yaml
from firegen.db.files import BLOB_CACHE_ENV
from firegen.launchers.worker import DEFAULT_SLEEP, command
from firegen.workflows.builders import MAX_LABEL_FWS

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


def worker_env(launchpad_file: Path, threads: int | None = None, device: str | None = None) -> dict:
    """The environment of a worker: thread counts, its GPU (``CUDA_VISIBLE_DEVICES`` = ``device`` when given), blob
    cache (``<home>/cache/blobs``) and ``FIREGEN_LAUNCHPAD`` (read only by tasks of Fireworks queued before their spec
    had ``_add_launchpad_and_fw_id``), without :data:`NOT_FOR_WORKERS`.

    Threads: ``threads``, when given, sets ``OMP_NUM_THREADS`` and deepmd-kit's ``DP_INTRA_OP_PARALLELISM_THREADS``;
    otherwise values the user set (or their ``TF_`` alias) are kept, and a missing one is ``OMP_NUM_THREADS``, else the
    cores. ``DP_INTER_OP_PARALLELISM_THREADS`` is 1 unless set. They must be set here: the worker preloads deepmd-kit,
    which otherwise writes 0 (TensorFlow's "every core") into the environment that ``dp train`` and LAMMPS inherit."""
    env = {key: value for key, value in os.environ.items() if key not in NOT_FOR_WORKERS}
    env["FIREGEN_LAUNCHPAD"] = str(Path(launchpad_file).resolve())
    if threads:
        env["OMP_NUM_THREADS"] = env["DP_INTRA_OP_PARALLELISM_THREADS"] = str(threads)  # DP_ before TF_ in deepmd-kit
    omp = env.setdefault("OMP_NUM_THREADS", str(cores()))
    for name, value in (("INTRA", omp if omp.isdigit() else cores()), ("INTER", 1)):
        if f"TF_{name}_OP_PARALLELISM_THREADS" not in env:
            env.setdefault(f"DP_{name}_OP_PARALLELISM_THREADS", str(value))
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    env.setdefault(BLOB_CACHE_ENV, str(firegen_home() / "cache" / "blobs"))
    return env


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The GPUs a local worker can be given: ``CUDA_VISIBLE_DEVICES`` when set (empty or ``-1``: none), else the
    indices ``nvidia-smi -L`` lists, else none."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    # "GPU 0: NVIDIA H100 ... (UUID: ...)"; a MIG instance's line is indented and not counted
    return [str(i) for i in range(sum(line.startswith("GPU ") for line in out.splitlines()))]


@dataclass(frozen=True)
class WorkerSlot:
    """One local worker of :func:`plan_workers`: its category, number within it, threads and GPU."""

    kind: str
    index: int
    threads: int
    device: str | None = None

    @property
    def name(self) -> str:
        """``gpu``, ``gpu-2``, ...: its folder under ``<home>/workers`` and its key in ``firegen run``."""
        return self.kind if self.index == 0 else f"{self.kind}-{self.index + 1}"


def plan_workers(gpu: int | None = None, cpu: int | None = None, *, committee: int = 4,
                 n_cores: int | None = None, gpus: list[str] | None = None) -> list[WorkerSlot]:
    """The local workers of ``firegen run``: ``gpu`` and ``cpu`` workers (``None``: automatic) sharing the cores.

    Automatic counts: one gpu worker per visible GPU, each given its own (``CUDA_VISIBLE_DEVICES``); without a GPU,
    one per core up to the committee's size, so that members train side by side. cpu workers: one per core, up to
    the label Fireworks an iteration has at most (:data:`~firegen.workflows.builders.MAX_LABEL_FWS`). Each worker of
    a category runs ``cores // workers`` threads (at least 1). On a CPU-only machine, two one-thread trainings of a
    small model take about as long as one two-thread training (``benchmarks/README.md``, "The main job"): deepmd-kit's
    per-step work is too small to share between threads, and its start-up and freeze are serial.
    """
    n_cores = n_cores or cores()
    gpus = visible_gpus() if gpus is None else gpus
    if gpu is None:
        gpu = len(gpus) or max(1, min(n_cores, committee))
    if cpu is None:
        cpu = max(1, min(n_cores, MAX_LABEL_FWS))
    for what, count in (("--gpu-workers", gpu), ("--cpu-workers", cpu)):
        if count < 1:
            raise ValueError(f"{what} must be at least 1, got {count}")
    slots = [WorkerSlot("gpu", i, max(1, n_cores // gpu), gpus[i % len(gpus)] if gpus else None) for i in range(gpu)]
    return slots + [WorkerSlot("cpu", i, max(1, n_cores // cpu)) for i in range(cpu)]


def start_worker(kind: str, launchpad_file: Path, workdir: Path, sleep: float = DEFAULT_SLEEP,
                 log: Path | None = None, name: str | None = None, threads: int | None = None,
                 device: str | None = None) -> subprocess.Popen:
    """Start one local worker of ``kind`` in ``workdir`` (:func:`firegen.launchers.worker.run`) with ``threads``
    (default: the cores) and GPU ``device``; return its process."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fworker = write_fworker(kind, launchpad_file, workdir, name)
    out = open(log or workdir / "worker.log", "ab")
    return subprocess.Popen(command(launchpad_file, fworker, kind, sleep), cwd=workdir,
                            env=worker_env(launchpad_file, threads, device),
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def stop_workers(procs, wait_s: float = 30) -> None:
    """Stop local workers started by :func:`start_worker`: SIGTERM to each one's process group (the worker and what it
    runs), then SIGKILL to a group still there after ``wait_s`` seconds."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
