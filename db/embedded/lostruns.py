"""``detect_lostruns`` that also works on FerretDB 1.x.

FireWorks' :meth:`LaunchPad.detect_lostruns` queries ``launches`` with
``state_history: {$elemMatch: {state: ..., updated_on: {$lte: ...}}}`` and finds inconsistent
Fireworks with a ``$lookup`` stage; FerretDB 1.24 rejects the first ("unknown operator: state") and
lacks the second. This module calls FireWorks' method and, when the server refuses the query,
runs the same logic with simple queries and the filtering done here, then marks and reruns through
FireWorks' own ``mark_fizzled`` / ``rerun_fw`` / ``_refresh_wf``.
"""

from __future__ import annotations

import datetime

import pymongo
from fireworks import Firework


def detect_lostruns(lp, expiration_secs: float = 4 * 3600, fizzle: bool = False, rerun: bool = False,
                    refresh: bool = False, query: dict | None = None,
                    launch_query: dict | None = None) -> tuple[list[int], list[int], list[int]]:
    """Lost launch ids, lost Firework ids and inconsistent Firework ids, as FireWorks returns them; ``query`` and
    ``launch_query`` restrict the search to those Fireworks and launches, as in FireWorks."""
    try:
        return lp.detect_lostruns(expiration_secs=expiration_secs, fizzle=fizzle, rerun=rerun, refresh=refresh,
                                  query=dict(query) if query else None,
                                  launch_query=dict(launch_query) if launch_query else None)
    except pymongo.errors.OperationFailure as exc:
        if exc.code not in (2, 238, 40324):  # BadValue (unknown operator) / NotImplemented / unknown stage
            raise
    return _portable(lp, expiration_secs, fizzle, rerun, refresh, query, launch_query)


def _portable(lp, expiration_secs, fizzle, rerun, refresh, query=None, launch_query=None):
    cutoff = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=expiration_secs)).isoformat()
    lost_launch_ids, potential = [], set()
    selected = {**(launch_query or {}), "state": "RUNNING"}
    if query:
        selected["fw_id"] = {"$in": [fw["fw_id"] for fw in lp.fireworks.find(query, {"fw_id": 1})]}
    for launch in lp.launches.find(selected, {"launch_id": 1, "fw_id": 1, "state_history": 1}):
        if any(h.get("state") == "RUNNING" and str(h.get("updated_on", "")) <= cutoff
               for h in launch.get("state_history", [])):
            lost_launch_ids.append(launch["launch_id"])
            potential.add(launch["fw_id"])
    lost_fw_ids = []
    for fw in lp.fireworks.find({"fw_id": {"$in": sorted(potential)}}, {"fw_id": 1, "state": 1, "launches": 1}):
        if fw.get("state") != "RUNNING":
            continue
        others = [lid for lid in fw.get("launches", []) if lid not in lost_launch_ids]
        states = {d["launch_id"]: d["state"] for d in lp.launches.find({"launch_id": {"$in": others}},
                                                                         {"launch_id": 1, "state": 1})}
        if all(Firework.STATE_RANKS.get(states.get(lid, "UNKNOWN"), 0) <= Firework.STATE_RANKS["FIZZLED"]
               for lid in others):
            lost_fw_ids.append(fw["fw_id"])
    if fizzle or rerun:
        for lid in lost_launch_ids:
            lp.mark_fizzled(lid)
            if lp.offline_runs.count_documents({"launch_id": lid, "deprecated": False}) > 0:
                lp.forget_offline(lid, launch_mode=True)
            if rerun:
                fw_id = lp.launches.find_one({"launch_id": lid}, {"fw_id": 1})["fw_id"]
                if fw_id in lost_fw_ids:
                    lp.rerun_fw(fw_id)
    ended = {d["fw_id"] for d in lp.launches.find({"state": {"$in": ["FIZZLED", "COMPLETED"]}}, {"fw_id": 1})}
    if query:
        ended &= {fw["fw_id"] for fw in lp.fireworks.find(query, {"fw_id": 1})}
    inconsistent = [fw["fw_id"] for fw in lp.fireworks.find({"fw_id": {"$in": sorted(ended)}, "state": "RUNNING"},
                                                            {"fw_id": 1})]
    if refresh:
        for fw_id in inconsistent:
            lp._refresh_wf(fw_id)
    return lost_launch_ids, lost_fw_ids, inconsistent
