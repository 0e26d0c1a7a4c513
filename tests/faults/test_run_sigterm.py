"""`kill` (SIGTERM) of `firegen run` stops the workers it started, as Ctrl-C does: each worker leads its own
process group, so without this they ran on, orphaned, and a later campaign on the same database port could be
served by them (a worker left from an earlier run took three test campaigns' train Fireworks that way)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from fault_helpers import private_port, database, fault_config, start_run, stop_run, wait_for, worker_pid


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_of_firegen_run_stops_its_workers(tmp_path):
    private_port(tmp_path)  # not 27117, where an orphaned worker may wait
    run = start_run(tmp_path, fault_config(tmp_path))
    try:
        database(tmp_path)
        pids = wait_for(lambda: all(worker_pid(tmp_path, k) for k in ("gpu", "cpu"))
                        and [worker_pid(tmp_path, k) for k in ("gpu", "cpu")], 300, "both workers")
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 130, out[-2000:] + err[-2000:]
        assert "interrupted; campaign cu-fault goes on when workers run again" in err
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(_alive(p) for p in pids), pids
    finally:
        stop_run(tmp_path, run)
