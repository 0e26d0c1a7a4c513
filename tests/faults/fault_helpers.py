"""Helpers of the fault tests: a small cu_emt campaign run by `firegen run` in the background, waiting for a
moment to strike, and the end-of-campaign checks every fault case makes."""

from __future__ import annotations

import datetime
import os
import json
import subprocess
import time
from pathlib import Path

import pymongo

from campaign_helpers import BIN, cli_env, firegen, small_cu_config

NAME = "cu-fault"


def fault_config(folder: Path) -> Path:
    """cu_emt with a committee of 2 trained for 300 steps, one hot condition, one iteration: 18 initial labels,
    training, exploration, selection (a couple of minutes on 2 cores)."""
    return small_cu_config(folder, NAME, stage={"temperatures": [1500], "nsteps": 300, "max_iterations": 1})


def start_run(folder: Path, config: Path, timeout: float = 1200) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "firegen"), "run", str(config), "--timeout", str(timeout)], cwd=folder,
                            env=cli_env(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_run(folder: Path, run: subprocess.Popen) -> None:
    """End a test's ``firegen run`` (if still running) and its embedded database."""
    if run.poll() is None:
        run.kill()
        run.communicate()
    firegen(folder, "db", "down")


def server_state(folder: Path) -> dict:
    try:
        return json.loads((folder / ".firegen" / "db" / "server.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except pymongo.errors.PyMongoError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def database(folder: Path):
    state = wait_for(lambda: server_state(folder).get("pid") and server_state(folder), 300, "the embedded database")
    return pymongo.MongoClient(state["uri"], serverSelectionTimeoutMS=3000)["firegen"]


def running_train(db, seconds: float = 3.0) -> dict | None:
    """A train launch RUNNING for at least ``seconds`` (dp train is under way), with its Firework's id."""
    for launch in db.launches.find({"state": "RUNNING"}):
        fw = db.fireworks.find_one({"fw_id": launch["fw_id"]}, {"spec.firegen.kind": 1})
        started = launch["state_history"][-1]["created_on"]
        started = datetime.datetime.fromisoformat(started) if isinstance(started, str) else started
        started = started if started.tzinfo else started.replace(tzinfo=datetime.timezone.utc)
        if fw and fw["spec"]["firegen"]["kind"] == "train" and time.time() - started.timestamp() >= seconds:
            return launch
    return None


def assert_campaign_whole(db, committee: int = 2) -> dict:
    """The campaign finished; every configuration selected for labeling was labeled exactly once, none failed
    and none waits; the iteration's whole committee is stored with its model files; select judged the
    exploration; nothing fizzled."""
    campaign = db.campaigns.find_one({"name": NAME})
    assert campaign["status"] in ("converged", "max_iterations"), campaign.get("stop_reason")
    init = list(db.configurations.find({"campaign": NAME, "origin.kind": "init"}, {"status": 1, "label_writes": 1}))
    assert len(init) == 18 and all(d["status"] == "labeled" and d["label_writes"] == 1 for d in init)
    assert db.configurations.count_documents({"campaign": NAME, "status": {"$in": ["label_failed", "candidate"]}}) == 0
    (iteration,) = db.iterations.find({"campaign": NAME})
    assert iteration["decision"]["action"] == "done" and iteration["explorations"]
    models = list(db.models.find({"campaign": NAME, "iteration": 0}))
    assert sorted(m["member"] for m in models) == list(range(committee))
    for model in models:
        assert db["blobs.files"].find_one({"_id": model["file_id"]})["metadata"]["sha256"] == model["sha256"]
    assert db.fireworks.count_documents({"state": "FIZZLED"}) == 0
    return campaign


TABLE_ENV = "FIREGEN_FAULT_TABLE"


def label_figures(db, campaign: str = NAME) -> dict:
    """What a fault cost in labels: configurations selected for labeling that ended without one (lost), and
    labels written more than once (duplicated)."""
    lost = db.configurations.count_documents({"campaign": campaign, "status": {"$in": ["selected", "label_failed"]}})
    duplicated = db.configurations.count_documents({"campaign": campaign, "label_writes": {"$gt": 1}})
    labeled = db.configurations.count_documents({"campaign": campaign, "status": "labeled"})
    return {"labeled": labeled, "labels_lost": lost, "labels_duplicated": duplicated}


def record_outcome(case: str, survived: bool, figures: dict | None = None, note: str = "") -> None:
    """Append one fault case's outcome to the JSON-lines file named by $FIREGEN_FAULT_TABLE (set by
    benchmarks/faults.py, which prints the table); a no-op otherwise. Call it at the end of a case, after its
    assertions (a failed case is recorded by benchmarks/faults.py from pytest's own result)."""
    path = os.environ.get(TABLE_ENV)
    if not path:
        return
    row = {"case": case, "survived": survived, **(figures or {}), "note": note}
    with open(path, "a") as out:
        out.write(json.dumps(row) + "\n")
