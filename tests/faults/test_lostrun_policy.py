"""Lost runs heal themselves (db/healing.py), without a campaign: expiries per kind of Firework, a dead worker
process seen at once, the rerun cap that stops the campaign with the reason, and one duty holder at a time.
Launches are checked out by FireWorks itself on the session's FerretDB; only their last ping is moved back."""

from __future__ import annotations

import datetime
import subprocess
import time

import pytest
from fireworks import Firework, FWorker, ScriptTask

from fault_helpers import dead_identity
from firegen.db import healing
from firegen.db.embedded.capabilities import adapt_launchpad


def test_expiry_follows_the_kind_and_never_undercuts_missed_pings():
    assert healing.expiry_secs("gate", 60) == 600
    assert healing.expiry_secs("label", 60) == 1800  # a DFT node may stall; a dead worker still waits < 4 h
    assert healing.expiry_secs("train", 600) == 3000  # a slower ping lengthens it: 5 missed pings
    assert healing.expiry_secs("no-such-kind", 60) == healing.DEFAULT_EXPIRY_SECS
    assert healing.launch_expiry("gate", {healing.ENV_PING: 60}) == 600
    assert healing.launch_expiry("gate", {}) == 4 * 3600  # a plain rlaunch worker: FireWorks' own expiry


def test_a_process_is_gone_only_when_this_machine_can_tell():
    assert not healing.process_gone(healing.process_identity())
    child = subprocess.Popen(["sleep", "30"])
    identity = healing.process_identity(child.pid)
    assert not healing.process_gone(identity)
    child.kill()
    deadline = time.monotonic() + 10
    while not healing.process_gone(identity) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert healing.process_gone(identity)  # killed, not yet reaped by its parent (a zombie): gone
    child.wait()
    assert healing.process_gone(identity)
    boot, namespace, pid, started = identity.split("/")
    assert not healing.process_gone("/".join(("another-boot", namespace, pid, started)))  # another machine
    assert not healing.process_gone("/".join((boot, "pid:[1]", pid, started)))  # another container
    assert not healing.process_gone(None) and not healing.process_gone("written/by/someone")


def _checkout(lp, tmp_path, identity: str, ping: float | None = 60) -> int:
    env = {healing.ENV_PROCESS: identity, **({healing.ENV_PING: ping} if ping else {})}
    _, launch_id = lp.checkout_fw(FWorker(name="w", env=env), str(tmp_path))
    assert launch_id is not None
    return launch_id


def _age(lp, launch_id: int, seconds: float) -> None:
    """Move the launch's last ping ``seconds`` into the past (what a silent worker leaves)."""
    launch = lp.launches.find_one({"launch_id": launch_id})
    then = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    history = launch["state_history"]
    history[-1]["updated_on"] = then.isoformat() if isinstance(history[-1]["updated_on"], str) else then
    lp.launches.update_one({"launch_id": launch_id}, {"$set": {"state_history": history}})


def _add(lp, kind: str) -> int:
    fw = Firework(ScriptTask.from_str("true"), spec={"firegen": {"campaign": "cap", "kind": kind}})
    lp.add_wf(fw)
    return fw.fw_id


@pytest.fixture
def lp(launchpad):
    return adapt_launchpad(launchpad)


def test_silence_beyond_the_kinds_expiry_is_lost_within_it_is_not(lp, tmp_path):
    gate, label, plain = _add(lp, "gate"), _add(lp, "label"), _add(lp, "select")
    alive = healing.process_identity()  # this process: alive, so only the ping silence decides
    launches = {fw_id: _checkout(lp, tmp_path, alive, ping=None if fw_id == plain else 60)
                for fw_id in (gate, label, plain)}
    for launch_id in launches.values():
        _age(lp, launch_id, 1000)  # past gate's 600 s, within label's 1800 s and FireWorks' 4 h
    silent = {run["fw_id"]: run for run in healing.silent_runs(lp, "cap")}
    assert set(silent) == {gate, label} and 990 < silent[gate]["silence"] < 1100  # plain pings hourly: 1000 s is quiet
    healed = healing.heal_lostruns(lp)
    assert healed.rerun == [gate] and healed.given_up == [] and "did not ping it for 600 s" in healed.reasons[gate]
    assert lp.fireworks.find_one({"fw_id": gate})["state"] == "READY"
    assert lp.fireworks.find_one({"fw_id": gate})["spec"][healing.LOST_KEY] == 1
    assert lp.launches.find_one({"launch_id": launches[gate]})["state"] == "FIZZLED"
    assert {lp.fireworks.find_one({"fw_id": f})["state"] for f in (label, plain)} == {"RUNNING"}


def test_a_dead_worker_is_lost_at_once_and_reruns_are_capped(lp, tmp_path):
    lp.db.campaigns.insert_one({"name": "cap", "status": "running"})
    fw_id = _add(lp, "train")
    for rerun in range(1, healing.MAX_LOST_RERUNS + 1):
        _checkout(lp, tmp_path, dead_identity())  # pinged just now, but its process is gone
        assert healing.heal_lostruns(lp).rerun == [fw_id]
        fw = lp.fireworks.find_one({"fw_id": fw_id})
        assert fw["state"] == "READY" and fw["spec"][healing.LOST_KEY] == rerun
    _checkout(lp, tmp_path, dead_identity())
    healed = healing.heal_lostruns(lp)
    assert healed.rerun == [] and healed.given_up == [(fw_id, "its worker process is gone")]
    assert lp.fireworks.find_one({"fw_id": fw_id})["state"] == "FIZZLED"  # not a loop: it stays down
    campaign = lp.db.campaigns.find_one({"name": "cap"})
    assert campaign["status"] == "failed" and campaign["failed_fw_id"] == fw_id
    assert campaign["stop_reason"].startswith(f"train Firework {fw_id} was lost 4 times (last: its worker process is gone)")
    assert healing.heal_lostruns(lp).rerun == []  # nothing RUNNING is left to judge


def test_one_duty_holder_at_a_time(lp):
    assert healing.claim_duty(lp, "a", period=30)
    assert not healing.claim_duty(lp, "b", period=30)
    assert healing.claim_duty(lp, "a", period=30)  # the holder renews it
    lp.db[healing.DUTY_COLLECTION].update_one({"_id": "lostruns"}, {"$set": {"until": 0}})  # its lease ran out
    assert healing.claim_duty(lp, "b", period=30) and not healing.claim_duty(lp, "a", period=30)
    dead = dead_identity()
    assert healing.claim_duty(lp, dead, period=30) is False  # b holds it
    lp.db[healing.DUTY_COLLECTION].update_one({"_id": "lostruns"}, {"$set": {"holder": dead}})  # b was that process
    assert healing.claim_duty(lp, "c", period=30)  # a holder seen dead loses its lease at once


def test_progress_says_why_a_running_firework_does_not_move(lp, tmp_path):
    from firegen.db.repository import ResultsStore
    from firegen.orchestrator.progress import read_progress

    lp.db.campaigns.insert_one({"name": "cap", "status": "running", "stage": 0, "iteration": 0, "config": {}})
    train, label = _add(lp, "train"), _add(lp, "label")
    _checkout(lp, tmp_path, dead_identity())
    _age(lp, _checkout(lp, tmp_path, healing.process_identity()), 200)
    progress = read_progress(lp, ResultsStore.from_launchpad(lp), "cap")
    assert len(progress.silent) == 2 and "not pinged:" in progress.line()
    assert progress.silent[0].startswith(f"train Firework {train} (host ") and "its worker process is gone" in progress.silent[0]
    assert progress.silent[1].startswith(f"label Firework {label} (host ") and "lost after 1800 s without a ping" in progress.silent[1]


def test_lostruns_command_shows_and_applies_the_workers_rule(lp, ferretdb, db_name, tmp_path, clean_env):
    import sys
    from pathlib import Path

    fw_id = _add(lp, "explore")
    launch_id = _checkout(lp, tmp_path, dead_identity())
    firegen = [str(Path(sys.executable).parent / "firegen"), "--uri", ferretdb.uri + db_name, "lostruns"]
    shown = subprocess.run(firegen, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env)
    assert shown.returncode == 0, shown.stderr
    assert f"RUNNING explore Firework {fw_id} (launch {launch_id}, host " in shown.stdout
    assert "its worker process is gone" in shown.stdout and f"lost Fireworks: [{fw_id}]" in shown.stdout
    assert lp.fireworks.find_one({"fw_id": fw_id})["state"] == "RUNNING"  # only shown
    done = subprocess.run(firegen + ["--rerun"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=clean_env)
    assert f"lost Fireworks: [{fw_id}]; rerun: [{fw_id}]; given up (lost too often): []" in done.stdout
    assert lp.fireworks.find_one({"fw_id": fw_id})["state"] == "READY"
