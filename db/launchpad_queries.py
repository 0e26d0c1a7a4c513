"""What firegen asks of FireWorks' own collections (``fireworks``, ``launches``) beyond the LaunchPad's API."""

from __future__ import annotations

from pathlib import Path


def firework_states(lp, campaign: str) -> dict[tuple[str, str], int]:
    """``(kind, state) -> n`` over the campaign's Fireworks (``spec.firegen.kind``, FireWorks' state)."""
    states: dict[tuple[str, str], int] = {}
    for fw in lp.fireworks.find({"spec.firegen.campaign": campaign}, {"state": 1, "spec.firegen.kind": 1}):
        key = (fw["spec"]["firegen"]["kind"], fw["state"])
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
