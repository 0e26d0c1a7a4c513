"""The deadline half of the asynchronous schedule: the workers' maintenance duty calls
:func:`advance_schedules` once a minute, so that an iteration whose labels straggle past
``schedule.deadline_s`` starts training even when no label Firework ends to start it; and an iteration
whose start was claimed by a Firework that died before it queued the workflow is queued here.
"""

from __future__ import annotations

import datetime

from firegen.db.fireworks_archive import add_once
from firegen.db.label_queue import last_claimed_iteration
from firegen.db.repository import ResultsStore
from firegen.workflows.context import campaign_config
from firegen.workflows.jobs.schedule import ACTIVE, aware, try_start_training
from firegen.workflows.builders import iteration_workflow


def advance_schedules(lp) -> list[tuple[str, int, str]]:
    """Queue the next iteration of every asynchronous campaign on ``lp`` whose rule allows it now;
    ``[(campaign, iteration, reason)]`` for each one queued."""
    store = ResultsStore.from_launchpad(lp)
    started = []
    for brief in store.campaign_briefs():
        if brief.get("status") not in ACTIVE:
            continue
        _, cfg = campaign_config(store, brief["name"])
        if not cfg.schedule.asynchronous:
            continue
        order = try_start_training(store, cfg)
        if order is not None:
            add_once(lp, iteration_workflow(cfg, order.iteration, order.stage, order.explore))
            started.append((cfg.name, order.iteration, order.reason))
            continue
        claimed = last_claimed_iteration(store, cfg.name)
        if claimed is not None and _older_than(claimed, CLAIM_GRACE_S):
            wf = iteration_workflow(cfg, claimed["index"], claimed["stage"], claimed.get("explore") or [])
            if add_once(lp, wf):
                started.append((cfg.name, claimed["index"], "claimed by a Firework that ended before queueing it"))
    return started


#: Seconds after a claim before the duty queues the iteration itself (the claimer queues it within seconds).
CLAIM_GRACE_S = 120.0


def _older_than(doc: dict, seconds: float) -> bool:
    at = (doc.get("training_start") or {}).get("at")
    return at is not None and (datetime.datetime.now(datetime.timezone.utc) - aware(at)).total_seconds() > seconds
