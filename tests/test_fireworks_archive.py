"""Finished iterations leave the collections FireWorks scans (db/fireworks_archive.py): whole COMPLETED
workflows move, with their launches, to the archive LaunchPad; an interrupted move is finished by the
next one; nothing is lost or left in both places."""

from __future__ import annotations

from fireworks import Firework, FWorker, LaunchPad, ScriptTask, Workflow
from fireworks.core.rocket_launcher import rapidfire

from firegen.db.fireworks_archive import archive_completed, archive_database, find_firework, iteration_queued
from firegen.db.launchpad_queries import campaign_fireworks, launches_of


def _iteration(lp, campaign: str, iteration: int) -> list[int]:
    fws = [Firework(ScriptTask.from_str("true"), spec={"firegen": {"campaign": campaign, "iteration": iteration,
                                                                  "kind": kind}}, name=f"{campaign}/{iteration}/{kind}")
           for kind in ("train", "select")]
    wf = Workflow(fws, links_dict={fws[0]: [fws[1]]}, name=f"{campaign}/it{iteration:03d}",
                  metadata={"firegen_campaign": campaign, "firegen_iteration": iteration})
    return sorted(lp.add_wf(wf).values())


def test_completed_iterations_move_to_the_archive_launchpad(launchpad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = _iteration(launchpad, "c", 0)
    other = _iteration(launchpad, "d", 0)  # another campaign's finished work stays
    rapidfire(launchpad, FWorker(), nlaunches=0, sleep_time=0, strm_lvl="ERROR")
    running = _iteration(launchpad, "c", 1)  # queued, not run
    moved = archive_completed(launchpad, "c")
    assert moved == done
    assert not launchpad.fireworks.count_documents({"fw_id": {"$in": done}})
    assert not launchpad.launches.count_documents({"fw_id": {"$in": done}})
    assert sorted(fw["fw_id"] for fw in campaign_fireworks(launchpad.db, "c", {"fw_id": 1})) == sorted(done + running)
    assert {la["fw_id"] for la in launches_of(launchpad.db, done, {"fw_id": 1})} == set(done)
    assert find_firework(launchpad.db, {"fw_id": done[0]})["state"] == "COMPLETED"
    assert launchpad.fireworks.count_documents({"fw_id": {"$in": other + running}}) == 4
    assert iteration_queued(launchpad, "c", 0) and iteration_queued(launchpad, "c", 1)
    assert not iteration_queued(launchpad, "c", 2)
    archive = LaunchPad(host=launchpad.host, name=archive_database(launchpad).name, uri_mode=True,
                        strm_lvl="ERROR")  # the archive is a LaunchPad: lpad reads it
    assert sorted(archive.get_fw_ids()) == done
    assert archive.get_wf_by_fw_id(done[0]).state == "COMPLETED"
    assert archive_completed(launchpad, "c") == []  # nothing left to move


def test_an_interrupted_move_is_finished_by_the_next(launchpad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = _iteration(launchpad, "c", 0)
    rapidfire(launchpad, FWorker(), nlaunches=0, sleep_time=0, strm_lvl="ERROR")
    archive = archive_database(launchpad)
    half = launchpad.fireworks.find_one({"fw_id": done[0]})
    archive.fireworks.insert_one(half)  # a worker killed after copying one Firework, before deleting
    assert archive_completed(launchpad, "c") == done
    assert sorted(d["fw_id"] for d in archive.fireworks.find({}, {"fw_id": 1})) == done  # each once
    assert not launchpad.fireworks.count_documents({})


def test_a_workflow_that_is_not_finished_or_is_kept_stays(launchpad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = _iteration(launchpad, "c", 0)
    rapidfire(launchpad, FWorker(), nlaunches=0, sleep_time=0, strm_lvl="ERROR")
    assert archive_completed(launchpad, "c", keep={done[1]}) == []  # e.g. the running select's own
    assert launchpad.fireworks.count_documents({"fw_id": {"$in": done}}) == 2
