"""FireWorks itself against the real FerretDB server: the LaunchPad cycle and a real rlaunch."""

import subprocess
import sys
from pathlib import Path

from fireworks import Firework, ScriptTask, Workflow

BIN = Path(sys.executable).parent


def test_launchpad_reset_add_get_cycle(launchpad):
    wf = Workflow([Firework(ScriptTask.from_str("true"), name="a", fw_id=-1),
                   Firework(ScriptTask.from_str("true"), name="b", fw_id=-2, parents=[])],
                  links_dict={-1: [-2]}, name="cycle", metadata={"firegen_campaign": "x"})
    id_map = launchpad.add_wf(wf)
    assert len(id_map) == 2
    assert launchpad.get_fw_by_id(id_map[-1]).name == "a"
    assert launchpad.get_fw_by_id(id_map[-1]).state == "READY"
    assert launchpad.get_fw_by_id(id_map[-2]).state == "WAITING"
    (wf_id,) = launchpad.get_wf_ids({"metadata.firegen_campaign": "x"})
    assert set(launchpad.get_wf_by_fw_id(wf_id).id_fw) == set(id_map.values())
    launchpad.reset("", require_password=False)
    assert launchpad.get_fw_ids() == []


def test_rlaunch_singleshot_runs_a_firework_end_to_end(launchpad, tmp_path):
    lp_file = tmp_path / "my_launchpad.yaml"
    launchpad.to_file(str(lp_file))
    fw = Firework(ScriptTask.from_str("echo firegen-was-here > proof.txt"), name="trivial")
    fw_id = list(launchpad.add_wf(fw).values())[0]
    run = subprocess.run([str(BIN / "rlaunch"), "-l", str(lp_file), "singleshot"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    fw = launchpad.get_fw_by_id(fw_id)
    assert fw.state == "COMPLETED"
    launch_dir = Path(fw.launches[0].launch_dir)
    assert (launch_dir / "proof.txt").read_text().strip() == "firegen-was-here"


def test_lpad_cli_reads_the_same_server(launchpad, tmp_path):
    lp_file = tmp_path / "my_launchpad.yaml"
    launchpad.to_file(str(lp_file))
    launchpad.add_wf(Firework(ScriptTask.from_str("true"), name="listed"))
    out = subprocess.run([str(BIN / "lpad"), "-l", str(lp_file), "get_fws", "-d", "count"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1"


def test_rlaunch_never_leaves_a_finished_firework_running(launchpad, tmp_path):
    """Regression: on FerretDB 1.x a Rocket's last ping raced complete_launch and won ~1 in 6 runs."""
    lp_file = tmp_path / "my_launchpad.yaml"
    launchpad.to_file(str(lp_file))
    states = []
    for _ in range(8):
        fw_id = list(launchpad.add_wf(Firework(ScriptTask.from_str("true"))).values())[0]
        run = subprocess.run([str(BIN / "rlaunch"), "-l", str(lp_file), "singleshot"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        states.append(launchpad.get_fw_by_id(fw_id).state)
    assert states == ["COMPLETED"] * 8


def test_conditional_update_has_exactly_one_winner(mongo_db):
    """FireWorks' workflow lock pattern: concurrent find_one_and_update on one document."""
    import threading

    from firegen.db.embedded.write_lock import GUARDED_METHODS

    from pymongo.collection import Collection

    assert all(getattr(getattr(Collection, m), "__firegen_guard__", False) for m in GUARDED_METHODS)
    coll = mongo_db["locks"]
    for round_ in range(10):
        coll.insert_one({"_id": round_, "claims": 0})
        winners = []

        def claim(worker, round_=round_):
            got = coll.find_one_and_update({"_id": round_, "locked": {"$exists": False}},
                                           {"$set": {"locked": worker}, "$inc": {"claims": 1}})
            if got is not None:
                winners.append(worker)

        threads = [threading.Thread(target=claim, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        doc = coll.find_one({"_id": round_})
        assert len(winners) == 1 and doc["claims"] == 1 and doc["locked"] == winners[0]
