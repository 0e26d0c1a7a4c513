"""Campaign steps against a real FerretDB without training: imported data, label failures, decisions."""

import json

import numpy as np
import pymongo
import yaml
from ase.build import bulk

from campaign_helpers import small_cu_config
from firegen.db import candidate_lists
from firegen.db.hashing import configuration_id, structure_hash
from firegen.db.repository import ResultsStore
from firegen.campaign.config import load_config
from firegen.campaign.convergence import decide
from firegen.orchestrator.submit import prepared_systems
from firegen.workflows.jobs.batch import write_initial_part
from firegen.workflows.jobs.explore import deviation_edges, keep_candidates
from firegen.workflows.jobs.init import initial_configurations, open_iteration
from firegen.workflows.jobs.label import label_batch
from firegen.workflows.jobs.select import select_and_decide
from firegen.workflows.jobs.train import snapshot_documents
from science_data import make_emt_dataset


def _store(mongo_db, cfg):
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    return store


def test_imported_deepmd_data_become_labeled_configurations_once(mongo_db, tmp_path):
    data = make_emt_dataset(tmp_path / "npy", n_frames=5)
    path = small_cu_config(tmp_path, "cu-import")
    raw = yaml.safe_load(path.read_text())
    raw["initial_data"] = {"deepmd_npy": [str(data)]}
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    store = _store(mongo_db, cfg)
    systems = prepared_systems(cfg)
    to_label = initial_configurations(store, cfg, systems, [str(data)])
    assert to_label == []  # imported frames come labeled
    docs = list(mongo_db.configurations.find({"campaign": "cu-import"}))
    assert len(docs) == 5 and all(d["status"] == "labeled" and d["origin"]["kind"] == "imported" for d in docs)
    energies = sorted(np.load(next(data.glob("set.*")) / "energy.npy").ravel())
    assert np.allclose(sorted(d["label"]["energy"] for d in docs), energies)
    initial_configurations(store, cfg, systems, [str(data)])  # a rerun adds nothing
    assert mongo_db.configurations.count_documents({}) == 5
    assert all(d["label_writes"] == 1 for d in mongo_db.configurations.find())
    # the committee members of an iteration read the snapshot's documents once per worker process
    snapshot = store.snapshot_dataset("cu-import", 0)
    first = snapshot_documents(store, snapshot)
    assert sorted(d["_id"] for d in first) == sorted(d["_id"] for d in docs) and "label" in first[0]
    mongo_db.configurations.delete_one({"_id": first[0]["_id"]})
    assert snapshot_documents(store, snapshot) is first  # not read again
    other = store.snapshot_dataset("cu-import", 1)  # a new snapshot is read from the database
    assert len(snapshot_documents(store, other)) == 4


def test_the_next_snapshot_reads_only_the_labels_added_since(mongo_db, tmp_path, monkeypatch):
    import firegen.db.repository as repository

    cfg = load_config(small_cu_config(tmp_path, "cu-grow"))
    store = _store(mongo_db, cfg)
    label = {"energy": -1.0, "forces": [[0.0, 0.0, 0.0]] * 4, "code": "x", "settings_hash": "h"}
    for a in (3.60, 3.61, 3.62):
        store.add_atoms(cfg.name, bulk("Cu", "fcc", a=a, cubic=True), {"kind": "init"}, label=label)
    read = []
    real = repository.find_by_ids
    monkeypatch.setattr(repository, "find_by_ids", lambda coll, ids, proj=None: read.append(list(ids)) or real(coll, ids, proj))
    first = snapshot_documents(store, store.snapshot_dataset(cfg.name, 0))
    new, _ = store.add_atoms(cfg.name, bulk("Cu", "fcc", a=3.63, cubic=True), {"kind": "init"}, label=label)
    second = snapshot_documents(store, store.snapshot_dataset(cfg.name, 1))
    assert [len(ids) for ids in read] == [3, 1] and read[1] == [new]  # the new label only
    assert {d["_id"] for d in second} == {d["_id"] for d in first} | {new}
    assert all("label" in d and "positions" in d for d in second)


def test_a_failed_label_is_quarantined_and_the_batch_goes_on(mongo_db, tmp_path):
    cfg = load_config(small_cu_config(tmp_path, "cu-fail"))  # EMT labels
    store = _store(mongo_db, cfg)
    good, _ = store.add_atoms(cfg.name, bulk("Cu", "fcc", a=3.61, cubic=True), {"kind": "init"}, status="selected")
    bad, _ = store.add_atoms(cfg.name, bulk("Ar", "fcc", a=5.26, cubic=True), {"kind": "init"}, status="selected")
    result = label_batch(store, cfg, [good, bad])
    assert (result.labeled, result.failed) == (1, 1)
    assert mongo_db.configurations.find_one({"_id": good})["status"] == "labeled"
    failed = mongo_db.configurations.find_one({"_id": bad})
    assert failed["status"] == "label_failed" and failed["label_attempts"][0]["reason"]
    again = label_batch(store, cfg, [good, bad])  # rerun: nothing is labeled twice
    assert (again.labeled, again.failed) == (0, 0)


def test_decisions_follow_the_stage_policy(tmp_path):
    raw = yaml.safe_load(small_cu_config(tmp_path, "cu-dec").read_text())
    second = dict(raw["stages"][0], name="hot", temperatures=[2000])
    raw["stages"][0].update(converged_when={"accurate_ratio": 0.95, "for_iterations": 2}, max_iterations=3)
    raw["stages"].append(second)
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(raw))
    stages = load_config(tmp_path / "two.yaml").stages
    low, high = {"accurate_ratio": 0.5, "candidate_ratio": 0.3}, {"accurate_ratio": 0.97, "candidate_ratio": 0.02}
    assert decide(0, stages, [low]).action == "continue"
    assert decide(0, stages, [low, high]).action == "continue"  # one good iteration is not two
    moved = decide(0, stages, [low, high, high])
    assert (moved.action, moved.stage, moved.stage_status) == ("next_stage", 1, "converged")
    capped = decide(0, stages, [low, low, low])
    assert (capped.action, capped.stage_status) == ("next_stage", "max_iterations")
    end = decide(1, stages, [high], ["converged"])
    assert (end.action, end.campaign_status) == ("done", "converged")
    assert decide(1, stages, [high], ["max_iterations"]).campaign_status == "max_iterations"


def test_deviation_histogram_edges_hold_any_trust_levels():
    for lo, hi in [(0.15, 0.35), (0.02, 0.08), (0.3, 1.5), (0.05, 0.1)]:
        edges = deviation_edges(lo, hi)
        assert edges == sorted(set(edges)) and lo in edges and hi in edges
        np.histogram([0.01, 0.2, 3.0], bins=edges)  # strictly increasing: numpy accepts them


class _Commands(pymongo.monitoring.CommandListener):
    """The filters of the ``find`` commands sent to each collection."""

    def __init__(self):
        self.filters = []

    def started(self, event):
        cmd = event.command
        coll = cmd.get(event.command_name)
        if event.command_name == "find":
            self.filters.append((coll, cmd.get("filter")))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def _frame(seed: int) -> dict:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=seed)
    return {"species": atoms.get_chemical_symbols(), "cell": atoms.cell.array, "positions": atoms.positions,
            "status": "candidate"}


def test_select_reads_the_candidates_explorations_listed_by_id(ferretdb, db_name, tmp_path):
    listener = _Commands()
    client = pymongo.MongoClient(ferretdb.uri, event_listeners=[listener])
    try:
        cfg = load_config(small_cu_config(tmp_path, "cu-lists"))
        store = _store(client[db_name], cfg)
        earlier, _ = store.add_configuration(cfg.name, **{**_frame(0), "status": "labeled"}, origin={"kind": "init"})
        write_initial_part(store, cfg, [earlier], [ResultsStore.atoms(store.configurations_by_ids([earlier])[0])])
        open_iteration(store, cfg, 0, 0)
        origin = {"kind": "explored", "iteration": 0}
        frames = {k: _frame(k) for k in range(1, 5)}
        tasks = {"fcc|c0": [1, 2, 0, 2], "fcc|c1": [2, 3, 4]}  # frame 0: stored before; 2: in both tasks
        new = {task: keep_candidates(store, cfg.name, 0, task, [
            {**(frames[k] if k else _frame(0)), "origin": origin} for k in ks]) for task, ks in tasks.items()}
        assert new == {"fcc|c0": 2, "fcc|c1": 2}
        ids = {k: configuration_id(cfg.name, structure_hash(f["species"], f["cell"], f["positions"], (True,) * 3))
               for k, f in frames.items()}
        # a rerun of an exploration (crash after storing its frames) lists the same candidates again
        assert keep_candidates(store, cfg.name, 0, "fcc|c0",
                                              [{**frames[k], "origin": origin} for k in (1, 2)]) == 0
        listed = candidate_lists.read_candidates(store.db, cfg.name, 0, sorted(tasks))
        assert listed == [ids[1], ids[2], ids[3], ids[4]] and earlier not in listed
        assert candidate_lists.read_candidates(store.db, cfg.name, 0, ["fcc|c0", "fcc|c9"]) is None  # not listed
        for task, ks in tasks.items():
            store.set_iteration_fields(cfg.name, 0, {f"explorations.{task}": {
                "accurate": 10, "candidate": len(ks), "failed": 0, "total": 10 + len(ks)}})
        listener.filters.clear()
        decision, picked = select_and_decide(store, cfg, 0, 0)
        asked = [f for coll, f in listener.filters if coll == "configurations"]
        # no query for candidates (the embedded FerretDB would read every configuration): only _id look-ups
        assert all(list(f) == ["_id"] and not isinstance(f["_id"], dict) for f in asked)
        assert sorted(picked) == sorted(listed)  # 4 candidates, under the cap of 20
        statuses = {d["_id"]: d["status"] for d in store.configurations.find({}, {"status": 1})}
        assert all(statuses[i] == "selected" for i in listed) and statuses[earlier] == "labeled"
    finally:
        client.drop_database(db_name)
        client.close()


def test_a_task_takes_its_firework_id_from_the_rocket_else_fw_json_or_the_launches(mongo_db, tmp_path, monkeypatch):
    from firegen.workflows.context import current_fw_id
    from firegen.workflows.tasks import LabelTask

    store = ResultsStore(mongo_db)
    monkeypatch.chdir(tmp_path)
    legacy = LabelTask(campaign="c", iteration=0, config_ids=[])  # queued without _add_launchpad_and_fw_id
    assert current_fw_id(legacy, store) is None  # no FW.json, no running launch here
    mongo_db.launches.insert_one({"launch_id": 3, "fw_id": 11, "launch_dir": str(tmp_path), "state": "RUNNING"})
    assert current_fw_id(legacy, store) == 11
    (tmp_path / "FW.json").write_text(json.dumps({"fw_id": 12, "spec": {}}))  # what the Rocket wrote
    assert current_fw_id(legacy, store) == 12
    handed = LabelTask(campaign="c", iteration=0, config_ids=[])
    handed.fw_id = 13  # what the Rocket sets when the spec asks for _add_launchpad_and_fw_id
    assert current_fw_id(handed, store) == 13
