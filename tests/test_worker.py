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
