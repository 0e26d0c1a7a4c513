"""What the DFT labelers (CP2K, Quantum ESPRESSO, VASP) share: a work folder per calculation, the
MPI command line, custodian with a walltime, the checks on the parsed frame, and the
:class:`~firegen.workflows.steps.label.Label` with its run details.

A DFT labeler subclasses :class:`DFTLabeler` and provides three steps for one structure:
``prepare`` (write the inputs into the work folder, return the files that make up the input),
``execute`` (run the code there, return custodian's corrections) and ``parse`` (a
``dpdata.LabeledSystem`` of the one frame, plus facts such as the code version).
:meth:`DFTLabeler.label` wraps them: a fresh folder under ``workdir`` (the system temp folder by
default), removed after success unless ``keep_files`` and kept after a failure, with its path in
the failure's ``details``.

Failures raise :class:`DFTRunError` (or the original exception) carrying ``details`` (work folder,
command, input sha256, what custodian gave up with) and ``history`` (custodian's corrections);
:func:`~firegen.workflows.steps.label.label_many` copies both onto the ``LabelFailure``.

Units: energy eV, forces eV/Å, virial eV (``-stress * volume``, DeePMD's convention), as dpdata
returns them; :func:`checked_frame` maps them back onto the input atoms (order and orientation).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from firegen.campaign.errors import FatalError, disk_full
from firegen.campaign.plain import plain
from firegen.workflows.steps.label import (_HOST, Label, Labeler, NonFiniteLabelError, _as_bool, _as_float, _as_int,
                                           _jsonable, settings_hash)

__all__ = [
    "DFTLabeler",
    "DFTRunError",
    "RUN_KEYS",
    "checked_frame",
    "child_env",
    "history_from_run_log",
    "mpi_prefix",
    "quiet_output",
    "resolve_command",
    "run_custodian",
    "run_settings",
    "run_subprocess",
    "sha256_files",
    "terminate_process_group",
    "walltime_handler",
    "work_directory",
]

#: Settings that say how and where a calculation runs, not what it computes: they are stored with
#: the label but left out of its ``settings_hash`` (labels from 1 or 8 MPI ranks are the same DFT).
RUN_KEYS = ("command", "mpi_ranks", "omp_threads", "walltime", "max_errors", "workdir", "keep_files")


class DFTRunError(FatalError, RuntimeError):
    """A DFT calculation gave no usable label.

    Attributes:
        details: JSON-able facts (``workdir`` kept for inspection, ``command``, ``input_sha256``,
            ``custodian_error``, ...).
        history: custodian's corrections, oldest first (see :func:`history_from_run_log`).
    """

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None,
                 history: Sequence[Mapping[str, Any]] | None = None):
        super().__init__(message)
        self.details = dict(details or {})
        self.history = list(history or [])


# --------------------------------------------------------------------------------------------
# command line and environment


def resolve_command(kind: str, command: str | None, candidates: Sequence[str], install_hint: str) -> str:
    """The executable command of labeler ``kind``: ``command`` when given (its first word must be
    an executable on ``PATH`` or a path), else the first of ``candidates`` found on ``PATH``.

    Raises:
        ValueError: nothing runnable; the message names the ``command`` setting and ``install_hint``.
    """
    if command is None:
        for name in candidates:
            if shutil.which(name):
                return name
        raise ValueError(f"labeler {kind!r}: none of {', '.join(candidates)} is on PATH; "
                         f"{install_hint}, or set 'command' to the executable")
    if not isinstance(command, str) or not command.strip():
        raise ValueError(f"labeler {kind!r}: setting 'command' must be a non-empty string, got {command!r}")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"labeler {kind!r}: setting 'command' {command!r} is not a valid command line: {exc}") from None
    exe = argv[0]
    if shutil.which(exe) is None and not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise ValueError(f"labeler {kind!r}: setting 'command': executable {exe!r} not found on PATH; "
                         f"{install_hint}, or give the full path")
    return command


def run_settings(kind: str, settings: Mapping[str, Any], *, candidates: Sequence[str], install_hint: str,
                 walltime: float | None = 3600.0, max_errors: int | None = 5,
                 require_command: bool = True) -> dict[str, Any]:
    """The resolved :data:`RUN_KEYS` of ``settings`` (defaults filled in, checked):

    ``command`` (first of ``candidates`` on PATH; with ``require_command=False`` the given
    command or ``candidates[0]``, unchecked, for codes that exist only on the workers),
    ``mpi_ranks`` (1), ``omp_threads`` (1: ``OMP_NUM_THREADS`` of the code; ``None`` keeps the
    environment's), ``walltime`` (s, default ``walltime``; ``None`` = no limit), ``max_errors``
    (custodian corrections, default ``max_errors``; left out when that is ``None``), ``workdir``
    (``None`` = system temp folder), ``keep_files`` (False).
    """
    if require_command:
        command = resolve_command(kind, settings.get("command"), candidates, install_hint)
    else:
        command = settings.get("command") or candidates[0]
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"labeler {kind!r}: setting 'command' must be a non-empty string, got {command!r}")
    out: dict[str, Any] = {
        "command": command,
        "mpi_ranks": _as_int(kind, "mpi_ranks", settings.get("mpi_ranks", 1), positive=True),
    }
    omp = settings.get("omp_threads", 1)
    out["omp_threads"] = None if omp is None else _as_int(kind, "omp_threads", omp, positive=True)
    wt = settings.get("walltime", walltime)
    out["walltime"] = None if wt is None else _as_float(kind, "walltime", wt, positive=True)
    if max_errors is not None:
        out["max_errors"] = _as_int(kind, "max_errors", settings.get("max_errors", max_errors), positive=True)
    workdir = settings.get("workdir")
    if workdir is not None and (not isinstance(workdir, str) or not workdir.strip()):
        raise ValueError(f"labeler {kind!r}: setting 'workdir' must be a folder path or null, got {workdir!r}")
    out["workdir"] = None if workdir is None else str(Path(workdir).expanduser().resolve())
    out["keep_files"] = _as_bool(kind, "keep_files", settings.get("keep_files", False))
    if out["mpi_ranks"] > 1 and require_command:
        try:
            mpi_prefix(out["mpi_ranks"])
        except ValueError as exc:
            raise ValueError(f"labeler {kind!r}: {exc}") from None
    return out


def mpi_prefix(mpi_ranks: int, mpirun: str = "mpirun") -> list[str]:
    """``[]`` for one rank, else ``[mpirun, "-np", N]`` plus ``--allow-run-as-root`` when running
    as root under Open MPI (which refuses root otherwise)."""
    if mpi_ranks <= 1:
        return []
    exe = shutil.which(mpirun)
    if exe is None:
        raise ValueError(f"setting 'mpi_ranks' = {mpi_ranks} needs {mpirun!r} on PATH "
                         f"(Debian: apt-get install openmpi-bin), or set mpi_ranks: 1")
    cmd = [exe, "-np", str(int(mpi_ranks))]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and _is_open_mpi(exe):
        cmd.append("--allow-run-as-root")
    return cmd


_OPEN_MPI: dict[str, bool] = {}


def _is_open_mpi(exe: str) -> bool:
    if exe not in _OPEN_MPI:
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
            _OPEN_MPI[exe] = "open mpi" in (out.stdout + out.stderr).lower()
        except (OSError, subprocess.SubprocessError):
            _OPEN_MPI[exe] = False
    return _OPEN_MPI[exe]


def child_env(omp_threads: int | None) -> dict[str, str]:
    """This process's environment with ``OMP_NUM_THREADS`` set (left as it is for ``None``)."""
    env = dict(os.environ)
    if omp_threads is not None:
        env["OMP_NUM_THREADS"] = str(int(omp_threads))
    return env


def terminate_process_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop ``process`` and its children (it must lead its own session, ``start_new_session=True``):
    SIGTERM to its process group, SIGKILL after ``grace_s`` seconds."""
    if process.poll() is not None:
        return
    try:
        pgid = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_subprocess(argv: Sequence[str], directory: Path, *, stdin_file: str | None, stdout_file: str,
                   stderr_file: str, walltime: float | None, env: Mapping[str, str]) -> int:
    """Run ``argv`` in ``directory`` (its own process group) with files for stdin/stdout/stderr;
    returns the exit code.

    Raises:
        DFTRunError: it ran past ``walltime`` seconds (it is stopped first).
    """
    directory = Path(directory)
    stdin = open(directory / stdin_file) if stdin_file else subprocess.DEVNULL
    try:
        with open(directory / stdout_file, "w") as out, open(directory / stderr_file, "w") as err:
            proc = subprocess.Popen(list(argv), cwd=directory, stdin=stdin, stdout=out, stderr=err,
                                    env=dict(env), start_new_session=True)
            try:
                return proc.wait(timeout=walltime)
            except subprocess.TimeoutExpired:
                terminate_process_group(proc)
                raise DFTRunError(f"{Path(argv[0]).name if argv else 'command'} ran past the walltime of "
                                  f"{walltime:g} s and was stopped",
                                  details={"walltime_exceeded": True}) from None
            finally:
                if proc.poll() is None:  # interrupted: leave nothing running
                    terminate_process_group(proc)
    finally:
        if stdin_file:
            stdin.close()


# --------------------------------------------------------------------------------------------
# custodian


def walltime_handler(walltime: float | None):
    """A custodian monitor that stops the job once ``walltime`` seconds have passed since it was
    made (all attempts together) and gives up (no correction); ``None`` when there is no limit."""
    if walltime is None:
        return None
    from custodian.custodian import ErrorHandler

    class WalltimeExceededHandler(ErrorHandler):
        """Stop the job after ``walltime`` seconds, counted from the handler's creation."""

        is_monitor = True
        is_terminating = True
        raises_runtime_error = True

        def __init__(self, walltime: float):
            self.walltime = float(walltime)
            self._deadline = time.monotonic() + self.walltime

        def check(self, directory="./") -> bool:
            return time.monotonic() > self._deadline

        def correct(self, directory="./") -> dict:
            return {"errors": [f"walltime of {self.walltime:g} s exceeded"], "actions": []}

    return WalltimeExceededHandler(walltime)


def run_custodian(jobs: Sequence, handlers: Iterable, validators: Iterable, directory: Path, *,
                  max_errors: int, polling_time_step: float = 1.0, monitor_freq: int = 5) -> list[dict]:
    """Run ``jobs`` under custodian in ``directory``; returns the corrections it applied
    (:func:`history_from_run_log`, empty when none were needed).

    Monitors are checked every ``polling_time_step * monitor_freq`` seconds.

    Raises:
        DFTRunError: custodian gave up (too many errors, an unrecoverable error, a failed
            validation, a non-zero exit code); ``history`` holds the corrections tried and
            ``details["custodian_error"]`` the custodian exception class.
    """
    from custodian import Custodian
    from custodian.custodian import CustodianError

    c = Custodian([h for h in handlers if h is not None], list(jobs), list(validators),
                  max_errors=max_errors, max_errors_per_job=max_errors,
                  polling_time_step=polling_time_step, monitor_freq=monitor_freq,
                  directory=str(directory), terminate_on_nonzero_returncode=True)
    try:
        run_log = c.run()
    except CustodianError as exc:
        history = history_from_run_log(c.run_log)
        last = c.run_log[-1] if c.run_log else {}
        validator = last.get("validator")
        details = {"custodian_error": type(exc).__name__}
        if validator is not None:
            details["validator"] = _class_name(validator)
        what = "; ".join(e for h in history[-1:] for e in h["errors"])
        raise DFTRunError(f"custodian gave up ({type(exc).__name__}: {getattr(exc, 'message', exc)})"
                          + (f" after: {what}" if what else ""), details=details, history=history) from exc
    return history_from_run_log(run_log)


def _class_name(obj) -> str:
    if isinstance(obj, Mapping):  # a run log read back from JSON
        return str(obj.get("@class", obj))
    return type(obj).__name__


def history_from_run_log(run_log: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Custodian's corrections as JSON-able dicts, oldest first:
    ``{"job": n (1-based), "handler": class name, "errors": [str], "actions": JSON text}``.

    Actions are kept as JSON text so that no nested arrays reach the database (FerretDB 1.x
    rejects them).
    """
    out = []
    for job_n, entry in enumerate(run_log, start=1):
        for corr in entry.get("corrections", []):
            out.append({
                "job": job_n,
                "handler": _class_name(corr.get("handler")),
                "errors": [str(e) for e in corr.get("errors", [])],
                "actions": json.dumps(plain(corr.get("actions", []), other="text"), sort_keys=True),
            })
    return out


# --------------------------------------------------------------------------------------------
# work folder and input hash


@contextlib.contextmanager
def work_directory(workdir: str | None, prefix: str, keep_files: bool):
    """A fresh folder under ``workdir`` (created if missing; the system temp folder for ``None``).

    Removed on success unless ``keep_files``; kept when the body raises, and its path is added to
    the exception's ``details`` (a dict attribute, created if missing).
    """
    root = Path(workdir).expanduser() if workdir else Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        yield path
    except Exception as exc:
        _add_details(exc, {"workdir": str(path)})
        raise
    if not keep_files:
        shutil.rmtree(path, ignore_errors=True)


def _add_details(exc: BaseException, extra: Mapping[str, Any]) -> None:
    details = getattr(exc, "details", None)
    merged = {**extra, **details} if isinstance(details, Mapping) else dict(extra)
    with contextlib.suppress(AttributeError, TypeError):
        exc.details = merged


def sha256_files(directory: Path, names: Sequence[str]) -> str:
    """sha256 over ``names`` (in order) and their contents: the identity of one calculation's input."""
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0")
        h.update((Path(directory) / name).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# parsing checks


@contextlib.contextmanager
def quiet_output():
    """Silence what the wrapped libraries print to stdout and log: cp2kdata's reader (which
    replaces dpdata's ``cp2k/output`` when installed) notes virial units, DP-GEN's CP2K input
    renderer prints top-level keywords."""
    log = logging.getLogger("cp2kdata")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        log.setLevel(level)


def checked_frame(system, atoms, code: str, *, position_tol: float = 1e-3,
                  cell_tol: float = 1e-4) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Energy (eV), forces (N x 3, eV/Å) and virial (3 x 3, eV, or ``None``) of the one frame of
    the dpdata ``LabeledSystem`` ``system``, in the order and orientation of ``atoms``.

    Checks that the frame is the input structure: same number of atoms, same species in the same
    order, same cell up to a rotation (dpdata rotates some cells to lower-triangular form; forces
    and virial are rotated back) and same positions within ``position_tol`` Å (modulo the cell);
    and that every number is finite.

    Raises:
        ValueError: the output does not describe the input structure.
        NonFiniteLabelError: NaN or infinite energy, forces or virial.
    """
    nframes = system.get_nframes()
    if nframes != 1:
        raise ValueError(f"{code} output holds {nframes} frames, expected 1 (a single point)")
    n = len(atoms)
    names = list(system["atom_names"])
    species = [str(names[t]) for t in system["atom_types"]]
    if len(species) != n:
        raise ValueError(f"{code} output has {len(species)} atoms, the input structure {n}")
    want = atoms.get_chemical_symbols()
    if species != want:
        bad = next(i for i, (a, b) in enumerate(zip(species, want, strict=True)) if a != b)
        raise ValueError(f"{code} output lists atom {bad} as {species[bad]}, the input as {want[bad]} "
                         f"(atom order changed?)")
    cell_in = np.asarray(atoms.cell[:], dtype=float)
    cell_out = np.asarray(system["cells"][0], dtype=float)
    rot = np.linalg.solve(cell_in, cell_out)  # cell_out = cell_in @ rot
    if not np.allclose(rot @ rot.T, np.eye(3), atol=cell_tol):
        raise ValueError(f"{code} output cell {cell_out.tolist()} is not the input cell "
                         f"{cell_in.tolist()} (Å), nor a rotation of it")
    pos_out = np.asarray(system["coords"][0], dtype=float) @ rot.T
    dfrac = (pos_out - atoms.positions) @ np.linalg.inv(cell_in)
    dfrac -= np.round(dfrac)
    dist = np.linalg.norm(dfrac @ cell_in, axis=1)
    if dist.max() > position_tol:
        i = int(dist.argmax())
        raise ValueError(f"{code} output position of atom {i} differs from the input by {dist[i]:.3g} Å "
                         f"(> {position_tol} Å)")
    energy = float(np.asarray(system["energies"]).reshape(-1)[0])
    forces = np.asarray(system["forces"][0], dtype=float).reshape(n, 3) @ rot.T
    virial = None
    if system.has_virial():
        w = np.asarray(system["virials"][0], dtype=float).reshape(3, 3)
        virial = rot @ w @ rot.T
    bad = []
    if not np.isfinite(energy):
        bad.append(f"energy={energy}")
    if not np.isfinite(forces).all():
        bad.append(f"forces on {int((~np.isfinite(forces).all(axis=1)).sum())} atom(s)")
    if virial is not None and not np.isfinite(virial).all():
        bad.append("virial")
    if bad:
        raise NonFiniteLabelError(f"{code} returned non-finite {'; '.join(bad)}")
    return energy, forces, virial


# --------------------------------------------------------------------------------------------
# the labeler


class DFTLabeler(Labeler):
    """Base of the labelers that run an external DFT code in a work folder.

    Subclasses set ``kind`` and ``code`` and implement :meth:`prepare`, :meth:`execute` and
    :meth:`parse`. ``settings`` are the resolved settings (defaults filled in, JSON-able) and must
    contain the :data:`RUN_KEYS`, which the hash leaves out; ``hash_extra`` replaces or adds hashed
    entries for what the settings only point to (e.g. ``{"template": "sha256:..."}`` instead of the
    template's path).
    """

    kind = ""
    code = ""

    def __init__(self, settings: Mapping[str, Any], hash_extra: Mapping[str, Any] | None = None):
        self.settings = _jsonable(dict(settings))
        science = {k: v for k, v in self.settings.items() if k not in RUN_KEYS}
        science.update(hash_extra or {})
        self._hash = settings_hash(self.kind, science)
        self.version = "unknown"  # the code's version, from the latest output parsed

    @property
    def settings_hash(self) -> str:
        return self._hash

    def __repr__(self) -> str:
        return f"{type(self).__name__}(settings={self.settings!r})"

    # steps a code implements ------------------------------------------------------------------
    def prepare(self, atoms, directory: Path) -> dict:
        """Write the inputs; return ``{"files": [input file names], "argv": [command line]}`` plus
        whatever :meth:`parse` needs (e.g. the atom order written)."""
        raise NotImplementedError

    def execute(self, directory: Path, argv: list[str]) -> list[dict]:
        """Run the code; return custodian's corrections (``[]`` without custodian)."""
        raise NotImplementedError

    def parse(self, directory: Path, prepared: dict) -> tuple[Any, dict]:
        """``(dpdata.LabeledSystem, facts)``, the system's atoms in the order of the input
        structure; facts may hold ``code_version``, ``n_scf_steps``."""
        raise NotImplementedError

    def _parse_checked(self, directory: Path, prepared: dict):
        """:meth:`parse`, with an output the reader cannot make sense of (a ``TypeError`` or ``IndexError`` deep in
        dpdata when the energy or the forces block is cut short or garbled) turned into a :class:`DFTRunError`
        that says so."""
        try:
            return self.parse(directory, prepared)
        except (DFTRunError, NonFiniteLabelError, ImportError):
            raise
        except Exception as exc:
            text = str(exc).strip().splitlines()
            raise DFTRunError(f"{self.code} output could not be read, it is cut short or corrupted "
                              f"({type(exc).__name__}: {text[0][:200] if text else ''})",
                              details={"output_unreadable": True}) from exc

    # the template -------------------------------------------------------------------------------
    def label(self, atoms) -> Label:
        """Label one structure; raises :class:`DFTRunError` (or the parser's/checker's exception)
        with ``details`` (the kept work folder among them) and ``history`` on failure."""
        t0 = time.perf_counter()
        if len(atoms) == 0:
            raise ValueError(f"labeler {self.kind!r}: the structure has no atoms")
        if not atoms.pbc.all():
            raise ValueError(f"labeler {self.kind!r} labels periodic cells only; the structure has "
                             f"pbc={atoms.pbc.tolist()} (set a cell and pbc=True)")
        s = self.settings
        details: dict[str, Any] = {"mpi_ranks": s["mpi_ranks"]}
        with work_directory(s["workdir"], f"firegen-{self.kind}-", s["keep_files"]) as directory:
            try:
                prepared = self.prepare(atoms.copy(), directory)
                details["command"] = shlex.join(prepared["argv"])
                details["input_sha256"] = sha256_files(directory, prepared["files"])
                history = self.execute(directory, prepared["argv"])
                system, facts = self._parse_checked(directory, prepared)
                energy, forces, virial = checked_frame(system, atoms, self.code)
                if virial is None:  # every DFT labeler asks its code for the stress tensor
                    raise DFTRunError(f"{self.code} output has no stress tensor although the run computed one: "
                                      f"the output is cut short or corrupted (see the kept work folder)",
                                      details={"output_unreadable": True})
            except Exception as exc:
                _add_details(exc, details)
                full = disk_full(directory)
                if full and "disk of" not in str(exc):  # what failed is most likely the writes to that disk
                    raise DFTRunError(f"{self.code} failed: {full}; {str(exc).strip() or type(exc).__name__}",
                                      details={**(getattr(exc, "details", None) or {}), "disk_full": True},
                                      history=getattr(exc, "history", None)) from exc
                raise
            if facts.get("code_version"):
                self.version = str(facts["code_version"])
            details.update({k: v for k, v in facts.items() if v is not None})
            details["corrections"] = history
            if s["keep_files"]:
                details["workdir"] = str(directory)
        return Label(
            energy=energy,
            forces=forces,
            virial=virial,
            code=self.code,
            version=self.version,
            settings=dict(self.settings),
            settings_hash=self._hash,
            walltime=time.perf_counter() - t0,
            host=_HOST,
            kind=self.kind,
            details=_jsonable(details),
        )
