"""Property Fireworks: production MD with a stored model at each temperature of a ladder (gpu), then the
Arrhenius fit over the ladder (cpu); results in the ``properties`` collection (:mod:`firegen.db.properties`).

The model is the campaign's final model unless another stored model is named; the MD uses its compressed
file when it has one. Every run is keyed by (campaign, model, system, protocol label), so a rerun replaces
nothing it finished: it returns the stored document.
"""

from __future__ import annotations

import time
from pathlib import Path

from bson import ObjectId
from fireworks import Firework, Workflow

from firegen.campaign.errors import FatalError
from firegen.campaign.seeds import seed_from
from firegen.db.properties import PropertyStore, property_key
from firegen.db.repository import ResultsStore
from firegen.workflows.steps.properties_analysis import AnalysisSettings, analyse_trajectory
from firegen.workflows.steps.properties_md import PropertyMD, run_property_ase, run_property_lammps, write_property_lammps
from firegen.workflows.steps.properties_transport import arrhenius_fit
from firegen.workflows.steps.lammps import lammps_available
from firegen.workflows.tasks import ArrheniusTask, PropertyMDTask


def property_seed(campaign: str, model_id, system: str, label: str) -> int:
    """The initial-velocity seed of one property run, in ``[1, 2**31 - 2]`` (LAMMPS' range)."""
    return seed_from("properties", campaign, str(model_id), system, label) % (2**31 - 2) + 1


def resolve_model(store: ResultsStore, campaign: str, model_id: str | None) -> dict:
    """The model to run: ``model_id`` (any stored model with a file), else the campaign's final model."""
    if model_id is None:
        doc = PropertyStore(store.db).final_model(campaign)
        if doc is None or not doc.get("file_id"):
            raise FatalError(f"campaign {campaign} has no final model. Fix: run `firegen finalize {campaign}` first, "
                             "or name a stored model with --model")
        return doc
    doc = store.get_model(model_id)
    if doc is None or not doc.get("file_id"):
        raise FatalError(f"model {model_id} is not stored with a file. Fix: name a model id from `firegen export "
                         "model` or the report")
    return doc


def md_property(store: ResultsStore, campaign: str, model_id: str, system: str, md: dict, analysis: dict,
                workdir: Path, lmp: str = "lmp") -> dict:
    """One production run and its analysis, stored; a stored run is returned as it is.

    Args:
        md: :class:`PropertyMD` fields (``seed`` derived from what the run is when absent).
        analysis: :class:`AnalysisSettings` fields.
    """
    props = PropertyStore(store.db)
    model = resolve_model(store, campaign, model_id)
    protocol = PropertyMD(**{"seed": property_seed(campaign, model["_id"], system, PropertyMD(**md).label()), **md})
    key = property_key(campaign, model["_id"], system, "md", protocol.label())
    stored = props.get(key)
    if stored is not None:
        return {"property_id": key, "skipped": True}
    doc = store.get_campaign(campaign) or {}
    if system not in (doc.get("systems") or {}):
        raise FatalError(f"campaign {campaign} has no system {system!r}. Fix: use one of: "
                         f"{', '.join(sorted(doc.get('systems') or {}))}")
    atoms = ResultsStore.atoms(doc["systems"][system])
    type_map = list(doc["type_map"])
    file_id = model.get("compressed_file_id") or model["file_id"]
    model_path = store.blobs.fetch(file_id, Path(workdir) / "model" / "graph.pb")
    settings = AnalysisSettings(**{**analysis, "fit_window_ps": tuple(analysis["fit_window_ps"])
                                   if analysis.get("fit_window_ps") else None})
    t0 = time.perf_counter()
    masses = (doc.get("config") or {}).get("masses") or None
    traj = run_model_md(atoms, type_map, masses or [float(m) for m in _masses(type_map)], model_path, protocol,
                        Path(workdir) / "md", lmp)
    results = analyse_trajectory(traj.frames, traj.dt_ps, protocol.temperature_K, settings,
                                 fixed_cell=protocol.ensemble == "nvt")
    props.store(md_document(campaign, model, system, protocol, settings, results, traj.engine, traj.wall_time,
                            time.perf_counter() - t0))
    return {"property_id": key, "seconds": time.perf_counter() - t0}


def md_document(campaign: str, model: dict, system: str, protocol: PropertyMD, settings: AnalysisSettings,
                results: dict, engine: str, wall_s: float, seconds: float) -> dict:
    """The ``properties`` document of one MD run (``kind: md``) with its provenance: the model, the protocol
    (seed included), the engine, the analysis settings and the results of :func:`analyse_trajectory`."""
    return {"_id": property_key(campaign, model["_id"], system, "md", protocol.label()), "campaign": campaign,
            "model_id": model["_id"], "system": system, "kind": "md",
            "model": {"iteration": model.get("iteration"), "member": model.get("member"),
                      "kind": model.get("kind", "committee"), "compressed": bool(model.get("compressed_file_id"))},
            "md": {**protocol.as_dict(), "label": protocol.label(), "engine": engine, "wall_s": wall_s},
            "analysis": settings.as_dict(), "results": results, "seconds": seconds}


def run_model_md(atoms, type_map: list[str], masses: list[float], model_path: Path, protocol: PropertyMD,
                 workdir: Path, lmp: str = "lmp"):
    """One run of ``protocol`` with one DeePMD model: LAMMPS (``pair_style deepmd``) when this worker has it,
    else ASE with deepmd's calculator; returns the sampled :class:`~.properties_md.Trajectory`."""
    if lammps_available(lmp):
        write_property_lammps(Path(workdir), atoms, type_map, model_path, protocol, masses)
        return run_property_lammps(Path(workdir), lmp)
    from deepmd.calculator import DP  # TensorFlow: loaded only on this path

    return run_property_ase(atoms, DP(str(model_path)), protocol, engine="ase-deepmd")


def _masses(type_map: list[str]) -> list[float]:
    from ase.data import atomic_masses, atomic_numbers

    return [float(atomic_masses[atomic_numbers[s]]) for s in type_map]


def arrhenius_property(store: ResultsStore, campaign: str, model_id: str, system: str, keys: list[str]) -> dict:
    """The Arrhenius fits over the runs ``keys`` (one per temperature): the conductivity (``ln σT``) when
    the runs have one and each species' D (``ln D``); a fit that cannot be made says why."""
    props = PropertyStore(store.db)
    docs = props.by_keys(keys)
    if len(docs) < 2:
        raise FatalError(f"an Arrhenius fit needs at least two finished runs; found {len(docs)} of {len(keys)}")
    temps = [d["md"]["temperature_K"] for d in docs]
    results: dict = {"temperatures_K": temps, "diffusion": {}, "skipped": {}}
    conds = [d["results"].get("conductivity") for d in docs]
    carriers = sorted((conds[0] or {}).get("contributions_S_cm", {})) if all(conds) else []
    still = [why for why in (_not_diffusive(docs, s) for s in carriers) if why]  # carriers that did not move
    if still:
        results["skipped"]["conductivity"] = "; ".join(still)
    elif all(conds):
        try:
            errors = [c["error_S_cm"] for c in conds]
            fit = arrhenius_fit(temps, [c["sigma_S_cm"] for c in conds], errors if all(e > 0 for e in errors) else None)
            results["conductivity"] = fit.as_dict()
        except ValueError as exc:
            results["skipped"]["conductivity"] = str(exc)
    for species in docs[0]["results"]["diffusion"]:
        why = _not_diffusive(docs, species)
        if why:
            results["skipped"][species] = why
            continue
        ds = [d["results"]["diffusion"][species] for d in docs]
        errors = [x["error_cm2_s"] for x in ds]
        try:
            fit = arrhenius_fit(temps, [x["D_cm2_s"] for x in ds], errors if all(e > 0 for e in errors) else None,
                                times_T=False)
            results["diffusion"][species] = fit.as_dict()
        except ValueError as exc:
            results["skipped"][species] = str(exc)
    model = ObjectId(docs[0]["model_id"]) if not isinstance(docs[0]["model_id"], ObjectId) else docs[0]["model_id"]
    label = docs[0]["md"]["ensemble"] + "-" + "-".join(f"{t:g}" for t in sorted(temps)) + "K"
    key = property_key(campaign, model, system, "arrhenius", label)
    props.store({"_id": key, "campaign": campaign, "model_id": model, "system": system, "kind": "arrhenius",
                 "members": keys, "md": None, "analysis": None, "results": results})
    return {"property_id": key}


def _not_diffusive(docs: list[dict], species: str) -> str:
    """Why ``species``' D of some runs is no diffusion coefficient (the analysis flagged their MSD: a plateau, or
    a slope within its errors); '' when every run's is one (runs analysed before the flag count as one)."""
    flagged = [(d["md"]["temperature_K"], d["results"]["diffusion"][species]) for d in docs
               if d["results"]["diffusion"][species].get("diffusive") is False]
    if not flagged:
        return ""
    where = ", ".join(f"{t:g} K (MSD log-log slope {x.get('msd_exponent', float('nan')):.2f})" for t, x in flagged)
    return (f"{species} does not diffuse within the run at {where}: its D is no diffusion coefficient; run those "
            "temperatures longer or leave them out of the ladder")


def properties_workflow(campaign: str, model_id: str, system: str, temperatures: list[float], md: dict,
                        analysis: dict) -> Workflow:
    """One gpu Firework per temperature (:func:`md_property`), then one cpu Firework fitting the ladder
    (:func:`arrhenius_property`) when there are two temperatures or more."""
    fws, keys = [], []
    for t in temperatures:
        run = {**md, "temperature_K": float(t)}
        label = PropertyMD(**run).label()
        keys.append(property_key(campaign, ObjectId(model_id), system, "md", label))
        spec = {"_category": "gpu", "_add_launchpad_and_fw_id": True,
                "firegen": {"kind": "property-md", "campaign": campaign, "system": system, "label": label}}
        fws.append(Firework([PropertyMDTask(campaign=campaign, model_id=str(model_id), system=system, md=run,
                                            analysis=analysis)], spec=spec, name=f"{campaign}/properties/{system}/{label}"))
    links = {}
    if len(temperatures) > 1:
        spec = {"_category": "cpu", "_add_launchpad_and_fw_id": True,
                "firegen": {"kind": "property-arrhenius", "campaign": campaign, "system": system}}
        fit = Firework([ArrheniusTask(campaign=campaign, model_id=str(model_id), system=system, keys=keys)], spec=spec,
                       name=f"{campaign}/properties/{system}/arrhenius")
        links = {fw: [fit] for fw in fws}
        fws.append(fit)
    return Workflow(fws, links_dict=links, name=f"{campaign}/properties/{system}",
                    metadata={"firegen_campaign": campaign, "firegen_kind": "properties"})
