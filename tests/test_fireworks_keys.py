"""FireWorks' Fireworks and launches addressed by a derived ``_id`` on FerretDB (db/embedded/fireworks_keys.py):
the same FireWorks behaviour, documents from stock FireWorks still found, look-ups sent by ``_id``."""

import os

import pymongo
from fireworks import Firework, FWorker, LaunchPad, ScriptTask, Workflow
from fireworks.core.rocket_launcher import rapidfire

from firegen.db.embedded.fireworks_keys import KeyedCollection, key_launchpad, keyed_id


class _Filters(pymongo.monitoring.CommandListener):
    """(command, collection, filter) of every command the client sends."""

    def __init__(self):
        self.seen = []

    def started(self, event):
        cmd, name = event.command, event.command_name
        if name in ("find", "findAndModify"):
            self.seen.append((name, cmd.get(name), cmd.get("filter", cmd.get("query"))))
        elif name == "update":
            self.seen += [(name, cmd.get(name), u.get("q")) for u in cmd.get("updates", [])]

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def _launchpad(ferretdb, db_name, listener=None, keyed=True):
    kwargs = {"event_listeners": [listener]} if listener else {}
    lp = LaunchPad(host=ferretdb.uri + db_name, name=db_name, uri_mode=True, strm_lvl="ERROR",
                   mongoclient_kwargs=kwargs)
    return key_launchpad(lp) if keyed else lp


def _chain(n, name="chain"):
    fws = [Firework(ScriptTask.from_str("true"), name=f"{name}-{i}", fw_id=-1 - i) for i in range(n)]
    return Workflow(fws, {fws[i]: [fws[i + 1]] for i in range(n - 1)}, name=name)


def test_a_keyed_launchpad_runs_a_workflow_with_lookups_by_id(launchpad, ferretdb, db_name, tmp_path):
    listener = _Filters()
    lp = _launchpad(ferretdb, db_name, listener)
    assert isinstance(lp.fireworks, KeyedCollection) and isinstance(lp.launches, KeyedCollection)
    ids = sorted(lp.add_wf(_chain(3)).values())
    stored = {d["fw_id"]: d["_id"] for d in lp.db.fireworks.find({}, {"fw_id": 1})}
    assert stored == {i: keyed_id("fireworks", i) for i in ids}
    os.chdir(tmp_path)
    listener.seen.clear()
    rapidfire(lp, FWorker(), nlaunches=0, sleep_time=1, strm_lvl="ERROR")
    assert [lp.get_fw_by_id(i).state for i in ids] == ["COMPLETED"] * 3
    launches = list(lp.db.launches.find({}, {"launch_id": 1, "fw_id": 1, "state": 1}))
    assert len(launches) == 3 and all(d["_id"] == keyed_id("launches", d["launch_id"]) for d in launches)
    assert all(d["state"] == "COMPLETED" for d in launches)
    by_key = [(cmd, coll) for cmd, coll, f in listener.seen if f and list(f) in (["fw_id"], ["launch_id"])
              and not isinstance(next(iter(f.values())), dict)]
    by_id = [f for _, coll, f in listener.seen if coll in ("fireworks", "launches") and f and list(f) == ["_id"]]
    # {fw_id: n} / {launch_id: n} went out as {_id: ...}; only the checkout's upsert of each new launch,
    # after missing its derived _id, asks by launch_id (a launch stored by stock FireWorks would have matched)
    assert len(by_id) > 30 and by_key == [("findAndModify", "launches")] * 3
    # rerun: the launch is archived, a new one is made and found
    lp.rerun_fw(ids[0])
    rapidfire(lp, FWorker(), nlaunches=0, sleep_time=1, strm_lvl="ERROR")
    fw = lp.get_fw_by_id(ids[0])
    assert fw.state == "COMPLETED" and len(fw.launches) == 1 and len(fw.archived_launches) == 1
    assert fw.launches[0].launch_id != fw.archived_launches[0].launch_id


def test_documents_stored_by_stock_fireworks_are_still_found_and_updated(launchpad, ferretdb, db_name, tmp_path):
    id_map = launchpad.add_wf(_chain(2, "stock"))  # stock LaunchPad: random ObjectIds
    ids = [id_map[-1], id_map[-2]]
    assert all(d["_id"].binary[:2] != b"\xff\xf1" for d in launchpad.fireworks.find())
    lp = _launchpad(ferretdb, db_name)
    assert lp.get_fw_by_id(ids[0]).name == "stock-0"
    lp.defuse_fw(ids[1])
    assert launchpad.get_fw_by_id(ids[1]).state == "DEFUSED"
    lp.reignite_fw(ids[1])
    os.chdir(tmp_path)
    rapidfire(lp, FWorker(), nlaunches=0, sleep_time=1, strm_lvl="ERROR")
    assert [launchpad.get_fw_by_id(i).state for i in ids] == ["COMPLETED", "COMPLETED"]
    assert lp.fireworks.count_documents({}) == 2  # no duplicate written beside a stock document
    # an upsert of a stock launch replaces it instead of adding a second one
    stock = launchpad.launches.find_one({})
    lp.launches.find_one_and_replace({"launch_id": stock["launch_id"]}, {**stock, "host": "elsewhere"}, upsert=True)
    assert [d["host"] for d in lp.db.launches.find({"launch_id": stock["launch_id"]})] == ["elsewhere"]


def test_conditional_and_empty_filters_keep_their_meaning(ferretdb, db_name):
    listener = _Filters()
    lp = _launchpad(ferretdb, db_name, listener)
    lp.reset("", require_password=False)
    lp.launches.insert_one({"launch_id": 5, "fw_id": 1, "state": "COMPLETED"})
    assert lp.launches.find_one({"_id": keyed_id("launches", 5)})["state"] == "COMPLETED"
    # FireWorks' ping: {launch_id, state: RUNNING} must not touch a launch that is no longer running
    assert lp.launches.update_one({"launch_id": 5, "state": "RUNNING"}, {"$set": {"pinged": 1}}).matched_count == 0
    assert lp.launches.update_one({"launch_id": 5, "state": "COMPLETED"}, {"$set": {"pinged": 1}}).matched_count == 1
    assert lp.launches.find_one({"launch_id": 5})["pinged"] == 1
    assert lp.launches.update_one({"launch_id": 6, "state": "RUNNING"}, {"$set": {"x": 1}}).matched_count == 0
    listener.seen.clear()
    assert list(lp.launches.find({"launch_id": {"$in": []}})) == [] and lp.launches.find_one({"launch_id": {"$in": []}}) is None
    assert [d["launch_id"] for d in lp.launches.find({"launch_id": {"$in": [5]}})] == [5]
    assert all(list(f) == ["_id"] for _, _, f in listener.seen)
    # an upsert by a new key inserts the key too, under its derived _id
    lp.launches.find_one_and_update({"launch_id": 7}, {"$set": {"state": "RESERVED"}}, upsert=True)
    assert lp.launches.find_one({"_id": keyed_id("launches", 7)}) == {"_id": keyed_id("launches", 7), "launch_id": 7,
                                                                      "state": "RESERVED"}
    # other filters are sent unchanged
    assert lp.launches.count_documents({"state": {"$in": ["RESERVED", "COMPLETED"]}}) == 2
