"""Campaign steps against a real FerretDB without training: imported data, label failures, decisions."""

import numpy as np
import yaml
from ase.build import bulk

from campaign_helpers import small_cu_config
from firegen.db.repository import ResultsStore
from firegen.orchestrator.config import load_config
from firegen.orchestrator.convergence import decide
from firegen.orchestrator.submit import prepared_systems
from firegen.workflows import campaign_steps
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
    to_label = campaign_steps.initial_configurations(store, cfg, systems, [str(data)])
    assert to_label == []  # imported frames come labeled
    docs = list(mongo_db.configurations.find({"campaign": "cu-import"}))
    assert len(docs) == 5 and all(d["status"] == "labeled" and d["origin"]["kind"] == "imported" for d in docs)
    energies = sorted(np.load(next(data.glob("set.*")) / "energy.npy").ravel())
    assert np.allclose(sorted(d["label"]["energy"] for d in docs), energies)
    campaign_steps.initial_configurations(store, cfg, systems, [str(data)])  # a rerun adds nothing
    assert mongo_db.configurations.count_documents({}) == 5
    assert all(d["label_writes"] == 1 for d in mongo_db.configurations.find())
    # the committee members of an iteration read the snapshot's documents once per worker process
    snapshot = store.snapshot_dataset("cu-import", 0)
    first = campaign_steps.snapshot_documents(store, snapshot)
    assert sorted(d["_id"] for d in first) == sorted(d["_id"] for d in docs) and "label" in first[0]
    mongo_db.configurations.delete_one({"_id": first[0]["_id"]})
    assert campaign_steps.snapshot_documents(store, snapshot) is first  # not read again
    other = store.snapshot_dataset("cu-import", 1)  # a new snapshot is read from the database
    assert len(campaign_steps.snapshot_documents(store, other)) == 4


def test_a_failed_label_is_quarantined_and_the_batch_goes_on(mongo_db, tmp_path):
    cfg = load_config(small_cu_config(tmp_path, "cu-fail"))  # EMT labels
    store = _store(mongo_db, cfg)
    good, _ = store.add_atoms(cfg.name, bulk("Cu", "fcc", a=3.61, cubic=True), {"kind": "init"}, status="selected")
    bad, _ = store.add_atoms(cfg.name, bulk("Ar", "fcc", a=5.26, cubic=True), {"kind": "init"}, status="selected")
    result = campaign_steps.label_batch(store, cfg, [good, bad])
    assert (result["labeled"], result["failed"]) == (1, 1)
    assert mongo_db.configurations.find_one({"_id": good})["status"] == "labeled"
    failed = mongo_db.configurations.find_one({"_id": bad})
    assert failed["status"] == "label_failed" and failed["label_attempts"][0]["reason"]
    again = campaign_steps.label_batch(store, cfg, [good, bad])  # rerun: nothing is labeled twice
    assert (again["labeled"], again["failed"]) == (0, 0)


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
        edges = campaign_steps.deviation_edges(lo, hi)
        assert edges == sorted(set(edges)) and lo in edges and hi in edges
        np.histogram([0.01, 0.2, 3.0], bins=edges)  # strictly increasing: numpy accepts them
