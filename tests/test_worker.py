"""The preloaded worker: FireWorks' rapidfire with a sub-second poll, after importing its category's modules."""

import time
from pathlib import Path

import pytest
from fireworks import Firework, ScriptTask, Workflow

from firegen.db.connection import write_launchpad_file
from firegen.launchers import worker
from firegen.launchers.local import start_worker


def test_preload_reports_seconds_and_import_errors(monkeypatch):
    monkeypatch.setitem(worker.CATEGORY_MODULES, "cpu", ("json", "firegen_no_such_module"))
    report = worker.preload("cpu")
    assert set(report) == set(worker.COMMON_MODULES) | {"json", "firegen_no_such_module"}
    assert all(isinstance(report[m], float) and report[m] >= 0 for m in worker.COMMON_MODULES + ("json",))
    assert report["firegen_no_such_module"].startswith("ModuleNotFoundError")
    with pytest.raises(ValueError, match="gpu"):
        worker.preload("tpu")


def test_sleep_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="sleep must be > 0"):
        worker.run(tmp_path / "lp.yaml", tmp_path / "fw.yaml", "cpu", sleep=0)


def test_worker_runs_fireworks_of_its_category_with_a_short_poll(launchpad, ferretdb, db_name, tmp_path):
    lp_file = write_launchpad_file(tmp_path / "my_launchpad.yaml", ferretdb.uri + db_name)
    proc = start_worker("cpu", lp_file, tmp_path / "cpu", sleep=0.2)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "firegen.workflows.tasks" not in (tmp_path / "cpu" / "worker.log").read_text():
            time.sleep(0.2)
        # queued after the worker is idle: picked up at its next poll
        cpu = Firework(ScriptTask.from_str("echo cpu > out.txt"), spec={"_category": "cpu"}, name="cpu-job")
        gpu = Firework(ScriptTask.from_str("echo gpu"), spec={"_category": "gpu"}, name="gpu-job")
        launchpad.add_wf(Workflow([cpu, gpu]))
        while time.monotonic() < deadline and launchpad.get_fw_by_id(cpu.fw_id).state != "COMPLETED":
            time.sleep(0.2)
        assert launchpad.get_fw_by_id(cpu.fw_id).state == "COMPLETED"
        assert launchpad.get_fw_by_id(gpu.fw_id).state == "READY"  # another category's work is left alone
        launch = launchpad.launches.find_one({"fw_id": cpu.fw_id})
        assert launch["fworker"]["category"] == "cpu"
        assert launch["launch_dir"].startswith(str(tmp_path / "cpu"))
        assert (Path(launch["launch_dir"]) / "out.txt").read_text() == "cpu\n"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log = (tmp_path / "cpu" / "worker.log").read_text()
    assert "import firegen.workflows.jobs.init:" in log and "import firegen.workflows.jobs.label:" in log


def test_a_launch_the_worker_lost_with_the_database_is_requeued(launchpad, tmp_path):
    from fireworks import FWorker

    from firegen.db.embedded.capabilities import adapt_launchpad
    from firegen.db.healing import LOST_KEY

    lp = adapt_launchpad(launchpad)
    fw = Firework(ScriptTask.from_str("true"), spec={"_category": "cpu"})
    lp.add_wf(fw)
    tracker = worker.LaunchTracker(lp)
    _, launch_id = lp.checkout_fw(FWorker(category="cpu"), str(tmp_path))  # as the Rocket does
    assert tracker.launch_id == launch_id
    said = []
    assert "requeued" in worker.recover_own_launch(lp, tracker.launch_id, said.append)
    doc = lp.fireworks.find_one({"fw_id": fw.fw_id})
    assert doc["state"] == "READY" and doc["spec"][LOST_KEY] == 1
    assert said == [f"firegen worker: Firework {fw.fw_id} (launch {launch_id}) was interrupted; requeued"]
    assert worker.recover_own_launch(lp, launch_id, said.append) is None  # its launch ended: nothing to do


def test_worker_waits_for_a_restarted_database_and_goes_on(tmp_path):
    import json
    import os
    import signal

    from fireworks import LaunchPad

    from firegen.db.embedded.server import EmbeddedServer, free_port

    root = tmp_path / "db"
    root.mkdir()
    (root / "server.json").write_text(json.dumps({"port": free_port()}))
    uri = EmbeddedServer(root).start()
    lp = LaunchPad(host=uri + "w", name="w", uri_mode=True, strm_lvl="ERROR")
    lp.reset("", require_password=False)
    lp_file = write_launchpad_file(tmp_path / "my_launchpad.yaml", uri + "w")
    proc = start_worker("cpu", lp_file, tmp_path / "cpu", sleep=0.2)
    log = tmp_path / "cpu" / "worker.log"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "firegen.workflows.tasks" not in log.read_text():
            time.sleep(0.2)
        os.kill(json.loads((root / "server.json").read_text())["pid"], signal.SIGKILL)
        while time.monotonic() < deadline and "unreachable since" not in log.read_text():
            time.sleep(0.2)
        assert proc.poll() is None  # waiting, not dead
        EmbeddedServer(root).start()
        fw = Firework(ScriptTask.from_str("echo back > out.txt"), spec={"_category": "cpu"})
        lp.add_wf(fw)
        while time.monotonic() < deadline and lp.get_fw_by_id(fw.fw_id).state != "COMPLETED":
            time.sleep(0.2)
        assert lp.get_fw_by_id(fw.fw_id).state == "COMPLETED"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        EmbeddedServer(root).stop()
    text = log.read_text()
    port = uri.rstrip("/").rsplit(":", 1)[1]
    assert f"database at mongodb://127.0.0.1:{port} unreachable since " in text and "answers again after" in text
    assert "Traceback" not in text


def test_the_ping_thread_outlives_a_database_outage(tmp_path, monkeypatch):
    import json
    import os
    import signal

    import fireworks.core.rocket as rocket
    import fireworks.fw_config as fw_config
    from fireworks import FWorker, LaunchPad

    from firegen.db.embedded.server import EmbeddedServer, free_port
    from firegen.db.healing import _last_ping

    for module, name in ((rocket, "PING_TIME_SECS"), (fw_config, "PING_TIME_SECS"), (rocket, "ping_launch")):
        monkeypatch.setattr(module, name, getattr(module, name))  # restored after the test
    monkeypatch.setattr(worker, "PING_RETRY_SECS", 0.2)
    worker.configure_pings(0.5)
    root = tmp_path / "db"
    root.mkdir()
    (root / "server.json").write_text(json.dumps({"port": free_port()}))
    uri = EmbeddedServer(root).start()
    lp = LaunchPad(host=uri + "p", name="p", uri_mode=True, strm_lvl="ERROR",
                   mongoclient_kwargs={"serverSelectionTimeoutMS": 1000})
    lp.reset("", require_password=False)
    lp.add_wf(Firework(ScriptTask.from_str("true")))
    _, launch_id = lp.checkout_fw(FWorker(), str(tmp_path))
    stop = rocket.start_ping_launch(lp, launch_id)  # FireWorks starts the (replaced) ping thread
    try:
        os.kill(json.loads((root / "server.json").read_text())["pid"], signal.SIGKILL)
        time.sleep(3)  # several pings fail meanwhile
        EmbeddedServer(root).start()
        restarted = time.time()
        deadline = time.monotonic() + 30
        def last_ping() -> float:
            return _last_ping(lp.launches.find_one({"launch_id": launch_id})).timestamp()

        while time.monotonic() < deadline and last_ping() < restarted:
            time.sleep(0.2)
        assert last_ping() >= restarted  # FireWorks' own thread ends at the first failed ping; this one goes on
    finally:
        stop.set()
        EmbeddedServer(root).stop()
