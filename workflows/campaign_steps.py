"""The campaign's steps against the results store: what each FireTask does, as plain functions.

The science (training, MD, labeling, picking) is in :mod:`firegen.workflows.steps`; these functions
fetch its inputs from the store, call it, and store its outputs idempotently.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
from bson import ObjectId

from firegen.db import candidate_lists
from firegen.db.dataset_pages import member_ids
from firegen.db.lookup import find_by_ids
from firegen.db.repository import ResultsStore
from firegen.campaign.config import CampaignConfig
from firegen.campaign.convergence import Decision, decide, stage_task_keys, task_key
from firegen.campaign.labeled_data import LABELED_FIELDS, split_train_validation, write_deepmd_npy
# LabelFailuresExceeded and label_failures are used from here too (they moved to the snapshot gate)
from firegen.workflows.snapshot_gate import LabelFailuresExceeded, label_failures, snapshot_to_train  # noqa: F401
from firegen.workflows.steps import explore as md
from firegen.workflows.steps import label as labeling
from firegen.workflows.steps import sanity
from firegen.workflows.steps import select as selection
from firegen.workflows.steps import train as training


def initial_configurations(store: ResultsStore, cfg: CampaignConfig, systems: dict, imported: list[str]) -> list:
    """Store the perturbed starting frames (status ``selected``) and imported labeled data; return the
    ids still to label (a rerun returns the same ids, minus those labeled meanwhile)."""
    from firegen.campaign.structures import perturbed_copies

    perturb = cfg.initial_data.perturb
    if perturb is not None:
        for name, structure in systems.items():
            frames = perturbed_copies(ResultsStore.atoms(structure), perturb.count, perturb.atom_displacement,
                                      perturb.cell_strain, perturb.scales, seed=perturb.seed,
                                      atom_style=perturb.atom_style, include_unperturbed=perturb.include_unperturbed)
            store.add_configurations(cfg.name, [
                {"species": atoms.get_chemical_symbols(), "cell": atoms.cell.array, "positions": atoms.positions,
                 "pbc": atoms.pbc, "origin": {"kind": "init", "system": name, "frame": k, "iteration": -1},
                 "status": "selected"} for k, atoms in enumerate(frames)])
    # deepmd_npy folders (absolute, from the submit side) and `initial_data.imported` entries (absolute, with
    # provenance such as {source: dpgen, dpgen_iteration: k}); a folder may hold several systems
    from firegen.campaign.labeled_data import labeled_systems

    sources = [(str(path), "auto", {}) for path in imported]
    sources += [(item.path, item.fmt, {"source": item.source, "dpgen_iteration": item.dpgen_iteration})
                for item in cfg.initial_data.imported]
    for path, fmt, provenance in sources:
        for folder, data in labeled_systems(path, cfg.type_map, fmt):
            items = []
            for k in range(len(data)):
                frame = data[k]
                label = {"energy": float(frame["energies"][0]), "forces": frame["forces"][0], "code": "imported",
                         "settings_hash": "imported:" + str(folder),
                         "virial": frame["virials"][0] if frame.has_virial() else None}
                items.append({"species": [frame["atom_names"][t] for t in frame["atom_types"]],
                              "cell": frame["cells"][0], "positions": frame["coords"][0], "label": label,
                              "origin": {"kind": "imported", "path": str(folder), "frame": k, "iteration": -1,
                                         **provenance}})
            for (cid, inserted), item in zip(store.add_configurations(cfg.name, items), items):
                if not inserted:  # stored before (a rerun, or the same structure elsewhere): label it once
                    store.set_label(cid, item["label"])
    return [d["_id"] for d in store.configurations.find({"campaign": cfg.name, "status": "selected",
                                                         "origin.kind": "init"}, {"_id": 1})]


def open_iteration(store: ResultsStore, cfg: CampaignConfig, index: int, stage: int,
                   explore: list[str] | None = None) -> None:
    """Create the iteration's document with what the per-iteration table prints; ``explore`` lists the
    task keys it explores (all of the stage's when empty)."""
    st = cfg.stages[stage]
    table = st.summary()
    store.update_iteration(cfg.name, index, stage, stage_name=st.name, ensemble=table["ensemble"],
                           temperatures=table["temperatures"], pressures=table["pressures"], nsteps=table["nsteps"],
                           protocols=table["protocols"], explore=list(explore or stage_task_keys(st)),
                           status="running")
    store.update_campaign(cfg.name, stage=stage, iteration=index)


def label_batch(store: ResultsStore, cfg: CampaignConfig, ids: list[ObjectId], fw_id=None,
                labeler_override: dict | None = None) -> dict:
    """Label the configurations of ``ids`` still ``selected``; failures become ``label_failed``.

    ``labeler_override`` (``{"kind", "settings"}``, from ``firegen relabel``) replaces the campaign's labeler.
    """
    spec = labeler_override or {"kind": cfg.labeler.kind, "settings": cfg.labeler.settings}
    labeler = labeling.get_labeler(spec["kind"], spec["settings"])
    done = failed = 0
    science = 0.0
    for doc in find_by_ids(store.configurations, ids):
        if doc["status"] != "selected":
            continue
        result = labeling.label_many(labeler, [ResultsStore.atoms(doc)])[0]
        science += result.walltime or 0.0
        if result.ok:
            done += store.set_label(doc["_id"], {**result.to_dict(), "fw_id": fw_id})
        else:
            store.mark_label_failed(doc["_id"], result.reason, error_type=result.error_type, fw_id=fw_id,
                                    code=result.code, settings_hash=result.settings_hash,
                                    **_failure_details(result))
            failed += 1
    return {"labeled": done, "failed": failed, "seconds": science}


def _failure_details(result) -> dict:
    """What a labeler knows about a failure beyond its reason (custodian's history, the work folder)."""
    details = {k: getattr(result, k, None) for k in ("details", "history")}
    return {k: v for k, v in details.items() if v}


def _committee(store: ResultsStore, campaign: str, iteration: int) -> list[dict]:
    return list(store.models.find({"campaign": campaign, "iteration": iteration}).sort("member", 1))


_SNAPSHOT_DOCUMENTS: dict = {}  # (dataset id, content hash) -> its labeled documents; the last snapshot read


def snapshot_documents(store: ResultsStore, snapshot: dict) -> list[dict]:
    """The labeled configurations of a dataset snapshot (:data:`LABELED_FIELDS`), read from the database
    once per worker process: a snapshot never changes, and the committee members of an iteration
    usually train one after another on the same worker."""
    key = (snapshot["_id"], snapshot["hash"])
    if key not in _SNAPSHOT_DOCUMENTS:
        docs = find_by_ids(store.configurations, member_ids(store.db, snapshot), LABELED_FIELDS)
        _SNAPSHOT_DOCUMENTS.clear()
        _SNAPSHOT_DOCUMENTS[key] = docs
    return _SNAPSHOT_DOCUMENTS[key]


def train_member(store: ResultsStore, cfg: CampaignConfig, iteration: int, member: int, workdir: Path,
                 snapshot_id: str | None = None) -> dict:
    """Train one committee member on the iteration's dataset snapshot, the one the snapshot gate passed
    (``snapshot_id``; see :func:`~firegen.workflows.snapshot_gate.snapshot_to_train` when None).
    Skipped when the member is already stored."""
    existing = store.models.find_one({"campaign": cfg.name, "iteration": iteration, "member": member})
    if existing and existing.get("file_id"):
        return {"model_id": str(existing["_id"]), "skipped": True}
    snapshot = snapshot_to_train(store, cfg, iteration, snapshot_id)
    docs = snapshot_documents(store, snapshot)
    if not docs:
        raise RuntimeError(f"campaign {cfg.name}: no labeled configurations to train iteration {iteration} on; "
                           "every initial label failed? see `firegen provenance failures`")
    train_docs, valid_docs = split_train_validation(docs)
    data_dir = workdir / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    train_sys = write_deepmd_npy(train_docs, cfg.type_map, data_dir / "train")
    valid_sys = write_deepmd_npy(valid_docs, cfg.type_map, data_dir / "valid") if valid_docs else None
    seed = selection.seed_from(cfg.name, iteration, member) % (2**31 - 1) + 1
    input_dict = training.make_training_input(cfg.committee.training, train_sys, cfg.type_map, seed,
                                              cfg.committee.numb_steps, valid_sys)
    parent = None
    init_model = None
    if cfg.committee.init_from_previous and iteration > 0:
        parent = store.models.find_one({"campaign": cfg.name, "iteration": iteration - 1, "member": member})
        if parent and parent.get("file_id"):
            init_model = store.blobs.fetch(parent["file_id"], workdir / "parent.pb")
    t0 = time.perf_counter()
    result = training.train_model(workdir / "train", input_dict, init_model=init_model)
    metrics = {"train": training.evaluate_model(result.frozen_model, train_sys, cfg.type_map)}
    if valid_sys:
        metrics["validation"] = training.evaluate_model(result.frozen_model, valid_sys, cfg.type_map)
    science = time.perf_counter() - t0  # dp train + dp freeze + testing
    model_id = store.add_model(cfg.name, iteration, member, seed=seed, backend=cfg.committee.backend,
                               dataset_id=snapshot["_id"], model_file=result.frozen_model,
                               parent=parent["_id"] if parent else None, input=_bson_safe(result.input_dict),
                               metrics=metrics, train_seconds=result.wall_time,
                               n_train=len(train_docs), n_validation=len(valid_docs))
    store.iterations.update_one({"campaign": cfg.name, "index": iteration},
                                {"$inc": {"timings.train_s": science}, "$addToSet": {"model_ids": model_id}})
    return {"model_id": str(model_id), "seconds": science, "metrics": metrics}


def _bson_safe(obj):
    """deepmd inputs may hold nested lists (FerretDB 1.x rejects them): keep those as JSON text."""
    if isinstance(obj, dict):
        return {k: _bson_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        if any(isinstance(v, list) for v in obj):
            return json.dumps(obj)
        return [_bson_safe(v) for v in obj]
    return obj


def explore(store: ResultsStore, cfg: CampaignConfig, iteration: int, stage: int, system: str, condition: int,
            workdir: Path, fw_id=None, lmp: str = "lmp") -> dict:
    """Run one exploration and store its candidates (with full origin) and its counts."""
    key = task_key(system, condition)
    done = (store.get_iteration(cfg.name, iteration) or {}).get("explorations", {}).get(key)
    if done:
        return done
    models = _committee(store, cfg.name, iteration)
    paths = [store.blobs.fetch(m["file_id"], workdir / "models" / f"graph.{m['member']:03d}.pb") for m in models]
    st = cfg.stages[stage]
    cond = md.MDCondition(**st.conditions()[condition], key=st.condition_keys()[condition],
                          seed=selection.seed_from(cfg.name, iteration, system, condition) % (2**31 - 2) + 1)
    structure = store.get_campaign(cfg.name)["systems"][system]
    atoms = ResultsStore.atoms(structure)
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
    summary = {**selection.counts(codes), "new_candidates": int(new), "system": system, "condition": cond.as_dict(),
               "engine": result.engine, "md_seconds": float(result.wall_time),
               "cut_at_frame": cut, "cut_reason": cut_reason,
               "max_devi_f_edges": deviation_edges(trust.f_lo, trust.f_hi),
               "max_devi_f_hist": np.histogram(np.nan_to_num(result.max_devi_f, nan=1e9),
                                               bins=deviation_edges(trust.f_lo, trust.f_hi))[0]}
    store.set_iteration_fields(cfg.name, iteration, {f"explorations.{key}": summary})
    store.iterations.update_one({"campaign": cfg.name, "index": iteration},
                                {"$inc": {"timings.explore_s": float(result.wall_time)}})
    return selection_counts_only(summary)


def keep_candidates(store: ResultsStore, campaign: str, iteration: int, task: str, items: list[dict]) -> int:
    """Store an exploration's candidate frames (``add_configurations`` items) and the task's candidate
    list (:mod:`firegen.db.candidate_lists`, what select reads); returns how many frames were new."""
    stored = store.add_configurations(campaign, items)
    candidate_lists.store_candidates(store.db, campaign, iteration, task,
                                     candidate_lists.iteration_candidates(store.configurations, iteration, stored))
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
    """Histogram bin edges (eV/Å) for the max force deviation, always including both trust levels."""
    return sorted({0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 1e10, float(f_lo), float(f_hi)})


def selection_counts_only(summary: dict) -> dict:
    return {k: summary[k] for k in ("accurate", "candidate", "failed", "total", "new_candidates")}


def task_histories(stage_cfg, iterations: list[dict]) -> dict[str, list[dict]]:
    """Per exploration task of the stage, the ratios of each time it was explored (``iterations`` in order)."""
    out: dict[str, list[dict]] = {key: [] for key in stage_task_keys(stage_cfg)}
    for it in iterations:
        for key, counts in (it.get("explorations") or {}).items():
            if key in out:
                r = selection.ratios(counts)
                out[key].append({"accurate_ratio": r["accurate"], "candidate_ratio": r["candidate"]})
    return out


def select_and_decide(store: ResultsStore, cfg: CampaignConfig, iteration: int, stage: int) -> tuple[Decision, list]:
    """Totals, the capped pick, and the convergence decision of one iteration (stored on it)."""
    it = store.get_iteration(cfg.name, iteration)
    if it.get("decision"):  # rerun: the first run decided
        selected = [d["_id"] for d in store.configurations.find(
            {"campaign": cfg.name, "origin.iteration": iteration, "status": "selected"}, {"_id": 1})]
        return Decision(**it["decision"]), selected
    totals = {k: sum(e[k] for e in it.get("explorations", {}).values())
              for k in ("accurate", "candidate", "failed", "total")}
    ratio = selection.ratios(totals)
    earlier = list(store.iterations.find({"campaign": cfg.name, "stage": stage, "index": {"$lt": iteration},
                                          "ratios": {"$exists": True}}).sort("index", 1))
    history = [{"accurate_ratio": h["ratios"]["accurate"], "candidate_ratio": h["ratios"]["candidate"]}
               for h in earlier]
    history.append({"accurate_ratio": ratio["accurate"], "candidate_ratio": ratio["candidate"]})
    tasks = task_histories(cfg.stages[stage], earlier + [it])
    campaign = store.get_campaign(cfg.name)
    decision = decide(stage, cfg.stages, history, campaign.get("stage_status", [])[:stage], tasks)
    keys = candidate_lists.read_candidates(store.db, cfg.name, iteration, sorted(it.get("explorations", {})))
    if keys is None:  # explored before the candidate lists: ask the configurations
        keys = [c["_id"] for c in store.configurations.find({"campaign": cfg.name, "origin.iteration": iteration,
                                                             "status": "candidate"}, {"_id": 1})]
    sel_cfg = cfg.selection
    cap = selection.labeling_cap(sel_cfg.max_per_iteration, ratio["accurate"],
                                 sel_cfg.skip_when_accurate_above, sel_cfg.soft_accurate_ratio)
    picked = selection.select_candidates(keys, cap, selection.seed_from(cfg.name, iteration, sel_cfg.seed))
    if decision.action == "done" or len(picked) < sel_cfg.min_per_iteration:
        picked = []
    picked_set = set(picked)
    store.set_status(picked, "selected")
    store.set_status([k for k in keys if k not in picked_set], "rejected",
                     rejected_reason="campaign ended" if decision.action == "done" else "over the per-iteration cap")
    statuses = campaign.get("stage_status", [])[:stage]
    if decision.stage_status != "running":
        statuses = statuses + [decision.stage_status]
    store.update_iteration(cfg.name, iteration, stage, counts=totals, ratios=ratio, selected=len(picked),
                           decision=decision.as_dict(), status="done")
    store.update_campaign(cfg.name, status=decision.campaign_status, stage_status=statuses)
    return decision, picked
