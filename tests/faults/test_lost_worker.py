"""SIGKILL of the gpu worker during training, under `firegen run`, and no person acts: `firegen run` starts
another gpu worker, the cpu worker's lost-run duty sees the killed worker's process gone and reruns its train
Firework (once), and the campaign finishes whole."""

import os
import signal

from fault_helpers import (assert_campaign_whole, assert_provenance_whole, database, fault_config, label_figures,
                           private_port, record_outcome, running_train, start_run, stop_run, wait_for)
from firegen.db.fireworks_archive import find_firework
from firegen.db.healing import ENV_PROCESS, LOST_KEY


def test_sigkill_of_the_gpu_worker_during_training_heals_itself(tmp_path):
    private_port(tmp_path)
    run = start_run(tmp_path, fault_config(tmp_path))
    try:
        db = database(tmp_path)
        launch = wait_for(lambda: running_train(db), 600, "a train Firework under way")
        worker_pid = int(launch["fworker"]["env"][ENV_PROCESS].split("/")[2])
        os.killpg(worker_pid, signal.SIGKILL)  # the worker and its dp train
        out, err = run.communicate(timeout=1200)
        assert run.returncode == 0, out[-3000:] + err[-3000:]
        assert "the gpu worker exited with code -9; starting another (1 of 3)" in err
        fw = find_firework(db, {"fw_id": launch["fw_id"]})  # live, or archived with its finished iteration
        assert fw["state"] == "COMPLETED" and fw["spec"][LOST_KEY] == 1
        launches = fw["launches"] + fw.get("archived_launches", [])
        assert len(launches) == 2 and launch["launch_id"] in launches
        logs = (tmp_path / ".firegen" / "workers" / "cpu" / "worker.log").read_text()
        logs += (tmp_path / ".firegen" / "workers" / "gpu" / "worker.log").read_text()
        assert f"Firework {launch['fw_id']} was lost (its worker process is gone); rerun" in logs
        assert_campaign_whole(db)
        assert_provenance_whole(db)
        figures = label_figures(db)
        assert figures["labels_lost"] == 0 and figures["labels_duplicated"] == 0
        record_outcome("SIGKILL gpu worker during train", True, figures, "rerun once by the lost-run duty")
    finally:
        stop_run(tmp_path, run)
