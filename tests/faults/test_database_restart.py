"""SIGKILL of the embedded database during training, restarted by `firegen db up` 15 s later (issue 20, as a
user met it): the server comes back on the port its clients hold, `firegen run` and its workers wait with one
line instead of a traceback, and the campaign finishes with nothing lost and nothing labeled twice."""

import os
import signal
import time

from campaign_helpers import firegen
from fault_helpers import (assert_campaign_whole, database, fault_config, running_train, server_state, start_run,
                           stop_run, wait_for)


def test_sigkill_of_the_embedded_database_during_training(tmp_path):
    run = start_run(tmp_path, fault_config(tmp_path))
    try:
        db = database(tmp_path)
        wait_for(lambda: running_train(db), 600, "a train Firework under way")
        before = server_state(tmp_path)
        labeled_before = db.configurations.count_documents({"status": "labeled"})
        os.kill(before["pid"], signal.SIGKILL)
        time.sleep(15)
        up = firegen(tmp_path, "db", "up", check=True)
        after = server_state(tmp_path)
        assert after["port"] == before["port"] and after["pid"] != before["pid"]  # where its clients expect it
        assert f"pid {before['pid']}) had died" in up.stdout
        assert db.configurations.count_documents({"status": "labeled"}) >= labeled_before > 0  # nothing lost
        out, err = run.communicate(timeout=1200)
        assert run.returncode == 0, out[-3000:] + err[-3000:]
        assert f"database at mongodb://127.0.0.1:{before['port']} unreachable since " in err
        assert "; waiting (Ctrl-C to stop)" in err and "answers again after" in err
        assert "Traceback" not in out + err
        logs = "".join(p.read_text() for p in (tmp_path / ".firegen" / "workers").glob("*/worker.log"))
        assert "unreachable since" in logs  # the workers waited too, instead of dying
        assert_campaign_whole(db)
    finally:
        stop_run(tmp_path, run)
