"""Poison inputs: work that fails every time it is tried (issue 20, item 1). It must be tried a bounded number of
times, then the campaign stops with the reason, instead of looping (DP-GEN's "failed 3 times" ends a campaign with
no reason; a retry loop burns a cluster allocation).

* Poison configurations (the ``delayed`` labeler's ``failure_rate``: the same structures fail every time, as an
  SCF that never converges on them): each is labeled once and quarantined (``label_failed``, one attempt on
  record), none is retried on its own; with more than ``labeler.max_failed_ratio`` of them the gate stops the
  campaign with the reason before training, `firegen run` ends with it, and a second `firegen run` tries none of
  them again.
* A train Firework whose ``dp train`` is killed every time (``committee.numb_steps`` far beyond what the node's
  CPU-time limit allows: ``prlimit --cpu`` on the gpu worker, whose ``dp train`` the kernel stops with SIGXCPU):
  a kill by a signal is taken for transient and retried in place, 3 attempts in all, then the Firework fizzles and
  the campaign stops with a reason that names the attempts and the signal's exit code; nothing runs it again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from campaign_helpers import BIN, cli_env, firegen, stop_group
from fault_helpers import (NAME, ONE_WORKER_EACH, database, fault_config, label_figures, record_outcome, start_run,
                           stop_run, wait_for)

pytestmark = pytest.mark.slow


def quarantine_figures(db, campaign: str) -> dict:
    """:func:`label_figures`, with the configurations quarantined on purpose (``label_failed``: no valid label
    exists for them) counted as ``quarantined`` instead of lost."""
    figures = label_figures(db, campaign)
    quarantined = db.configurations.count_documents({"campaign": campaign, "status": "label_failed"})
    return {**figures, "labels_lost": figures["labels_lost"] - quarantined, "quarantined": quarantined}


def _config(folder: Path, **changes) -> Path:
    path = fault_config(folder)
    raw = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if name:
            raw[section][name] = value
        else:
            raw[section] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_poison_configurations_are_tried_once_and_the_gate_stops_the_campaign(tmp_path):
    config = _config(tmp_path, labeler={"kind": "delayed", "settings": {"labeler": "emt", "median_s": 0.05,
                                                                        "p99_over_p50": 1, "failure_rate": 0.8,
                                                                        "seed": 7}})
    run = start_run(tmp_path, config, timeout=900)
    try:
        out, err = run.communicate(timeout=1200)
        assert run.returncode == 1, out[-2000:] + err[-2000:]
        db = database(tmp_path)
        campaign = db.campaigns.find_one({"name": NAME})
        reason = campaign.get("stop_reason") or ""
        assert campaign["status"] == "stopped" and "labeler.max_failed_ratio" in reason, campaign
        assert f"campaign {NAME} stopped: {reason}" in err
        failed = list(db.configurations.find({"campaign": NAME, "status": "label_failed"}, {"label_attempts": 1}))
        assert len(failed) > 9  # more than half of the 18
        assert all(len(d["label_attempts"]) == 1 for d in failed)  # each tried once: quarantined, not retried
        assert "SimulatedLabelFailure" in failed[0]["label_attempts"][0]["error_type"]
        assert db.fireworks.count_documents({"spec.firegen.kind": "train", "state": {"$in": ["RUNNING", "COMPLETED"]}}) == 0
        status = firegen(tmp_path, "status", NAME)
        assert reason[:60] in status.stdout + status.stderr
        launches = db.launches.count_documents({})

        again = start_run(tmp_path, config, timeout=300)  # a person runs it again: nothing is retried
        out2, err2 = again.communicate(timeout=600)
        assert again.returncode == 1, out2[-2000:] + err2[-2000:]  # it was 0: as if the campaign had finished
        assert f"campaign {NAME} stopped: {reason}" in err2  # the reason, again
        assert db.launches.count_documents({}) == launches
        assert all(len(d["label_attempts"]) == 1 for d in
                   db.configurations.find({"campaign": NAME, "status": "label_failed"}, {"label_attempts": 1}))
        figures = quarantine_figures(db, NAME)
        assert figures["labels_duplicated"] == 0 and figures["labels_lost"] == 0
        record_outcome("poison configurations (labels that fail every time)", True, figures,
                       f"{len(failed)} of 18 quarantined after one attempt each; campaign stopped by the gate "
                       f"(firegen run exits 1, and again, trying nothing again): {reason[:120]}")
    finally:
        stop_run(tmp_path, run)


def _worker(folder: Path, category: str, limit: list[str] | None = None) -> subprocess.Popen:
    (folder / "logs").mkdir(exist_ok=True)
    with open(folder / "logs" / f"{category}.log", "ab") as log:
        return subprocess.Popen([*(limit or []), str(BIN / "firegen"), "worker", f"--{category}"], cwd=folder,
                                env=cli_env(folder), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def test_a_training_killed_every_time_is_retried_in_place_a_bounded_number_of_times(tmp_path):
    config = _config(tmp_path, **{"committee.numb_steps": 10_000_000})
    firegen(tmp_path, "db", "up", check=True)
    workers = []
    try:
        firegen(tmp_path, "submit", str(config), check=True)
        db = database(tmp_path)
        # the node's limit: 45 s of CPU per process (then SIGXCPU), no core files
        workers = [_worker(tmp_path, "cpu"), _worker(tmp_path, "gpu", ["prlimit", "--cpu=45:60", "--core=0"])]
        campaign = wait_for(lambda: (lambda d: d if d.get("status") in ("failed", "stopped", "converged",
                                                                         "max_iterations") else None)(
            db.campaigns.find_one({"name": NAME}) or {}), 2400, "the campaign to stop")
        reason = campaign.get("stop_reason") or ""
        assert campaign["status"] == "failed", campaign
        assert reason.startswith(f"train Firework {campaign['failed_fw_id']} failed after 3 attempts"), reason
        assert "exit code -24" in reason, reason  # SIGXCPU
        fw = db.fireworks.find_one({"fw_id": campaign["failed_fw_id"]})
        wait_for(lambda: db.fireworks.find_one({"fw_id": fw["fw_id"]})["state"] == "FIZZLED", 300, "the Firework to fizzle")
        fw = db.fireworks.find_one({"fw_id": fw["fw_id"]})
        assert len(fw["launches"]) == 1 and not fw.get("archived_launches")  # retried in place, not rerun
        launch = db.launches.find_one({"launch_id": fw["launches"][0]})
        logs = list(Path(launch["launch_dir"]).rglob("*.log"))
        starts = sum(line.startswith("$ ") and " train " in line
                     for p in logs for line in p.read_text(errors="replace").splitlines())
        assert starts == 3, [str(p) for p in logs]  # dp train started 3 times, then no more
        time.sleep(20)  # nothing runs it again
        assert db.fireworks.find_one({"fw_id": fw["fw_id"]})["state"] == "FIZZLED"
        assert db.launches.count_documents({"fw_id": fw["fw_id"]}) == 1
        status = firegen(tmp_path, "status", NAME)
        assert reason[:60] in status.stdout + status.stderr
        figures = label_figures(db)
        assert figures["labels_duplicated"] == 0 and figures["labels_lost"] == 0
        record_outcome("poison training (dp train killed every time)", True, figures,
                       f"3 attempts in place, then stopped: {reason[:140]}")
    finally:
        for proc in workers:
            stop_group(proc)
        firegen(tmp_path, "db", "down")


def test_a_label_batch_that_kills_its_worker_every_time_stops_the_campaign_with_the_reason(tmp_path):
    """A Firework whose input kills the worker that runs it, every time (a structure whose labeling runs the node
    out of memory: the kernel's OOM killer sends SIGKILL; here the test sends that SIGKILL to whichever cpu worker
    runs the label batch, since a real OOM would hit the whole shared machine). `firegen run` starts another worker
    (3 times), the lost-run duty reruns the batch (3 times); at the 4th loss the campaign stops with the reason and
    `firegen run` ends with it."""
    from firegen.db.healing import DUTY_ENV, ENV_PROCESS, LOST_KEY

    # 4 s a label, struck after 1.5 s: every run of the batch dies the same way, before its first label, as a
    # structure that runs the node out of memory would (whatever the batch's size)
    config = _config(tmp_path, labeler={"kind": "delayed", "settings": {"labeler": "emt", "median_s": 4.0,
                                                                        "p99_over_p50": 1}})
    run = subprocess.Popen([str(BIN / "firegen"), "run", str(config), "--timeout", "1200", *ONE_WORKER_EACH],
                           cwd=tmp_path, env={**cli_env(tmp_path), DUTY_ENV: "5"}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        db = database(tmp_path)
        killed: list[int] = []
        poison: list[int] = []  # the label batch that kills its worker: the first one struck (there are several)

        def next_victim():
            for launch in db.launches.find({"state": "RUNNING"}):
                fw = db.fireworks.find_one({"fw_id": launch["fw_id"]}, {"spec.firegen.kind": 1}) or {}
                pid = int(launch["fworker"]["env"][ENV_PROCESS].split("/")[2])
                is_label = (fw.get("spec", {}).get("firegen") or {}).get("kind") == "label"
                if is_label and pid not in killed and (not poison or launch["fw_id"] == poison[0]):
                    poison[:] = [launch["fw_id"]]
                    return launch, pid
            return None

        for _ in range(4):
            launch, pid = wait_for(next_victim, 600, "a cpu worker running the label batch")
            time.sleep(1.5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # the worker and what it runs
            killed.append(pid)
        out, err = run.communicate(timeout=600)
        assert run.returncode == 1, out[-2000:] + err[-3000:]
        assert "the cpu worker exited with code -9 (3 restarts already)" in err, err[-3000:]
        campaign = db.campaigns.find_one({"name": NAME})
        reason = campaign.get("stop_reason") or ""
        assert campaign["status"] == "failed", (campaign, err[-3000:])
        assert reason.startswith(f"label Firework {launch['fw_id']} was lost 4 times (last: its worker process is "
                                 f"gone)"), reason
        assert f"campaign {NAME} failed: {reason}" in err, err[-3000:]
        fw = db.fireworks.find_one({"fw_id": launch["fw_id"]})
        assert fw["state"] == "FIZZLED" and fw["spec"][LOST_KEY] == 3
        figures = label_figures(db)
        assert figures["labels_duplicated"] == 0
        record_outcome("poison label batch (kills its worker every time)", True, figures,
                       f"4 workers lost, 3 reruns, then stopped: {reason[:140]}")
    finally:
        stop_run(tmp_path, run)
