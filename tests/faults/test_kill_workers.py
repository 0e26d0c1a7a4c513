"""SIGKILL of a worker in the middle of each kind of Firework, under `firegen run`, and no person acts (issue 20,
item 1): the gpu worker during explore; the cpu worker during init, during a label batch (after some of its labels
were written) and during select. The cpu worker is usually the one whose lost-run duty heals (its first pass
comes first): killed, `firegen run` starts another, the duty passes to a live worker, the lost Firework is rerun
once, and the campaign finishes whole. (The gpu worker during train: test_lost_worker.py.)

init, label and select take well under a second here, so the cpu worker is stepped until it is in the middle of
one (fault_helpers.strike_during). The label case is in the default suite; the others are slow."""

from __future__ import annotations

import os
import signal

import pytest

from campaign_helpers import small_cu_config
from fault_helpers import (NAME, assert_campaign_whole, assert_iterations_whole, assert_provenance_whole, database,
                           fault_config, fireworks_of, label_figures, launch_pid, private_port, record_outcome,
                           running, start_run, stop_run, strike_during, wait_for)
from firegen.db.fireworks_archive import find_firework
from firegen.db.healing import DUTY_COLLECTION, LOST_KEY


def _some_labels_written(db, launch) -> bool:
    """The label batch of ``launch`` has written some of its labels, not all."""
    fw = db.fireworks.find_one({"fw_id": launch["fw_id"]}, {"spec._tasks": 1})
    ids = [cid for task in fw["spec"]["_tasks"] for cid in task.get("config_ids", [])]
    from bson import ObjectId

    done = db.configurations.count_documents({"_id": {"$in": [ObjectId(i) for i in ids]}, "status": "labeled"})
    return 0 < done < len(ids)


def _explore_running(db) -> bool:
    return fireworks_of(db, "explore", "RUNNING") > 0


CASES = {
    # case: (category, kind, iterations, when, begin)
    "gpu-explore": ("gpu", "explore", 1, None, None),
    "cpu-init": ("cpu", "init", 1, None, None),
    "cpu-label": ("cpu", "label", 1, _some_labels_written, None),
    "cpu-select": ("cpu", "select", 2, None, _explore_running),  # iteration 0's select queues iteration 1
}


@pytest.mark.parametrize("case", [pytest.param("cpu-label")] +
                         [pytest.param(c, marks=pytest.mark.slow) for c in CASES if c != "cpu-label"])
def test_sigkill_of_a_worker_mid_firework_heals_itself(tmp_path, case):
    category, kind, iterations, when, begin = CASES[case]
    config = (fault_config(tmp_path) if iterations == 1 else
              small_cu_config(tmp_path, NAME, stage={"temperatures": [1500], "nsteps": 300,
                                                     "max_iterations": iterations}))
    private_port(tmp_path)
    run = start_run(tmp_path, config, timeout=2400)
    try:
        db = database(tmp_path)
        if category == "gpu":  # minutes long: caught by polling
            launch = wait_for(lambda: running(db, kind, 2.0), 900, f"a {kind} Firework under way")
            holder = (db[DUTY_COLLECTION].find_one({"_id": "lostruns"}) or {}).get("holder")
            os.killpg(launch_pid(launch), signal.SIGKILL)  # the worker and its LAMMPS
        else:
            holder_before = {}

            def begin_and_note(db):
                if begin is not None and not begin(db):
                    return False
                holder_before["holder"] = (db[DUTY_COLLECTION].find_one({"_id": "lostruns"}) or {}).get("holder")
                return True

            launch = strike_during(db, tmp_path, category, kind, when=when, begin=begin_and_note)
            holder = holder_before.get("holder")
        killed_pid = launch_pid(launch)
        held_duty = bool(holder) and holder.split("/")[2] == str(killed_pid)
        assert db.launches.find_one({"launch_id": launch["launch_id"]})["state"] in ("RUNNING", "FIZZLED")
        out, err = run.communicate(timeout=2400)
        assert run.returncode == 0, out[-3000:] + err[-3000:]
        assert f"the {category} worker exited with code -9; starting another (1 of 3)" in err
        fw = find_firework(db, {"fw_id": launch["fw_id"]})  # live, or archived with its finished iteration
        assert fw["state"] == "COMPLETED" and fw["spec"][LOST_KEY] == 1
        launches = fw["launches"] + fw.get("archived_launches", [])
        assert len(launches) == 2 and launch["launch_id"] in launches
        logs = "".join(p.read_text() for p in (tmp_path / ".firegen" / "workers").glob("*/worker.log"))
        assert f"Firework {launch['fw_id']} was lost (its worker process is gone); rerun" in logs
        if held_duty:  # the duty went on in a live worker
            now = db[DUTY_COLLECTION].find_one({"_id": "lostruns"})["holder"]
            assert now.split("/")[2] != str(killed_pid)
        if iterations == 1:
            assert_campaign_whole(db)
        else:
            assert_iterations_whole(db)
        assert_provenance_whole(db)
        figures = label_figures(db)
        assert figures["labels_lost"] == 0 and figures["labels_duplicated"] == 0
        record_outcome(f"SIGKILL {category} worker during {kind}", True, figures,
                       "rerun once by the lost-run duty" + ("; the killed worker held the duty" if held_duty else ""))
    finally:
        stop_run(tmp_path, run)
