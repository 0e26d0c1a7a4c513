"""Helpers of the fault tests: a small cu_emt campaign run by `firegen run` in the background, waiting for a
moment to strike, and the end-of-campaign checks every fault case makes."""

from __future__ import annotations

import datetime
import os
import signal
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


#: One worker per category: the fault cases strike "the" gpu or cpu worker (``worker_pid``).
ONE_WORKER_EACH = ("--gpu-workers", "1", "--cpu-workers", "1")


def start_run(folder: Path, config: Path, timeout: float = 1200) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "firegen"), "run", str(config), "--timeout", str(timeout), *ONE_WORKER_EACH],
                            cwd=folder, env=cli_env(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_run(folder: Path, run: subprocess.Popen) -> None:
    """End a test's ``firegen run`` (if still running), its workers and its embedded database.

    ``firegen run`` is interrupted (SIGINT: it stops its workers) before it is killed; a worker left behind (the
    run was killed, or had replaced it) is killed too: an orphan worker waits for its database's address and would
    join whatever database is next started there (the embedded one prefers port 27117), another test's campaign."""
    if run.poll() is None:
        run.send_signal(signal.SIGINT)
        try:
            run.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()
    for category in ("gpu", "cpu") * 2:
        pid = worker_pid(folder, category)
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.5)
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
    return running(db, "train", seconds)


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


# -- striking a worker in the middle of a Firework of a given kind (issue 20, item 1) ---------------------

def _epoch(stamp) -> float:
    stamp = datetime.datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.timezone.utc)).timestamp()


def launch_pid(launch: dict) -> int:
    """The pid of the firegen worker that holds ``launch`` (from the process identity its FWorker stored)."""
    from firegen.db.healing import ENV_PROCESS

    return int(launch["fworker"]["env"][ENV_PROCESS].split("/")[2])


def running(db, kind: str, seconds: float = 0.0, pid: int | None = None) -> dict | None:
    """A launch of a Firework of ``kind`` (train, explore, init, label, gate, select) RUNNING for at least
    ``seconds``, held by the worker process ``pid`` when given; None when there is none."""
    for launch in db.launches.find({"state": "RUNNING"}):
        fw = db.fireworks.find_one({"fw_id": launch["fw_id"]}, {"spec.firegen.kind": 1})
        if not fw or (fw.get("spec", {}).get("firegen") or {}).get("kind") != kind:
            continue
        if pid is not None and launch_pid(launch) != pid:
            continue
        if time.time() - _epoch(launch["state_history"][-1]["created_on"]) >= seconds:
            return launch
    return None


def worker_pid(folder: Path, category: str) -> int | None:
    """The pid of the live ``firegen worker`` of ``category`` (gpu, cpu) that the test's ``firegen run`` started;
    it leads its own process group (the worker and its dp train, LAMMPS or labeler children)."""
    fworker = (folder / ".firegen" / "workers" / category / f"{category}_worker.yaml").resolve()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")  # empty for a zombie
        except OSError:
            continue
        if "firegen.launchers.worker" in args and any(a.endswith("_worker.yaml") and Path(a).resolve() == fworker
                                                      for a in args):
            return int(proc.name)
    return None


def strike_during(db, folder: Path, category: str, kind: str, when=None, begin=None, step: float = 0.01,
                  timeout: float = 900) -> dict:
    """SIGKILL the ``category`` worker (its process group) while it runs a Firework of ``kind`` and ``when(db,
    launch)`` holds (default: at once); return that launch.

    init, label and select Fireworks of the test campaign take well under a second, too short to catch by polling.
    So once ``begin(db)`` holds (default: at once) the worker is stepped: stopped (SIGSTOP) while this helper reads
    the database, then let run (SIGCONT) for ``step`` s at a time. Nothing of the worker is replaced: it only runs
    slower, as on a loaded machine, and is killed between two steps. Without ``when``, a Firework of ``kind`` that
    this worker completed while stepped fails the test at once (nothing was struck); with ``when``, Fireworks of
    ``kind`` it does not pick (another iteration's, say) may complete, and the timeout bounds the wait."""
    deadline = time.monotonic() + timeout
    pid = wait_for(lambda: (begin is None or begin(db)) and worker_pid(folder, category), timeout,
                   f"the {category} worker, ready to step")
    os.killpg(pid, signal.SIGSTOP)
    killed = False
    try:
        while time.monotonic() < deadline:
            try:
                launch = running(db, kind, pid=pid)
                if launch is not None and (when is None or when(db, launch)):
                    os.killpg(pid, signal.SIGKILL)
                    killed = True
                    return launch
                missed = []
                if when is None:
                    ids = [fw["fw_id"] for fw in db.fireworks.find({"spec.firegen.kind": kind}, {"fw_id": 1})]
                    missed = [d for d in db.launches.find({"fw_id": {"$in": ids}, "state": "COMPLETED"})
                              if launch_pid(d) == pid]
            except pymongo.errors.PyMongoError:
                missed = []
            assert not missed, (f"the {category} worker completed {kind} Firework {missed[0]['fw_id']} before it "
                                f"could be struck; nothing was tested")
            try:
                os.killpg(pid, signal.SIGCONT)
                time.sleep(step)
                os.killpg(pid, signal.SIGSTOP)
            except ProcessLookupError:
                killed = True
                raise AssertionError(f"the {category} worker exited before a {kind} Firework could be struck "
                                     f"(see its worker.log)") from None
        raise AssertionError(f"timed out stepping the {category} worker to a {kind} Firework")
    finally:
        if not killed:
            try:
                os.killpg(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def fireworks_of(db, kind: str, state: str | tuple = ("RUNNING", "COMPLETED")) -> int:
    """How many live Fireworks of ``kind`` are in ``state`` (one state, or any of several)."""
    states = [state] if isinstance(state, str) else list(state)
    return db.fireworks.count_documents({"spec.firegen.kind": kind, "state": {"$in": states}})


def assert_provenance_whole(db, campaign: str = NAME) -> None:
    """Provenance intact (firegen's own queries, as `firegen provenance` runs them): every model has its dataset
    snapshot, every member of it labeled; every labeled configuration has its origin and was trained on by the
    models of the iterations after it was labeled; every explored configuration names the committee that found it."""
    from firegen.db.provenance import configuration_provenance, model_provenance

    models = list(db.models.find({"campaign": campaign}, {"_id": 1, "iteration": 1, "member": 1}))
    assert models
    for model in models:
        prov = model_provenance(db, model["_id"], limit=None)
        assert prov["dataset"] is not None and prov["dataset"]["iteration"] == model["iteration"], model
        ids = [str(label["_id"]) for label in prov["labels"]]
        assert prov["n_labels"] == len(ids) == len(set(ids)) > 0, model
        assert all(label["status"] == "labeled" for label in prov["labels"]), model
    for doc in db.configurations.find({"campaign": campaign, "status": "labeled"}, {"_id": 1}):
        prov = configuration_provenance(db, doc["_id"])
        origin = prov["configuration"]["origin"]
        assert origin.get("kind") in ("init", "explored", "imported"), prov["configuration"]
        if origin["kind"] == "explored":
            assert prov["explored_with"] and origin.get("fw_id") is not None, prov["configuration"]
        later = [m for m in models if m["iteration"] > origin.get("iteration", -1)]
        trained = {str(m["_id"]) for m in prov["trained_models"]}
        assert {str(m["_id"]) for m in later} <= trained, (prov["configuration"]["_id"], later, trained)


def assert_iterations_whole(db, committee: int = 2, campaign: str = NAME) -> dict:
    """:func:`assert_campaign_whole` for a campaign of any number of iterations: finished; the 18 starting frames
    and every configuration a select picked labeled exactly once (none left selected, failed or candidate); every
    iteration decided, explored and with its whole committee stored with its model files; nothing fizzled."""
    doc = db.campaigns.find_one({"name": campaign})
    assert doc["status"] in ("converged", "max_iterations"), doc.get("stop_reason")
    init = list(db.configurations.find({"campaign": campaign, "origin.kind": "init"}, {"status": 1, "label_writes": 1}))
    assert len(init) == 18 and all(d["status"] == "labeled" and d["label_writes"] == 1 for d in init)
    assert db.configurations.count_documents({"campaign": campaign, "label_writes": {"$gt": 1}}) == 0
    left = db.configurations.count_documents({"campaign": campaign,
                                              "status": {"$in": ["selected", "label_failed", "candidate"]}})
    assert left == 0
    iterations = sorted(db.iterations.find({"campaign": campaign}), key=lambda it: it["index"])
    assert [it["index"] for it in iterations] == list(range(len(iterations)))
    for it in iterations:
        assert it.get("decision") and it.get("explorations"), it["index"]
        picked = db.configurations.count_documents({"campaign": campaign, "origin.kind": "explored",
                                                    "origin.iteration": it["index"], "status": "labeled"})
        assert picked == it["selected"], (it["index"], picked, it["selected"])
        models = list(db.models.find({"campaign": campaign, "iteration": it["index"]}))
        assert sorted(m["member"] for m in models) == list(range(committee)), it["index"]
        for model in models:
            assert db["blobs.files"].find_one({"_id": model["file_id"]})["metadata"]["sha256"] == model["sha256"]
    assert iterations[-1]["decision"]["action"] == "done"
    assert db.fireworks.count_documents({"state": "FIZZLED"}) == 0
    return doc


def private_port(folder: Path) -> int:
    """Give the test's embedded database a free port of its own (recorded in ``server.json`` before its first start)
    instead of the embedded server's default 27117, where a worker orphaned by any earlier run on this machine may be
    waiting for its own database to come back."""
    from firegen.db.embedded.server import free_port

    state = folder / ".firegen" / "db" / "server.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    state.write_text(json.dumps({"port": port}))
    return port


def dead_identity() -> str:
    """The process identity (:func:`firegen.db.healing.process_identity`) of a process of this machine that has
    exited: what a killed worker leaves in its launches."""
    from firegen.db.healing import process_identity

    child = subprocess.Popen(["sleep", "30"])
    identity = process_identity(child.pid)
    child.kill()
    child.wait()
    return identity
