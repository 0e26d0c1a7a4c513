"""Shared pieces of the exploration engines: the MD condition, the result, the model-deviation file.

See :mod:`firegen.workflows.steps.explore` for units and the meaning of the deviation columns.
"""

from __future__ import annotations

from firegen.workflows.steps import StepError, protocols

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


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
        temperature_stop: Temperature ramp: the thermostat target goes linearly from
            ``temperature`` to this (K) over the run (cooling when lower). None: constant.
        strain: Fixed strain applied to the starting cell (atoms scaled with it) before the
            MD, a spec ``{mode, direction, value}`` of :mod:`~firegen.workflows.steps.protocols`.
        deform: Continuous deformation over the run (LAMMPS ``fix deform ... remap x``),
            reaching the spec's strain at the last step; ``nvt`` only, LAMMPS only.
        melt_quench: Melt-quench recipe (keys
            :data:`~firegen.workflows.steps.protocols.MELT_QUENCH_KEYS`; ps, K, K/ps): heat
            from ``temperature`` to the melt, hold, cool back at the rate, relax (all NVT),
            then ``ensemble`` (an NPT one) at ``temperature`` and ``pressure``. ``nsteps``
            must be the sum of the segments (:func:`~firegen.workflows.steps.protocols.melt_quench_nsteps`).
        key: Short human label (e.g. ``T300-P1``, ``ramp10-2000K``) for tables and
            per-condition bookkeeping; default built by
            :func:`~firegen.workflows.steps.protocols.condition_key`.
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
    temperature_stop: float | None = None
    strain: dict[str, Any] | None = None
    deform: dict[str, Any] | None = None
    melt_quench: dict[str, Any] | None = None
    key: str | None = None

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
        self._check_protocol()
        if self.key is None:
            object.__setattr__(self, "key", protocols.condition_key(self))
        elif not isinstance(self.key, str) or not self.key.strip():
            raise ValueError(f"MDCondition.key must be a non-empty text label, got {self.key!r}")

    def _check_protocol(self) -> None:
        """Validate (and normalize) temperature_stop, strain, deform and melt_quench."""
        stop = self.temperature_stop
        if stop is not None:
            if not _is_real(stop) or not math.isfinite(stop) or stop <= 0:
                raise ValueError(f"MDCondition.temperature_stop must be a positive number of "
                                 f"kelvin (ramp end) or None, got {stop!r}")
            object.__setattr__(self, "temperature_stop", float(stop))
        for name in ("strain", "deform"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, protocols.check_strain(getattr(self, name),
                                                                      f"MDCondition.{name}"))
        if self.deform is not None and self.ensemble != "nvt":
            raise ValueError(f"MDCondition.deform needs ensemble 'nvt' (got {self.ensemble!r}): "
                             "a barostat would fight the imposed box change")
        if self.melt_quench is None:
            return
        recipe = protocols.check_melt_quench(self.melt_quench, self.temperature,
                                             "MDCondition.melt_quench")
        object.__setattr__(self, "melt_quench", recipe)
        if self.ensemble == "nvt":
            raise ValueError("MDCondition.melt_quench ends with an NPT segment: use ensemble "
                             "'npt', 'npt-aniso' or 'npt-tri' and give its pressure (bar)")
        clash = [n for n in ("temperature_stop", "strain", "deform") if getattr(self, n) is not None]
        if clash:
            raise ValueError(f"MDCondition.melt_quench cannot be combined with {clash}: the "
                             "recipe sets its own temperatures; leave those None")
        total = protocols.melt_quench_nsteps(recipe, self.temperature, self.dt)
        if self.nsteps != total:
            raise ValueError(f"MDCondition.nsteps = {self.nsteps} must equal the melt-quench "
                             f"segments' total {total} steps at dt = {self.dt:g} fs "
                             "(protocols.melt_quench_nsteps)")

    @property
    def n_frames(self) -> int:
        """Number of saved frames (and model-deviation rows): steps 0, trj_freq, ..."""
        return self.nsteps // self.trj_freq + 1

    def label(self) -> str:
        """Short human string, e.g. ``"nvt T=300K"``, ``"npt T=300K P=1bar"`` or
        ``"nvt T=10-2000K shear_xy+0.5 (deform)"``."""
        if self.melt_quench:
            text = (f"{self.ensemble} melt-quench {self.temperature:g}K-"
                    f"{self.melt_quench['melt_temperature']:g}K-{self.temperature:g}K")
        elif self.temperature_stop is not None:
            text = f"{self.ensemble} T={self.temperature:g}-{self.temperature_stop:g}K"
        else:
            text = f"{self.ensemble} T={self.temperature:g}K"
        if self.pressure is not None:
            text += f" P={self.pressure:g}bar"
        if self.strain:
            text += f" {protocols.strain_label(self.strain)}"
        if self.deform:
            text += f" {protocols.strain_label(self.deform)} (deform)"
        return text

    def segments(self) -> list[protocols.Segment]:
        """The run's segments (one, or five for melt-quench), see :func:`protocols.segments`."""
        return protocols.segments(self)

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


