"""A Firework whose worker was killed is requeued without ever reading FIZZLED: `firegen run` ends with exit 1 on
a FIZZLED Firework of its campaign (a fault it cannot heal), so a requeue that passed through FIZZLED could stop
an unattended campaign at the very moment it heals itself. No campaign: a launch checked out by FireWorks for a
process that is gone, the heal of db/healing.py, and what `firegen run` reads at each write of the heal."""

from __future__ import annotations


import pytest
from fireworks import Firework, FWorker, ScriptTask

from fault_helpers import dead_identity
from firegen.db import healing
from firegen.db.embedded.capabilities import adapt_launchpad
from firegen.db.launchpad_queries import firework_states


@pytest.fixture
def lp(launchpad):
    return adapt_launchpad(launchpad)


def test_a_killed_workers_firework_is_requeued_without_reading_fizzled(lp, tmp_path):
    fw = Firework(ScriptTask.from_str("true"), spec={"firegen": {"campaign": "kill", "kind": "label"}})
    child = Firework(ScriptTask.from_str("true"), spec={"firegen": {"campaign": "kill", "kind": "gate"}}, parents=[fw])
    from fireworks import Workflow

    lp.add_wf(Workflow([fw, child]))
    env = {healing.ENV_PROCESS: dead_identity(), healing.ENV_PING: 60}
    _, launch_id = lp.checkout_fw(FWorker(name="killed", env=env), str(tmp_path))
    assert launch_id is not None

    seen = []  # the campaign's Firework states after each write the heal makes (what `firegen run` may read)
    for name in ("update_one", "find_one_and_update", "find_one_and_replace", "replace_one", "update_many"):
        original = getattr(lp.fireworks, name)

        def spy(*args, _original=original, **kwargs):
            out = _original(*args, **kwargs)
            seen.append(firework_states(lp, "kill"))
            return out

        setattr(lp.fireworks, name, spy)
    healed = healing.heal_lostruns(lp)
    for name in ("update_one", "find_one_and_update", "find_one_and_replace", "replace_one", "update_many"):
        delattr(lp.fireworks, name)

    assert healed.rerun == [fw.fw_id]
    assert seen, "the heal wrote no Firework"
    assert all(state != "FIZZLED" for states in seen for (_, _, state) in states), seen
    assert lp.fireworks.find_one({"fw_id": fw.fw_id})["state"] == "READY"
    assert lp.fireworks.find_one({"fw_id": child.fw_id})["state"] == "WAITING"
    launch = lp.launches.find_one({"launch_id": launch_id})
    assert launch["state"] == "FIZZLED" and [h["state"] for h in launch["state_history"]][-2:] == ["RUNNING", "FIZZLED"]
    stored = lp.fireworks.find_one({"fw_id": fw.fw_id})
    assert stored["spec"][healing.LOST_KEY] == 1 and launch_id in stored["archived_launches"]
    assert not stored["launches"]


def test_a_workflow_lock_left_by_a_killed_worker_does_not_stop_the_heal(lp, tmp_path, monkeypatch):
    """A worker SIGKILLed in the milliseconds of a refresh leaves FireWorks' lock flag on its workflow; FireWorks
    alone waits 300 s, then raises LockedWorkflowError on every rerun and refresh of that workflow, for ever
    (seen with the select case of test_kill_workers). firegen's workers take the lock over after WFLOCK_SECS."""
    from fireworks.core import launchpad as fw_launchpad
    from fireworks.core.launchpad import LockedWorkflowError

    init = fw_launchpad.WFLock.__init__
    monkeypatch.setattr(init, "__defaults__", init.__defaults__)  # restored after the test
    fw = Firework(ScriptTask.from_str("true"), spec={"firegen": {"campaign": "kill", "kind": "select"}})
    lp.add_wf(fw)
    env = {healing.ENV_PROCESS: dead_identity(), healing.ENV_PING: 60}
    _, launch_id = lp.checkout_fw(FWorker(name="killed", env=env), str(tmp_path))
    lp.workflows.update_one({"nodes": fw.fw_id}, {"$set": {"locked": True}})  # what the killed holder left

    monkeypatch.setattr(init, "__defaults__", (0.5, False))  # FireWorks' behaviour, with a short wait
    with pytest.raises(LockedWorkflowError):
        healing.heal_lostruns(lp)
    assert lp.launches.find_one({"launch_id": launch_id})["state"] == "RUNNING"  # untouched: judged again later
    assert lp.fireworks.find_one({"fw_id": fw.fw_id})["state"] == "RUNNING"

    healing.configure_workflow_locks(expire_secs=0.5)
    assert healing.heal_lostruns(lp).rerun == [fw.fw_id]
    assert lp.fireworks.find_one({"fw_id": fw.fw_id})["state"] == "READY"
    assert lp.launches.find_one({"launch_id": launch_id})["state"] == "FIZZLED"
    assert "locked" not in lp.workflows.find_one({"nodes": fw.fw_id})
    assert init.__defaults__ == (0.5, True)


def test_a_worker_killed_inside_its_checkout_leaves_nothing_stuck(lp, tmp_path):
    """SIGKILL between the two writes of FireWorks' checkout_fw (seen with the select case of test_kill_workers): the
    Firework is RESERVED and its launch RUNNING, but the Firework does not list the launch. FireWorks' lost-run rule
    skips a Firework that is not RUNNING and no worker checks out a RESERVED one: the campaign waited for ever."""
    from fireworks.core.launchpad import Launch

    fw = Firework(ScriptTask.from_str("true"), spec={"firegen": {"campaign": "kill", "kind": "select"}})
    lp.add_wf(fw)
    reserved = lp._get_a_fw_to_run({}, checkout=True)  # checkout_fw's first write: the Firework is RESERVED
    assert reserved.fw_id == fw.fw_id
    launch_id = lp.get_new_launch_id()  # its second: the launch, RUNNING, for a worker that is then killed
    env = {healing.ENV_PROCESS: dead_identity(), healing.ENV_PING: 60}
    launch = Launch("RUNNING", str(tmp_path), FWorker(name="killed", env=env), launch_id=launch_id, fw_id=fw.fw_id)
    lp.launches.insert_one(launch.to_db_dict())
    assert lp.fireworks.find_one({"fw_id": fw.fw_id})["state"] == "RESERVED"

    healed = healing.heal_lostruns(lp)
    assert healed.rerun == [fw.fw_id] and healed.reasons[fw.fw_id] == "its worker process is gone"
    stored = lp.fireworks.find_one({"fw_id": fw.fw_id})
    assert stored["state"] == "READY" and stored["spec"][healing.LOST_KEY] == 1
    assert lp.launches.find_one({"launch_id": launch_id})["state"] == "FIZZLED"
    assert healing.heal_lostruns(lp).rerun == []  # nothing left RUNNING to judge
