"""An explore Firework: MD with the iteration's committee for one (system, condition), its candidates stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from firegen.campaign.config import CampaignConfig
from firegen.campaign.conditions import MDCondition
from firegen.campaign.convergence import task_key
from firegen.campaign.records import ExplorationSummary
from firegen.campaign.seeds import md_seed
from firegen.db.repository import ResultsStore
from firegen.workflows.steps import explore as md
from firegen.workflows.steps import sanity
from firegen.workflows.steps import select as selection


def explore(store: ResultsStore, cfg: CampaignConfig, iteration: int, stage: int, system: str, condition: int,
            workdir: Path, fw_id=None, lmp: str = "lmp") -> ExplorationSummary:
    """Run one exploration and store its candidates (with full origin) and its summary (on the
    iteration, under ``explorations.<task key>``). A rerun returns the stored summary."""
    key = task_key(system, condition)
    done = (store.get_iteration(cfg.name, iteration) or {}).get("explorations", {}).get(key)
    if done:
        return ExplorationSummary.from_doc(done)
    models = store.committee(cfg.name, iteration)
    paths = [store.blobs.fetch(m["file_id"], workdir / "models" / f"graph.{m['member']:03d}.pb") for m in models]
    st = cfg.stages[stage]
    cond = MDCondition(**st.conditions()[condition], key=st.condition_keys()[condition],
                       seed=md_seed(cfg.name, iteration, system, condition))
    atoms = ResultsStore.atoms(store.get_campaign(cfg.name)["systems"][system])
    engine = cfg.exploration.engine
    if engine == "lammps" and not md.lammps_available(lmp):
        engine = "ase"  # no LAMMPS on this worker: the documented fallback (recorded with the counts)
    run_dir = workdir / "md"
    if engine == "lammps":
        md.write_lammps_inputs(run_dir, atoms, cfg.type_map, paths, cond, masses=cfg.masses())
        result = md.run_lammps(run_dir, lmp)
    else:
        result = md.run_ase_md(run_dir, atoms, cfg.type_map, paths, cond)
    trust = cfg.selection.trust
    codes = selection.classify(result.max_devi_f, trust.f_lo, trust.f_hi,
                               result.max_devi_v if trust.v_lo is not None else None, trust.v_lo, trust.v_hi)
    codes, cut, cut_reason = sanity.cut_trajectory(codes, result.frames, cfg.exploration.min_distance_ratio,
                                                   frame_energies_per_atom(result), cfg.exploration.max_energy_rise)
    model_ids = [m["_id"] for m in models]
    items = []
    for k in np.flatnonzero(codes == selection.CANDIDATE):
        frame = result.frames[k]
        origin = {"kind": "explored", "iteration": iteration, "stage": stage, "stage_name": st.name,
                  "system": system, "condition": cond.as_dict(), "condition_index": condition,
                  "model_ids": model_ids, "fw_id": fw_id, "frame": int(k), "step": int(result.steps[k]),
                  "engine": result.engine}
        deviation = {"max_f": float(result.max_devi_f[k]), "max_v": float(result.max_devi_v[k])}
        items.append({"species": frame.get_chemical_symbols(), "cell": frame.cell.array, "positions": frame.positions,
                      "pbc": frame.pbc, "origin": origin, "status": "candidate", "model_deviation": deviation})
    new = keep_candidates(store, cfg.name, iteration, key, items)
    edges = deviation_edges(trust.f_lo, trust.f_hi)
    hist = np.histogram(np.nan_to_num(result.max_devi_f, nan=1e9), bins=edges)[0]
    summary = ExplorationSummary(system=system, condition=cond.as_dict(), engine=result.engine,
                                 **selection.counts(codes), new_candidates=int(new),
                                 md_seconds=float(result.wall_time), max_devi_f_edges=edges,
                                 max_devi_f_hist=[int(n) for n in hist], cut_at_frame=cut, cut_reason=cut_reason)
    store.set_iteration_fields(cfg.name, iteration, {f"explorations.{key}": summary.as_dict()})
    store.add_iteration_seconds(cfg.name, iteration, "explore_s", result.wall_time)
    return summary


def keep_candidates(store: ResultsStore, campaign: str, iteration: int, task: str, items: list[dict]) -> int:
    """Store an exploration's candidate frames (``add_configurations`` items) and the task's candidate
    list (:mod:`firegen.db.candidate_lists`, what select reads); returns how many frames were new."""
    stored = store.add_configurations(campaign, items)
    store.store_candidate_list(campaign, iteration, task, stored)
    return sum(inserted for _, inserted in stored)


def frame_energies_per_atom(result) -> np.ndarray | None:
    """Potential energy per atom (eV/atom) of each explored frame, when the engine reported it
    (``atoms.info["energy"]`` in eV, or ``result.extra["energies"]``); else None."""
    energies = result.extra.get("energies") if result.extra else None
    if energies is None:
        energies = [atoms.info.get("energy") for atoms in result.frames]
        if not energies or any(e is None for e in energies):
            return None
    if len(energies) != len(result.frames):
        return None
    return np.asarray(energies, dtype=float) / np.array([len(a) for a in result.frames], dtype=float)


def deviation_edges(f_lo: float, f_hi: float) -> list[float]:
    """Histogram bin edges (eV/Å) for the max force deviation: 0, ten per decade from 0.01 to 10 eV/Å
    (evenly spaced on a log axis), both trust levels, and 1e10 (past it: a deviation that is not a number)."""
    decades = {float(f"{x:.4g}") for x in np.logspace(-2, 1, 31)}
    return sorted(decades | {0.0, 1e10, float(f_lo), float(f_hi)})
