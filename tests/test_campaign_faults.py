"""A killed worker: SIGKILL the cpu worker in the middle of a label Firework, rerun the lost run,
and the campaign finishes with every configuration labeled exactly once."""

import os
import signal
import subprocess
import time

from campaign_helpers import BIN, campaign_db, cli_env, firegen, small_cu_config
from firegen.db.fireworks_archive import find_firework


def _start_worker(folder, kind):
    return subprocess.Popen([str(BIN / "firegen"), "worker", f"--{kind}"], cwd=folder, env=cli_env(folder),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_during_label_then_rerun_lost_runs(tmp_path):
    # tblite GFN1-xTB takes ~2 s per 32-atom Cu frame: a window wide enough to kill a label batch
    # this campaign also explores with the ASE engine (the loop test covers LAMMPS)
    config = small_cu_config(tmp_path, "cu-kill", labeler={"kind": "tblite", "settings": {"method": "GFN1-xTB"}},
                             stage={"temperatures": [300], "nsteps": 200, "max_iterations": 1},
                             exploration={"engine": "ase"})
    firegen(tmp_path, "db", "up", check=True)
    workers = []
    try:
        firegen(tmp_path, "submit", str(config), check=True)
        db = campaign_db(tmp_path)
        cpu = _start_worker(tmp_path, "cpu")
        workers.append(cpu)
        _wait(lambda: db.configurations.count_documents({"campaign": "cu-kill", "status": "labeled"}) >= 2,
              300, "the first labels")
        os.killpg(cpu.pid, signal.SIGKILL)
        cpu.wait()
        labeled_at_kill = db.configurations.count_documents({"campaign": "cu-kill", "status": "labeled"})
        total = db.configurations.count_documents({"campaign": "cu-kill"})
        assert labeled_at_kill < total, "the label batch finished before the kill; nothing was tested"
        label_fw = db.fireworks.find_one({"spec.firegen.kind": "label"})
        assert label_fw["state"] == "RUNNING"  # the killed worker left its launch behind

        time.sleep(2)
        lost = firegen(tmp_path, "lostruns", "--rerun", "--expiration-secs", "1", check=True)
        assert str(label_fw["fw_id"]) in lost.stdout
        assert db.fireworks.find_one({"fw_id": label_fw["fw_id"]})["state"] == "READY"

        workers += [_start_worker(tmp_path, "cpu"), _start_worker(tmp_path, "gpu")]
        _wait(lambda: (db.campaigns.find_one({"name": "cu-kill"}) or {}).get("status") in ("converged", "max_iterations")
              and not db.fireworks.count_documents({"state": {"$in": ["READY", "RUNNING", "RESERVED", "WAITING"]}}),
              600, "the campaign to finish")
        init = list(db.configurations.find({"campaign": "cu-kill", "origin.kind": "init"}))
        assert init and all(d["status"] == "labeled" and d["label_writes"] == 1 for d in init)
        assert not db.configurations.count_documents({"status": "label_failed"})
        fw = find_firework(db, {"fw_id": label_fw["fw_id"]})  # live, or archived with its finished iteration
        assert fw["state"] == "COMPLETED" and len(fw["launches"]) + len(fw.get("archived_launches", [])) == 2
        assert db.fireworks.count_documents({"state": "FIZZLED"}) == 0
        (exploration,) = db.iterations.find_one({"campaign": "cu-kill", "index": 0})["explorations"].values()
        assert exploration["engine"] == "ase" and exploration["total"] == 200 // 10 + 1
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
        firegen(tmp_path, "db", "down")
