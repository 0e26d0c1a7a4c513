"""Where an asynchronous campaign's labels stand: how many of an iteration's picks are back, which iterations
still have labels outstanding, and the one-time claim that starts the next committee's training.

The claim is a field of the next iteration's document (``training_queued``), set once for every client
(:func:`~firegen.db.embedded.capabilities.update_unless`): of the label Fireworks ending together and the
maintenance duty, exactly one queues the training.
"""

from __future__ import annotations

import datetime

from firegen.campaign.plain import plain
from firegen.db.embedded.capabilities import update_unless
from firegen.db.repository import ResultsStore

#: The field of an iteration's document that says its committee's training was queued (asynchronous mode).
TRAINING_QUEUED = "training_queued"


def outstanding_by_iteration(store: ResultsStore, campaign: str) -> dict[int, int]:
    """``{iteration that picked them: configurations still waiting for their label}`` (status ``selected``;
    the initial data under -1)."""
    out: dict[int, int] = {}
    for doc in store.configurations.find({"campaign": campaign, "status": "selected"}, {"origin.iteration": 1}):
        it = (doc.get("origin") or {}).get("iteration", -1)
        out[it] = out.get(it, 0) + 1
    return out


def mark_labels_queued(store: ResultsStore, campaign: str, next_index: int, selected: int) -> None:
    """Say on iteration ``next_index`` when the labels it will train on were queued, and how many; once (a rerun
    of the Firework that queued them, which finds fewer left to label, keeps the first count and time)."""
    if "labels_queued_at" in (store.get_iteration(campaign, next_index) or {}):
        return
    store.set_iteration_fields(campaign, next_index, {"labels_queued_at": datetime.datetime.now(datetime.timezone.utc),
                                                      "labels_expected": int(selected)})


def claim_training(store: ResultsStore, campaign: str, next_index: int, why: dict) -> bool:
    """Claim, once for all clients, the start of iteration ``next_index``'s training; ``why`` (the rule's
    reason and the label counts) is stored with it. True for the one caller that claimed it."""
    update = {"$set": {TRAINING_QUEUED: True, "training_start": plain(
        {**why, "at": datetime.datetime.now(datetime.timezone.utc)})}}
    return update_unless(store.iterations, store.iteration_key(campaign, next_index), TRAINING_QUEUED, True, update)


def waiting_iteration(store: ResultsStore, campaign: str) -> dict | None:
    """The campaign's iteration whose labels are queued but whose training is not (at most one), if any."""
    return store.iterations.find_one({"campaign": campaign, "labels_queued_at": {"$exists": True},
                                      TRAINING_QUEUED: {"$ne": True}})


def record_rescore(store: ResultsStore, config_id, found: dict) -> bool:
    """Store what re-scoring found on a configuration (``rescore``); when ``found["skip"]``, also set its
    status to ``skipped``, unless it was labeled meanwhile (a label always wins). True when it was skipped."""
    found = plain(found)
    if not found.get("skip"):
        store.configurations.update_one({"_id": config_id}, {"$set": {"rescore": found}})
        return False
    return update_unless(store.configurations, config_id, "status", "labeled",
                         {"$set": {"status": "skipped", "rescore": found}})


def last_claimed_iteration(store: ResultsStore, campaign: str) -> dict | None:
    """The campaign's newest iteration whose training was claimed (its document)."""
    return store.iterations.find_one({"campaign": campaign, TRAINING_QUEUED: True}, sort=[("index", -1)])
