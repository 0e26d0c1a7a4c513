"""The jobs of an asynchronous campaign (``schedule.mode: asynchronous``): start the next committee's training
once the rule of :mod:`firegen.campaign.schedule` allows it, and re-score queued labels with the newest
committee before they run.

Who calls them: every label Firework as it ends, the select Firework that queued the labels (nothing to wait
for when none was picked) and the workers' maintenance duty once a minute (the deadline). One of them
claims the start (:func:`firegen.db.label_queue.claim_training`) and queues the iteration's workflow.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from bson import ObjectId

from firegen.campaign.config import CampaignConfig
from firegen.campaign.schedule import LabelProgress, training_start
from firegen.db.label_queue import claim_training, outstanding_by_iteration, waiting_iteration
from firegen.db.repository import ResultsStore

#: Campaign statuses in which the schedule may start a training.
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class TrainingOrder:
    """Iteration ``iteration`` of ``stage`` may train now (its claim is taken): queue its workflow."""

    iteration: int
    stage: int
    explore: list[str]
    reason: str


def aware(when: datetime.datetime) -> datetime.datetime:
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def label_progress(store: ResultsStore, campaign: str, waiting: dict,
                   now: datetime.datetime | None = None) -> LabelProgress:
    """How the labels iteration ``waiting`` will train on stand (``waiting``: its document)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    outstanding = outstanding_by_iteration(store, campaign)
    total = int(waiting.get("labels_expected", 0))
    back = total - outstanding.get(waiting["index"] - 1, 0)
    queued = aware(waiting["labels_queued_at"])
    picker = store.find_snapshot(campaign, waiting["index"] - 1)  # taken as the committee that picked them began
    turnaround = (queued - aware(picker["created"])).total_seconds() if picker and picker.get("created") else None
    return LabelProgress(total=total, back=back, waited_s=(now - queued).total_seconds(),
                         outstanding=sum(1 for n in outstanding.values() if n), turnaround_s=turnaround)


def try_start_training(store: ResultsStore, cfg: CampaignConfig,
                       now: datetime.datetime | None = None) -> TrainingOrder | None:
    """The iteration to queue now, when the campaign waits for one and the rule allows it (claimed here, so
    that exactly one caller gets it); None otherwise (strict campaigns: always)."""
    if not cfg.schedule.asynchronous or (store.get_campaign(cfg.name) or {}).get("status") not in ACTIVE:
        return None
    waiting = waiting_iteration(store, cfg.name)
    if waiting is None:
        return None
    progress = label_progress(store, cfg.name, waiting, now)
    start = training_start(cfg.schedule, progress)
    if not start.ready:
        return None
    why = {"reason": start.reason, "labels_back": progress.back, "labels_expected": progress.total,
           "waited_s": round(progress.waited_s, 1),
           **({"turnaround_s": round(progress.turnaround_s, 1)} if progress.turnaround_s is not None else {})}
    if not claim_training(store, cfg.name, waiting["index"], why):
        return None
    return TrainingOrder(waiting["index"], waiting["stage"], list(waiting.get("explore") or []), start.reason)


def newest_committee(store: ResultsStore, cfg: CampaignConfig) -> int | None:
    """The newest iteration whose whole committee is trained and stored."""
    for iteration in reversed(store.trained_iterations(cfg.name)):
        if len(store.trained_committee(cfg.name, iteration)) >= cfg.committee.size:
            return iteration
    return None


def rescore_queued(store: ResultsStore, cfg: CampaignConfig, docs: list[dict], workdir: Path) -> dict[ObjectId, dict]:
    """Re-score ``docs`` (selected configurations about to be labeled) with the newest committee, when it is
    newer than the one that explored them; ``{id: what it found}`` for each re-scored one, with ``skip`` True
    where the deviation is now below ``f_lo``. Nothing for a strict campaign or with ``schedule.rescore`` off."""
    if not (cfg.schedule.asynchronous and cfg.schedule.rescore):
        return {}
    newest = newest_committee(store, cfg)
    if newest is None:
        return {}
    older = [d for d in docs if (d.get("origin") or {}).get("kind") == "explored"
             and (d["origin"].get("iteration", newest)) < newest]
    if not older:
        return {}
    from firegen.workflows.steps.rescore import max_force_deviation  # deepmd-kit: only when there is work

    models = store.trained_committee(cfg.name, newest)
    paths = [store.blobs.fetch(m["file_id"], workdir / "rescore" / f"graph.{m['member']:03d}.pb") for m in models]
    deviations = max_force_deviation(paths, [ResultsStore.atoms(d) for d in older])
    f_lo = cfg.selection.trust.f_lo
    out = {}
    for doc, max_f in zip(older, deviations):
        skip = bool(max_f < f_lo)
        out[doc["_id"]] = {"max_f": float(max_f), "committee_iteration": newest,
                           "model_ids": [m["_id"] for m in models], "skip": skip,
                           "reason": (f"re-scored by iteration {newest}'s committee: max force deviation "
                                      f"{max_f:.3f} eV/Å {'<' if skip else '>='} f_lo {f_lo:g} eV/Å")}
    return out
