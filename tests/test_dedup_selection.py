"""Deduplication and diverse selection in the select step, on the embedded database: a repeated exploration
yields no new labels, and every duplicate says which configuration it repeats."""

from __future__ import annotations

import numpy as np
import yaml
from ase.build import bulk

from campaign_helpers import small_cu_config
from firegen.campaign.config import load_config
from firegen.db import fingerprint_banks
from firegen.db.repository import ResultsStore
from firegen.workflows.jobs.batch import write_initial_part
from firegen.workflows.jobs.explore import keep_candidates
from firegen.workflows.jobs.init import open_iteration
from firegen.workflows.jobs.select import select_and_decide


def _frames(n: int, seed: int = 0) -> list:
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.1, seed=seed + k)
        out.append(atoms)
    return out


def _shifted(atoms, k: int):
    """The same structure, rigidly translated and wrapped: another content hash, the same fingerprint."""
    copy = atoms.copy()
    copy.translate(np.random.default_rng(100 + k).uniform(-2.0, 2.0, 3))
    copy.wrap()
    return copy


def _explore(store, cfg, iteration: int, frames: list) -> None:
    open_iteration(store, cfg, iteration, 0)
    items = [{"species": a.get_chemical_symbols(), "cell": a.cell.array, "positions": a.positions, "pbc": a.pbc,
              "origin": {"kind": "explored", "iteration": iteration}, "status": "candidate",
              "model_deviation": {"max_f": 0.2 + 0.01 * k, "max_v": 0.0}} for k, a in enumerate(frames)]
    keep_candidates(store, cfg.name, iteration, "fcc|c0", items)
    keep_candidates(store, cfg.name, iteration, "fcc|c1", [])
    for task, n in (("fcc|c0", len(frames)), ("fcc|c1", 0)):
        store.set_iteration_fields(cfg.name, iteration, {f"explorations.{task}": {
            "accurate": 5, "candidate": n, "failed": 0, "total": 5 + n}})  # below the 0.9 criterion


def test_a_repeated_exploration_yields_no_new_labels(mongo_db, tmp_path):
    path = small_cu_config(tmp_path, "cu-dedup")
    raw = yaml.safe_load(path.read_text())
    raw["stages"][0]["max_iterations"] = 5
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert cfg.selection.policy == "diverse" and cfg.selection.dedup.enabled  # the defaults
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    initial = _frames(1, seed=50)[0]
    init_id, _ = store.add_atoms(cfg.name, initial, {"kind": "init"}, status="labeled")
    write_initial_part(store, cfg, [init_id], [initial])

    explored = _frames(6)
    # iteration 0: six new frames, a rigid copy of frame 2, and a rigid copy of the labeled initial frame
    _explore(store, cfg, 0, explored + [_shifted(explored[2], 0), _shifted(initial, 1)])
    decision, picked = select_and_decide(store, cfg, 0, 0)
    docs = {d["_id"]: d for d in store.configurations.find({"campaign": cfg.name, "origin.iteration": 0})}
    duplicates = {i: d for i, d in docs.items() if d["status"] == "duplicate"}
    assert len(picked) == 6 and len(duplicates) == 2
    by_hash = {d["hash"]: i for i, d in docs.items()}
    assert {d["duplicate_of"] for d in duplicates.values()} >= {init_id}  # the copy of the labeled frame
    for d in duplicates.values():
        assert d["duplicate_distance"] < fingerprint_banks.campaign_tolerance(store.db, cfg.name)
        assert d["duplicate_of"] == init_id or d["duplicate_of"] in picked
    iteration = store.get_iteration(cfg.name, 0)
    assert iteration["duplicates"] == 2 and iteration["selected"] == 6
    assert iteration["duplicate_tolerance"] == fingerprint_banks.campaign_tolerance(store.db, cfg.name) > 0
    ids, matrix = fingerprint_banks.read_parts(store.db, store.blobs, next(iter(
        p["space"] for p in store.db[fingerprint_banks.COLLECTION].find({"_id": f"{cfg.name}/0"}))),
        campaigns=[cfg.name])
    assert set(picked) <= set(ids) and init_id in ids and len(matrix) == len(ids) == 7

    # iteration 1 repeats the exploration: the same frames, translated (new hashes, same structures)
    _explore(store, cfg, 1, [_shifted(a, 10 + k) for k, a in enumerate(explored)])
    _, picked_again = select_and_decide(store, cfg, 1, 0)
    assert picked_again == []
    repeats = list(store.configurations.find({"campaign": cfg.name, "origin.iteration": 1}))
    assert len(repeats) == 6 and {d["status"] for d in repeats} == {"duplicate"}
    assert {d["duplicate_of"] for d in repeats} <= set(picked)  # each names the frame labeled in iteration 0
    assert store.get_iteration(cfg.name, 1)["duplicates"] == 6 and by_hash


def test_random_policy_without_dedup_is_dp_gen_behaviour(mongo_db, tmp_path):
    path = small_cu_config(tmp_path, "cu-random", selection={"trust": {"f_lo": 0.1, "f_hi": 0.4},
                                                             "max_per_iteration": 3, "policy": "random",
                                                             "dedup": {"displacement": None}})
    cfg = load_config(path)
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    explored = _frames(4)
    _explore(store, cfg, 0, explored + [_shifted(explored[0], 0)])
    _, picked = select_and_decide(store, cfg, 0, 0)
    statuses = [d["status"] for d in store.configurations.find({"campaign": cfg.name})]
    assert len(picked) == 3 and statuses.count("rejected") == 2 and "duplicate" not in statuses
    assert store.db[fingerprint_banks.COLLECTION].count_documents({}) == 0  # no fingerprints computed


def test_across_campaigns_a_structure_another_campaign_labeled_is_a_duplicate(mongo_db, tmp_path):
    store = ResultsStore(mongo_db)
    store.init()
    first = load_config(small_cu_config(tmp_path, "cu-first"))
    store.create_campaign(first.name, first.frozen(), first.type_map)
    labeled = _frames(2, seed=70)
    ids = [store.add_atoms(first.name, a, {"kind": "init"}, status="labeled")[0] for a in labeled]
    write_initial_part(store, first, ids, labeled)

    path = small_cu_config(tmp_path, "cu-second")
    raw = yaml.safe_load(path.read_text())
    raw["selection"]["dedup"] = {"across_campaigns": True}
    path.write_text(yaml.safe_dump(raw))
    second = load_config(path)
    store.create_campaign(second.name, second.frozen(), second.type_map)
    own = _frames(1, seed=90)[0]
    own_id, _ = store.add_atoms(second.name, own, {"kind": "init"}, status="labeled")
    write_initial_part(store, second, [own_id], [own])
    new = _frames(2, seed=80)
    _explore(store, second, 0, new + [_shifted(labeled[1], 3)])  # the last: the first campaign's label, moved
    _, picked = select_and_decide(store, second, 0, 0)
    dup = store.configurations.find_one({"campaign": second.name, "status": "duplicate"})
    assert len(picked) == 2 and dup["duplicate_of"] == ids[1]

    alone = load_config(small_cu_config(tmp_path, "cu-third"))  # the default: its own campaign only
    store.create_campaign(alone.name, alone.frozen(), alone.type_map)
    write_initial_part(store, alone, [own_id], [own])
    _explore(store, alone, 0, [_shifted(labeled[1], 4)])
    _, picked = select_and_decide(store, alone, 0, 0)
    assert len(picked) == 1


def test_kmeans_policy_takes_one_frame_of_each_kind(mongo_db, tmp_path):
    """Three kinds of frames (cells at 3.50, 3.615 and 3.75 Å, four thermal-like rattles of each) and a cap of
    three: the k-means pick labels one of each kind (a uniform draw of 3 of the 12 misses a kind 71 % of the
    time) and stores the fingerprints of what it picked, as the diverse pick does."""
    path = small_cu_config(tmp_path, "cu-kmeans", selection={"trust": {"f_lo": 0.1, "f_hi": 0.4},
                                                             "max_per_iteration": 3, "policy": "kmeans"})
    cfg = load_config(path)
    assert cfg.selection.policy == "kmeans" and cfg.selection.dedup.enabled
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    frames = []
    for kind, a in enumerate((3.50, 3.615, 3.75)):
        for k in range(4):
            atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((2, 2, 2))
            atoms.rattle(0.08, seed=10 * kind + k)
            frames.append(atoms)
    _explore(store, cfg, 0, frames)
    _, picked = select_and_decide(store, cfg, 0, 0)
    docs = list(store.configurations.find({"campaign": cfg.name, "origin.iteration": 0}, {"positions": 1, "cell": 1,
                                                                                           "status": 1}))
    assert len(picked) == 3 and "duplicate" not in {d["status"] for d in docs}
    picked_kinds = sorted(round(d["cell"][0] / 2, 3) for d in docs if d["_id"] in set(picked))
    assert picked_kinds == [3.5, 3.615, 3.75]
    ids, _ = fingerprint_banks.read_parts(store.db, store.blobs, next(iter(
        p["space"] for p in store.db[fingerprint_banks.COLLECTION].find({"_id": f"{cfg.name}/0"}))),
        campaigns=[cfg.name])
    assert set(picked) == set(ids)
