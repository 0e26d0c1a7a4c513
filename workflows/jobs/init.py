"""The init Firework: store a campaign's starting structures and imported data, open iteration 0."""

from __future__ import annotations

from bson import ObjectId

from firegen.campaign.config import CampaignConfig
from firegen.campaign.convergence import stage_task_keys
from firegen.campaign.labeled_data import labeled_systems
from firegen.campaign.structures import perturbed_copies
from firegen.db.repository import ResultsStore
from firegen.workflows.jobs.batch import write_initial_part


def initial_configurations(store: ResultsStore, cfg: CampaignConfig, systems: dict, imported: list[str]) -> list[ObjectId]:
    """Store the perturbed starting frames (status ``selected``) and imported labeled data; return the
    ids still to label (a rerun returns the same ids, minus those labeled meanwhile)."""
    perturb = cfg.initial_data.perturb
    bank_ids, bank_frames = [], []  # the campaign's first fingerprints (deduplication, diverse selection)
    if perturb is not None:
        for name, structure in systems.items():
            frames = perturbed_copies(ResultsStore.atoms(structure), perturb.count, perturb.atom_displacement,
                                      perturb.cell_strain, perturb.scales, seed=perturb.seed,
                                      atom_style=perturb.atom_style, include_unperturbed=perturb.include_unperturbed)
            stored = store.add_configurations(cfg.name, [
                {"species": atoms.get_chemical_symbols(), "cell": atoms.cell.array, "positions": atoms.positions,
                 "pbc": atoms.pbc, "origin": {"kind": "init", "system": name, "frame": k, "iteration": -1},
                 "status": "selected"} for k, atoms in enumerate(frames)])
            bank_ids += [cid for cid, _ in stored]
            bank_frames += list(frames)
    # deepmd_npy folders (absolute, from the submit side) and `initial_data.imported` entries (absolute, with
    # provenance such as {source: dpgen, dpgen_iteration: k}); a folder may hold several systems
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
                bank_ids.append(cid)
                bank_frames.append(ResultsStore.atoms({**item, "label": None}))
    write_initial_part(store, cfg, bank_ids, bank_frames)
    return store.ids_with_status(cfg.name, "selected", origin_kind="init")


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
