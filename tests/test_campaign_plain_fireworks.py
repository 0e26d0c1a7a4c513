"""A campaign run the FireWorks way only: `firegen submit --dry-run` writes the workflow, `lpad add`
queues it, plain `rlaunch -l my_launchpad.yaml` gpu and cpu workers run it to the end. No firegen
wrapper, no firegen environment variable: each task uses the LaunchPad its Rocket was given."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pymongo
import yaml

from campaign_helpers import BIN, ROOT, small_cu_config
from firegen.campaign.records import CAMPAIGN_ENDED
from firegen.db.embedded.server import free_port
from firegen.db.fireworks_archive import find_firework



def plain_env() -> dict:
    """The user's environment with nothing of firegen's or FireWorks' database settings in it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREGEN_") and k != "FW_CONFIG_FILE"}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"  # lmp and dp of this environment, as after `source .venv/bin/activate`
    return env


def run(args, cwd, timeout=300):
    out = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=plain_env(), capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out


def test_lpad_add_and_plain_rlaunch_workers_run_a_campaign_to_its_end(tmp_path):
    config = small_cu_config(tmp_path, "cu-plain", stage={"temperatures": [900], "max_iterations": 1})
    (tmp_path / ".firegen" / "db").mkdir(parents=True)  # a port of our own: a developer's server is never touched
    (tmp_path / ".firegen" / "db" / "server.json").write_text(f'{{"port": {free_port()}}}')
    run(["firegen", "db", "up"], tmp_path)
    workers = []
    try:
        run(["firegen", "submit", str(config), "--dry-run", "-o", "wf.yaml"], tmp_path)
        run(["lpad", "-l", "my_launchpad.yaml", "add", "wf.yaml"], tmp_path)
        for kind in ("gpu", "cpu"):
            folder = tmp_path / kind
            folder.mkdir()
            log = open(folder / "rlaunch.log", "w")
            workers.append(subprocess.Popen(
                [str(BIN / "rlaunch"), "-l", str(tmp_path / "my_launchpad.yaml"), "-w",
                 str(ROOT / "launchers" / f"{kind}_worker.yaml"), "rapidfire", "--nlaunches", "infinite",
                 "--sleep", "1"], cwd=folder, env=plain_env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        uri = yaml.safe_load((tmp_path / "my_launchpad.yaml").read_text())["host"]
        db = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000).get_default_database()
        deadline, campaign, states = time.monotonic() + 900, None, set()
        while time.monotonic() < deadline:
            campaign = db.campaigns.find_one({"name": "cu-plain"}) or {}
            states = {fw["state"] for fw in db.fireworks.find({}, {"state": 1})}
            if "FIZZLED" in states or (campaign.get("status") in CAMPAIGN_ENDED and states == {"COMPLETED"}):
                break
            assert all(w.poll() is None for w in workers), "an rlaunch worker exited"
            time.sleep(2)
        fizzled = list(db.launches.find({"state": "FIZZLED"}, {"action.stored_data._exception": 1}))
        assert not fizzled, fizzled[0]["action"]["stored_data"]["_exception"]["_stacktrace"][-1500:]
        assert campaign.get("status") == "max_iterations" and states == {"COMPLETED"}
        iteration = db.iterations.find_one({"campaign": "cu-plain", "index": 0})
        assert iteration["decision"]["action"] == "done" and iteration["explorations"]
        # the Firework ids came from the Rocket: each explored frame names the explore Firework it came from
        explored = db.configurations.find_one({"campaign": "cu-plain", "origin.kind": "explored"})
        assert explored is not None
        fw = find_firework(db, {"fw_id": explored["origin"]["fw_id"]})  # finished iterations are archived
        assert fw["spec"]["firegen"]["kind"] == "explore"
        assert db.campaigns.find_one({"name": "cu-plain"})["init_fw_id"] == \
            find_firework(db, {"spec.firegen.kind": "init"})["fw_id"]
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
        run(["firegen", "db", "down"], tmp_path)
