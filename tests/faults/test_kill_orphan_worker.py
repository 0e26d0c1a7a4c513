"""A worker orphaned by a killed `firegen run` waits for its database's address; when another folder's embedded
database starts on that port instead (the embedded server prefers 27117), the worker stops with one line rather
than run that database's Fireworks. Seen while running benchmarks/faults.py: a gpu worker left by an earlier run
took the train Fireworks of a fault test's campaign on 27117 with its older code and fizzled them."""

from __future__ import annotations

import json
import time

from fireworks import Firework, LaunchPad, ScriptTask

from firegen.db.connection import write_launchpad_file
from firegen.db.embedded.server import EmbeddedServer, free_port
from firegen.launchers.local import start_worker


def _server(root, port: int) -> EmbeddedServer:
    root.mkdir()
    (root / "server.json").write_text(json.dumps({"port": port}))
    return EmbeddedServer(root)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_whose_database_came_back_as_another_stops_instead_of_running_its_fireworks(tmp_path):
    port = free_port()
    first, second = _server(tmp_path / "first", port), _server(tmp_path / "second", port)
    uri = first.start()
    LaunchPad(host=uri + "w", name="w", uri_mode=True, strm_lvl="ERROR").reset("", require_password=False)
    proc = start_worker("cpu", write_launchpad_file(tmp_path / "my_launchpad.yaml", uri + "w"), tmp_path / "cpu",
                        sleep=0.2)
    log = tmp_path / "cpu" / "worker.log"
    try:
        _wait(lambda: "firegen.workflows.tasks" in log.read_text(), 180, "the worker's start")
        first.stop()  # its database goes away (the run that started it was killed, say)
        _wait(lambda: "unreachable since" in log.read_text(), 120, "the worker to wait for its database")
        assert proc.poll() is None
        other = second.start()  # another folder's database, on the same address
        assert other == uri
        lp = LaunchPad(host=other + "w", name="w", uri_mode=True, strm_lvl="ERROR")
        lp.reset("", require_password=False)
        fw = Firework(ScriptTask.from_str("echo ran > out.txt"), spec={"_category": "cpu"})
        lp.add_wf(fw)
        proc.wait(timeout=120)
        assert proc.returncode == 3
        assert lp.get_fw_by_id(fw.fw_id).state == "READY"  # not taken by the orphan
        text = log.read_text()
        assert (f"firegen worker: the database at mongodb://127.0.0.1:{port} is not the one this worker started on"
                in text) and "Traceback" not in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        first.stop()
        second.stop()
