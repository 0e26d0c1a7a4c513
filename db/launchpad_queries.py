"""What firegen asks of FireWorks' own collections (``fireworks``, ``launches``) beyond the LaunchPad's API."""

from __future__ import annotations

from pathlib import Path

from firegen.db.fireworks_archive import archive_of


def firework_states(lp, campaign: str) -> dict[tuple[str, str, str], int]:
    """``(category, kind, state) -> n`` over the campaign's Fireworks (``spec._category``, ``spec.firegen.kind``,
    FireWorks' state)."""
    states: dict[tuple[str, str, str], int] = {}
    fields = {"state": 1, "spec.firegen.kind": 1, "spec._category": 1}
    for fw in lp.fireworks.find({"spec.firegen.campaign": campaign}, fields):
        key = (fw["spec"].get("_category", "-"), fw["spec"]["firegen"]["kind"], fw["state"])
        states[key] = states.get(key, 0) + 1
    return states


def unfinished_fireworks(lp, campaign: str, iteration: int) -> list[tuple[int, str]]:
    """``(fw_id, kind)`` of the campaign's Fireworks of ``iteration`` neither COMPLETED nor DEFUSED."""
    query = {"spec.firegen.campaign": campaign, "spec.firegen.iteration": iteration,
             "state": {"$nin": ["COMPLETED", "DEFUSED"]}}
    return [(fw["fw_id"], fw["spec"]["firegen"]["kind"])
            for fw in lp.fireworks.find(query, {"fw_id": 1, "spec.firegen.kind": 1})]


def running_launch_fw_id(db, launch_dir: str | Path) -> int | None:
    """The Firework of the RUNNING launch in ``launch_dir`` (for Fireworks queued without
    ``_add_launchpad_and_fw_id`` and no ``FW.json``); None when there is none."""
    launch = db["launches"].find_one({"launch_dir": str(launch_dir), "state": "RUNNING"}, {"fw_id": 1})
    return launch["fw_id"] if launch else None


def campaign_fireworks(db, campaign: str, fields: dict | None = None) -> list[dict]:
    """The campaign's Fireworks by ``fw_id``, live and archived (finished iterations move to the archive
    LaunchPad, :mod:`firegen.db.fireworks_archive`). ``db``: the LaunchPad's database; ``fields``: a projection
    (default ``fw_id``, ``name``, ``state``, ``created_on``, ``updated_on`` and ``spec.firegen``: kind,
    iteration, member, stage, system, condition index, batch)."""
    fields = fields or {"_id": 0, "fw_id": 1, "name": 1, "state": 1, "created_on": 1, "updated_on": 1,
                        "spec.firegen": 1}
    if "fw_id" not in fields:
        fields = {**fields, "fw_id": 1}
    return sorted(_live_and_archived(db, "fireworks", {"spec.firegen.campaign": campaign}, fields),
                  key=lambda fw: fw["fw_id"])


def launches_of(db, fw_ids, fields: dict | None = None) -> list[dict]:
    """The launches of these Fireworks, live and archived, by ``launch_id``. ``fields``: a projection (default
    ``launch_id``, ``fw_id``, ``state``, ``host``, ``fworker`` (``name``, ``category``), ``time_start``,
    ``time_end`` (UTC) and ``runtime_secs`` (s))."""
    fields = fields or {"_id": 0, "launch_id": 1, "fw_id": 1, "state": 1, "host": 1, "fworker.name": 1,
                        "fworker.category": 1, "time_start": 1, "time_end": 1, "runtime_secs": 1}
    if "launch_id" not in fields:
        fields = {**fields, "launch_id": 1}
    return sorted(_live_and_archived(db, "launches", {"fw_id": {"$in": list(fw_ids)}}, fields),
                  key=lambda launch: launch["launch_id"])


def _live_and_archived(db, collection: str, query: dict, fields: dict) -> list[dict]:
    return list(db[collection].find(query, fields)) + list(archive_of(db)[collection].find(query, fields))


def labels_queued(lp, campaign: str) -> tuple[int, int]:
    """``(done, to do)``: configurations in the campaign's label Fireworks that completed, and in the others
    (a Firework that will not run again, DEFUSED or FIZZLED, counts as neither)."""
    done = todo = 0
    query = {"spec.firegen.campaign": campaign, "spec.firegen.kind": "label"}
    for fw in _live_and_archived(lp.db, "fireworks", query, {"state": 1, "spec._tasks.config_ids": 1}):
        n = sum(len(task.get("config_ids") or ()) for task in fw["spec"].get("_tasks") or ())
        if fw["state"] == "COMPLETED":
            done += n
        elif fw["state"] not in ("DEFUSED", "FIZZLED", "PAUSED"):
            todo += n
    return done, todo


def all_fireworks(lp) -> list[dict]:
    """Every Firework of the LaunchPad in brief, newest first: ``fw_id``, ``name``, ``state``, ``updated_on`` and
    ``spec.firegen`` (one read of the collection, which the embedded FerretDB reads whole for any query)."""
    fields = {"_id": 0, "fw_id": 1, "name": 1, "state": 1, "updated_on": 1, "spec.firegen": 1}
    return sorted(lp.fireworks.find({}, fields), key=lambda fw: -fw["fw_id"])
