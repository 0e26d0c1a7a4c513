"""The observables of physics-aware convergence, measured with one committee member (in its train Firework,
right after training: one per member, on gpu workers, side by side).

For each observable of the iteration's stage (``converged_when.observables``) the member runs one short MD
of the observable's protocol from its system's starting structure (LAMMPS with ``pair_style deepmd``, or ASE
with deepmd's calculator where LAMMPS is missing) and measures it; observables that share a protocol
share the run. The velocity seed is the same for every member and iteration (it depends on the campaign,
system and protocol only), so members start identically and differ by their potentials. Each measurement
goes to the iteration as ``observables.<key>.m<member>`` (with the run's engine, seed and seconds; a run that
fails stores ``error_message`` instead, and the select step says so); the time to ``timings.observe_s``.
A rerun measures only what is missing.
"""

from __future__ import annotations

import time
from pathlib import Path

from firegen.campaign.config import CampaignConfig
from firegen.campaign.errors import FatalError, is_transient
from firegen.campaign.seeds import seed_from
from firegen.db.repository import ResultsStore
from firegen.workflows.jobs.properties import run_model_md
from firegen.workflows.steps.observables import measure, rdf_range
from firegen.workflows.steps.properties_md import PropertyMD


def observable_seed(campaign: str, system: str, protocol: PropertyMD) -> int:
    """The initial-velocity seed of an observable run, in ``[1, 2**31 - 2]``: the same for every member and
    iteration."""
    return seed_from("observable", campaign, system, protocol.label(), str(protocol.production_ps)) % (2**31 - 2) + 1


def observe_member(store: ResultsStore, cfg: CampaignConfig, iteration: int, member: int, model_path: Path,
                   workdir: Path, lmp: str = "lmp") -> dict:
    """Measure the iteration's stage observables with one member's model; returns ``{key: measurement}`` of
    what it measured now (empty when the stage names none or all were measured before)."""
    if not any(st.converged_when.observables for st in cfg.stages):
        return {}
    it = store.get_iteration(cfg.name, iteration) or {}
    stage = cfg.stages[it.get("stage", 0)]
    stored = it.get("observables") or {}
    todo = [(key, system, obs) for key, system, obs in stage.observables()
            if f"m{member}" not in (stored.get(key) or {})]
    if not todo:
        return {}
    systems = (store.get_campaign(cfg.name) or {}).get("systems") or {}
    runs: dict[tuple, list] = {}
    for key, system, obs in todo:
        if system not in systems:
            raise FatalError(f"stage '{stage.name}': observable {key} names system {system!r}, which the campaign "
                             f"does not have. Fix: use one of: {', '.join(sorted(systems))}")
        missing = [e for e in obs.elements() if e not in cfg.type_map]
        if missing:
            raise FatalError(f"stage '{stage.name}': observable {key} names {', '.join(missing)}, not in type_map. "
                             f"Fix: use elements of type_map: {', '.join(cfg.type_map)}")
        runs.setdefault((system, tuple(sorted(obs.protocol().items()))), []).append((key, obs))
    measured = {}
    for n, ((system, protocol_items), wanted) in enumerate(runs.items()):
        protocol = PropertyMD(**dict(protocol_items), seed=1)
        protocol = PropertyMD(**{**protocol.as_dict(), "seed": observable_seed(cfg.name, system, protocol)})
        atoms = ResultsStore.atoms(systems[system])
        t0 = time.perf_counter()
        try:
            traj = run_model_md(atoms, cfg.type_map, cfg.masses(), model_path, protocol,
                                Path(workdir) / f"observe{n}", lmp)
            error, engine = None, traj.engine
        except Exception as exc:  # noqa: BLE001 - a run that blows up is a measurement: the members disagree
            if is_transient(exc):  # killed from outside: the Firework's retry runs it again
                raise
            traj, error, engine = None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", None
        for key, obs in wanted:
            if traj is not None:
                try:
                    result = measure(obs, traj.frames, traj.dt_ps, rdf_range(atoms))
                except ValueError as exc:
                    result = {"error_message": str(exc)}
            else:
                result = {"error_message": error}
            result.update(engine=engine, seed=protocol.seed, seconds=time.perf_counter() - t0)
            measured[key] = result
        store.add_iteration_seconds(cfg.name, iteration, "observe_s", time.perf_counter() - t0)
    store.set_iteration_fields(cfg.name, iteration, {f"observables.{k}.m{member}": v for k, v in measured.items()})
    return measured
