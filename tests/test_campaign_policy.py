"""The stage scheduler (per-task convergence, only unconverged tasks explored again) and the label
failure policy (stop past labeler.max_failed_ratio, `firegen relabel` retries and resumes), against a
real FerretDB and real FireWorks launches, without training."""

import os

import pytest
import yaml
from ase.build import bulk
from fireworks import FWorker
from fireworks.core.rocket_launcher import rapidfire

from campaign_helpers import running_campaign, small_cu_config
from firegen.campaign.errors import FiregenError
from firegen.db.repository import ResultsStore
from firegen.campaign.config import load_config
from firegen.campaign.convergence import decide, stage_task_keys
from firegen.orchestrator.relabel import merge_settings, parse_assignments, relabel
from firegen.workflows.jobs.gate import LabelFailuresExceeded, label_failures
from firegen.workflows.jobs.init import open_iteration
from firegen.workflows.jobs.label import label_batch
from firegen.workflows.jobs.select import select_and_decide
from firegen.workflows.jobs.train import train_member
from firegen.workflows.builders import iteration_fireworks, labels_then_iteration

GOOD = {"accurate_ratio": 0.99, "candidate_ratio": 0.01}
BAD = {"accurate_ratio": 0.60, "candidate_ratio": 0.30}


def _two_stage_config(tmp_path, name="cu-policy", **stage):
    raw = yaml.safe_load(small_cu_config(tmp_path, name).read_text())
    raw["stages"][0].update(converged_when={"accurate_ratio": 0.95, "for_iterations": 2}, max_iterations=4, **stage)
    raw["stages"].append(dict(raw["stages"][0], name="hot", temperatures=[2000]))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def test_each_task_converges_on_its_own_and_only_unconverged_tasks_are_explored_again(tmp_path):
    cfg = _two_stage_config(tmp_path)
    keys = stage_task_keys(cfg.stages[0])
    assert keys == ["fcc|c0", "fcc|c1"]  # one system, the 900 K and 1500 K conditions
    first = decide(0, cfg.stages, [BAD], tasks={"fcc|c0": [GOOD], "fcc|c1": [BAD]})
    assert first.action == "continue" and sorted(first.explore) == ["fcc|c0", "fcc|c1"]  # one good is not two
    second = decide(0, cfg.stages, [BAD, BAD], tasks={"fcc|c0": [GOOD, GOOD], "fcc|c1": [BAD, BAD]})
    assert (second.action, second.explore) == ("continue", ["fcc|c1"])
    assert second.tasks == {"fcc|c0": "converged", "fcc|c1": "running"}
    assert "1 of 2 tasks converged" in second.reason
    third = decide(0, cfg.stages, [BAD, BAD, GOOD], tasks={"fcc|c0": [GOOD, GOOD], "fcc|c1": [BAD, GOOD, GOOD][:2]})
    assert third.action == "continue"  # c1 has one good exploration after a bad one
    done = decide(0, cfg.stages, [BAD, BAD, GOOD, GOOD], tasks={"fcc|c0": [GOOD, GOOD], "fcc|c1": [BAD, BAD, GOOD, GOOD]})
    assert (done.action, done.stage, done.stage_status, done.explore) == ("next_stage", 1, "converged", [])
    assert "converged" in done.reason and "next stage 'hot'" in done.reason
    capped = decide(0, cfg.stages, [BAD] * 4, tasks={"fcc|c0": [GOOD, GOOD], "fcc|c1": [BAD] * 4})
    assert (capped.action, capped.stage_status) == ("next_stage", "max_iterations")
    assert "unconverged: fcc|c1" in capped.reason


def _explored(store, cfg, iteration, stage, per_key):
    open_iteration(store, cfg, iteration, stage)
    for key, (accurate, candidate) in per_key.items():
        store.set_iteration_fields(cfg.name, iteration, {f"explorations.{key}": {
            "accurate": accurate, "candidate": candidate, "failed": 0, "total": accurate + candidate}})


def test_select_tracks_tasks_across_iterations_and_the_next_iteration_explores_the_rest(mongo_db, tmp_path):
    cfg = _two_stage_config(tmp_path)
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    _explored(store, cfg, 0, 0, {"fcc|c0": (99, 1), "fcc|c1": (40, 60)})
    d0, _ = select_and_decide(store, cfg, 0, 0)
    assert d0.action == "continue" and sorted(d0.explore) == ["fcc|c0", "fcc|c1"]
    _explored(store, cfg, 1, 0, {"fcc|c0": (98, 2), "fcc|c1": (50, 50)})
    d1, _ = select_and_decide(store, cfg, 1, 0)
    assert (d1.action, d1.explore) == ("continue", ["fcc|c1"])
    stored = store.get_iteration(cfg.name, 1)["decision"]
    assert stored["tasks"] == {"fcc|c0": "converged", "fcc|c1": "running"} and "1 of 2 tasks" in stored["reason"]
    fws, _ = iteration_fireworks(cfg, 2, 0, d1.explore)
    explores = [fw.spec["firegen"] for fw in fws if fw.spec["firegen"]["kind"] == "explore"]
    assert [(e["system"], e["condition"]) for e in explores] == [("fcc", 1)]
    assert len(iteration_fireworks(cfg, 2, 0)[0]) == len(fws) + 1  # without a list: every task
    _explored(store, cfg, 2, 0, {"fcc|c1": (97, 3)})
    _explored(store, cfg, 3, 0, {"fcc|c1": (99, 1)})
    select_and_decide(store, cfg, 2, 0)
    d3, _ = select_and_decide(store, cfg, 3, 0)
    assert (d3.action, d3.stage, d3.stage_status) == ("next_stage", 1, "converged")
    assert store.get_campaign(cfg.name)["stage_status"] == ["converged"]


def test_assignments_and_nested_merges():
    assert parse_assignments(["scf.max_scf=100", "scf.mixing.alpha=0.2", "cutoff=500", "kpoints=[2, 2, 2]"]) == {
        "scf": {"max_scf": 100, "mixing": {"alpha": 0.2}}, "cutoff": 500, "kpoints": [2, 2, 2]}
    base = {"scf": {"max_scf": 20, "eps_scf": 1e-6}, "cutoff": 400}
    assert merge_settings(base, {"scf": {"max_scf": 100}}) == {"scf": {"max_scf": 100, "eps_scf": 1e-6}, "cutoff": 400}
    assert base["scf"]["max_scf"] == 20
    with pytest.raises(FiregenError, match="KEY=VALUE"):
        parse_assignments(["max_scf"])


def test_too_many_failed_labels_stop_the_campaign_and_relabel_resumes_it(launchpad, mongo_db, ferretdb, tmp_path):
    cfg = load_config(small_cu_config(tmp_path, "cu-relabel"))  # EMT labels: Ar is outside EMT's elements
    assert cfg.labeler.max_failed_ratio == 0.5
    store = ResultsStore(mongo_db)
    ids = running_campaign(store, cfg, [bulk("Cu", "fcc", a=3.61, cubic=True), bulk("Ar", "fcc", a=5.26, cubic=True),
                                        bulk("Ar", "fcc", a=5.40, cubic=True)])
    assert label_batch(store, cfg, ids).failed == 2
    open_iteration(store, cfg, 0, 0)
    stopped = launchpad.add_wf(labels_then_iteration(cfg, [], -1, 0, 0))  # what init appended: gate → train → ...
    os.chdir(tmp_path)
    rapidfire(launchpad, FWorker(category="cpu"), nlaunches=1, sleep_time=0, strm_lvl="ERROR")  # the snapshot gate
    gate = launchpad.fireworks.find_one({"spec.firegen.kind": "gate", "fw_id": {"$in": list(stopped.values())}})
    assert gate["state"] == "COMPLETED" and gate["spec"]["firegen"]["iteration"] == 0
    trains = list(launchpad.fireworks.find({"spec.firegen.kind": "train", "fw_id": {"$in": list(stopped.values())}}))
    assert len(trains) == cfg.committee.size and {fw["state"] for fw in trains} == {"DEFUSED"}
    doc = store.get_campaign(cfg.name)
    assert doc["status"] == "stopped" and "firegen relabel cu-relabel" in doc["stop_reason"]
    assert doc["stop_reason"].startswith("2 of 3 initial labels failed (67% > labeler.max_failed_ratio 50%)")
    assert store.find_snapshot(cfg.name, 0) is None  # no snapshot of the broken data
    # a train Firework queued before the gate existed (no snapshot in its spec) applies the same policy itself
    with pytest.raises(LabelFailuresExceeded, match="2 of 3 initial labels failed"):
        train_member(store, cfg, 0, 0, tmp_path / "train")
    assert store.models.count_documents({}) == 0  # nothing was trained on the broken data

    with pytest.raises(FiregenError, match="unknown setting"):  # a bad change is refused before anything moves
        relabel(launchpad, cfg.name, {"no_such_setting": 1}, kind="lj")
    assert mongo_db.configurations.count_documents({"status": "label_failed"}) == 2
    done = relabel(launchpad, cfg.name, {"sigma": 3.405, "epsilon": 0.0104}, kind="lj")
    assert done["configurations"] == 2 and done["resumed_iteration"] == 0
    old = {fw["fw_id"]: fw["state"] for fw in launchpad.fireworks.find({"fw_id": {"$in": list(stopped.values())}})}
    assert old.pop(gate["fw_id"]) == "COMPLETED"
    assert set(old.values()) == {"DEFUSED"}, old  # nothing of the stopped attempt can still run
    assert store.get_campaign(cfg.name)["status"] == "running"

    rapidfire(launchpad, FWorker(category="cpu"), nlaunches=0, sleep_time=0, strm_lvl="ERROR")  # labels, then the gate
    retried = list(mongo_db.configurations.find({"_id": {"$in": ids[1:]}}))
    assert all(d["status"] == "labeled" and d["label"]["kind"] == "lj" for d in retried)
    assert all(d["label_attempts"][0]["code"] for d in retried)  # the EMT failure stays on record
    assert mongo_db.configurations.find_one({"_id": ids[0]})["label"]["code"] != "lj"  # untouched
    assert label_failures(store, cfg.name, -1) == (0, 3)
    read = list(mongo_db.configurations.find({}, {"status": 1, "origin": 1}))  # as snapshot_dataset reads them
    assert label_failures(store, cfg.name, -1, read) == (0, 3)
    assert label_failures(store, cfg.name, 0, read) == (0, 0)
    trains = list(launchpad.fireworks.find({"spec.firegen.kind": "train", "fw_id": {"$in": done["fw_ids"]}}))
    assert len(trains) == cfg.committee.size and all(fw["state"] == "READY" for fw in trains)
    snapshot = store.find_snapshot(cfg.name, 0)  # the gate that ran after the retry took it, with the new labels
    assert snapshot["size"] == 3 and {fw["spec"]["firegen_snapshot"] for fw in trains} == {str(snapshot["_id"])}
