"""The ASE engine (fallback when LAMMPS is missing): deepmd-kit's ASE calculator drives ase.md."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


from firegen.workflows.steps.md import (ASE_TRAJ_FILE, DEVI_FILE, ExplorationError, ExplorationResult,
                                         MDCondition, _annotate, _check_atoms, _check_models, _check_type_map,
                                         _result, parse_model_devi)
from firegen.campaign.protocols import Segment, apply_strain

# --------------------------------------------------------------------------- ASE


def _ase_dynamics(atoms: Atoms, ensemble: str, temperature: float, pressure: float | None,
                  cond: MDCondition):
    """The ASE integrator closest to LAMMPS' fix for ``ensemble`` at ``temperature`` (K) and
    ``pressure`` (bar): Nosé-Hoover chain (``nvt``) or MTK barostats; damping from ``cond``."""
    from ase import units
    from ase.md import nose_hoover_chain as nhc

    timestep = cond.dt * units.fs
    tdamp = cond.tau_t * 1000.0 * units.fs
    if ensemble == "nvt":
        return nhc.NoseHooverChainNVT(
            atoms, timestep=timestep, temperature_K=temperature, tdamp=tdamp
        )
    pdamp = cond.tau_p * 1000.0 * units.fs
    kwargs = dict(
        timestep=timestep,
        temperature_K=temperature,
        pressure_au=pressure * units.bar,
        tdamp=tdamp,
        pdamp=pdamp,
    )
    if ensemble == "npt":
        return nhc.IsotropicMTKNPT(atoms, **kwargs)
    if ensemble == "npt-aniso":
        masked = getattr(nhc, "MaskedMTKNPT", None)
        if masked is None:  # older ASE: fall back to full cell fluctuations
            return nhc.MTKNPT(atoms, **kwargs)
        return masked(atoms, mask=(True, True, True), **kwargs)
    return nhc.MTKNPT(atoms, **kwargs)


def ramp_blocks(seg: Segment, cond: MDCondition) -> list[tuple[int, float]]:
    """How the ASE engine runs one segment: ``(steps, target temperature K)`` blocks.

    A constant segment is one block. A ramp becomes a staircase: blocks of about five
    thermostat times (at least four blocks, at most one per step), each at the ramp's
    temperature at the block's middle. ASE's integrators have no ramped target, so each
    block is a fresh integrator (as LAMMPS' ``unfix``/``fix`` between segments).
    """
    if seg.t_start == seg.t_stop:
        return [(seg.nsteps, seg.t_start)]
    tau_steps = max(1, round(cond.tau_t * 1000.0 / cond.dt))
    block = max(1, min(5 * tau_steps, -(-seg.nsteps // 4)))
    out, done = [], 0
    while done < seg.nsteps:
        n = min(block, seg.nsteps - done)
        frac = (done + 0.5 * n) / seg.nsteps
        out.append((n, seg.t_start + frac * (seg.t_stop - seg.t_start)))
        done += n
    return out


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
    Maxwell-Boltzmann initial velocities (``seed``, zero total momentum). A fixed
    ``strain`` is applied to the start; melt-quench runs its segments in turn; ramps run as
    a staircase (:func:`ramp_blocks`). Continuous ``deform`` is LAMMPS-only (ValueError).
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
    if condition.deform is not None:
        raise ValueError(
            f"the ASE engine cannot run a continuous deformation ({condition.label()}); "
            "use the LAMMPS engine (exploration.engine: lammps) or a fixed strain"
        )
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

    md_atoms = apply_strain(atoms, condition.strain)
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
    energies: list[float] = []  # potential energy (eV) of each saved frame, from the driving model

    def save() -> None:
        saved.append((md_atoms.get_positions().copy(), np.asarray(md_atoms.cell[:]).copy()))
        energies.append(float(md_atoms.get_potential_energy()))

    start = time.perf_counter()
    done = 0  # steps run so far, over all segments and blocks
    try:
        for seg in c.segments():
            for n, temperature in ramp_blocks(seg, c):
                dyn = _ase_dynamics(md_atoms, seg.ensemble, temperature, seg.pressure, c)

                def observe(dyn=dyn, offset=done) -> None:
                    step = offset + dyn.nsteps
                    if step % c.trj_freq == 0 and step == len(saved) * c.trj_freq:
                        save()  # each block's first call repeats the previous block's last step

                dyn.attach(observe, interval=1)
                dyn.run(n)
                done += n
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
    return _result(devi, frames, wall, "ase", workdir, energies=np.array(energies))
