"""A real campaign end to end: FerretDB, deepmd-kit training, LAMMPS exploration, EMT labels,
a gpu and a cpu worker in separate processes, the workflow driving itself to convergence."""

import json

import pytest
from bson import ObjectId

from campaign_helpers import campaign_db, firegen, small_cu_config


@pytest.fixture(scope="module")
def finished_campaign(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loop")
    config = small_cu_config(folder, "cu-loop")
    run = firegen(folder, "run", str(config), "--timeout", "1200", timeout=1500)
    db = campaign_db(folder)
    yield folder, run, db
    firegen(folder, "db", "down")


def test_campaign_iterates_and_its_stage_converges(finished_campaign):
    folder, run, db = finished_campaign
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    campaign = db.campaigns.find_one({"name": "cu-loop"})
    assert campaign["status"] == "converged" and campaign["stage_status"] == ["converged"]
    iterations = list(db.iterations.find({"campaign": "cu-loop"}).sort("index", 1))
    assert len(iterations) >= 2
    for it in iterations[:-1]:
        assert it["decision"]["action"] == "continue" and it["selected"] > 0
    assert iterations[-1]["decision"]["action"] == "done"
    assert iterations[-1]["ratios"]["accurate"] >= 0.9
    # the per-iteration table is printed at the end and by `firegen status`
    assert "accurate %" in run.stdout
    status = firegen(folder, "status", "cu-loop", check=True)
    assert status.stdout.count("\n") >= len(iterations) + 2 and "converged" in status.stdout


def test_every_configuration_has_an_origin_and_every_model_a_dataset(finished_campaign):
    _, _, db = finished_campaign
    for doc in db.configurations.find({"campaign": "cu-loop"}):
        origin = doc["origin"]
        assert origin["kind"] in ("init", "explored")
        if origin["kind"] == "explored":
            assert {"iteration", "stage", "system", "condition", "model_ids", "fw_id", "frame"} <= set(origin)
            assert len(origin["model_ids"]) == 2 and origin["fw_id"] is not None
            assert origin["condition"]["ensemble"] == "nvt" and origin["condition"]["temperature"] in (900, 1500)
        if doc["status"] == "labeled":
            assert doc["label_writes"] == 1 and doc["label"]["code"] == "ase-EMT"
    for model in db.models.find({"campaign": "cu-loop"}):
        dataset = db.datasets.find_one({"_id": model["dataset_id"]})
        assert dataset is not None and dataset["iteration"] == model["iteration"]
        blob = db["blobs.files"].find_one({"_id": model["file_id"]})
        assert blob["metadata"]["sha256"] == model["sha256"]
        assert model["metrics"]["train"]["rmse_f"] > 0


def test_provenance_answers_match_the_history(finished_campaign):
    folder, _, db = finished_campaign
    last = db.iterations.find_one({"campaign": "cu-loop"}, sort=[("index", -1)])["index"]
    model = db.models.find_one({"campaign": "cu-loop", "iteration": last, "member": 0})
    out = firegen(folder, "provenance", "model", str(model["_id"]), check=True)
    answer = json.loads(out.stdout)
    got = {ObjectId(label["_id"]["$oid"]) for label in answer["labels"]}
    expected = {d["_id"] for d in db.configurations.find(
        {"campaign": "cu-loop", "status": "labeled", "origin.iteration": {"$lt": last}}, {"_id": 1})}
    assert got == expected and len(got) == answer["dataset"]["size"]
    assert list(answer["labelers"].values())[0]["code"] == "ase-EMT"

    explored = db.configurations.find_one({"campaign": "cu-loop", "origin.kind": "explored", "status": "labeled"})
    out = firegen(folder, "provenance", "config", str(explored["_id"]), check=True)
    answer = json.loads(out.stdout)
    i = explored["origin"]["iteration"]
    assert {m["iteration"] for m in answer["explored_with"]} == {i}
    trained_iterations = {m["iteration"] for m in answer["trained_models"]}
    assert trained_iterations == set(range(i + 1, last + 1))
    fw = db.fireworks.find_one({"fw_id": explored["origin"]["fw_id"]})
    assert fw["spec"]["firegen"]["kind"] == "explore" and fw["spec"]["firegen"]["iteration"] == i
