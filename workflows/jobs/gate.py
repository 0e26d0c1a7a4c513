"""The snapshot gate: the one cpu Firework between an iteration's label Fireworks and its N train Fireworks.

It takes iteration *i*'s dataset snapshot and applies the label-failure policy
(``labeler.max_failed_ratio``) to the labels that snapshot would train on (those picked by iteration
*i − 1*; the initial data for iteration 0). Then either the snapshot passes to the train Fireworks
(``SnapshotGateTask`` puts its id in their spec under
:data:`firegen.workflows.tasks.SNAPSHOT_SPEC_KEY`), or the campaign
stops with the reason (status ``stopped``, ``stop_reason``, ``stopped_iteration``) and the gate defuses
its children. ``firegen relabel`` retries the failed labels and queues iteration *i* again behind
them, gate first. No snapshot is stored for a stopped iteration, so the gate that runs after the
retry takes it with the new labels.
"""

from __future__ import annotations

from firegen.campaign.config import CampaignConfig
from firegen.campaign.errors import FatalError
from firegen.campaign.records import GateOutcome, LabelTally
from firegen.db.repository import ResultsStore

class LabelFailuresExceeded(FatalError):
    """Too many of one iteration's labels failed: the campaign stops (``firegen relabel`` resumes it)."""


def label_failures(store: ResultsStore, campaign: str, label_iteration: int, rows=None) -> tuple[int, int]:
    """(failed, attempted) labels among the configurations picked by iteration ``label_iteration``
    (``-1``: the initial data; imported labels are not attempts). ``rows``: the campaign's labeled and
    label_failed configurations (:meth:`ResultsStore.label_rows`) when the caller has read them."""
    if rows is None:
        rows = store.label_rows(campaign)
    counts = {"labeled": 0, "label_failed": 0}
    for r in rows:
        origin = r.get("origin") or {}
        if origin.get("iteration") == label_iteration and origin.get("kind") != "imported":
            counts[r["status"]] += 1
    return counts["label_failed"], counts["label_failed"] + counts["labeled"]


def failure_policy_reason(cfg: CampaignConfig, iteration: int, failed: int, attempted: int) -> str | None:
    """Why ``iteration`` must not be trained (more than ``labeler.max_failed_ratio`` of the labels it
    would train on failed), as one sentence with the fix; None when it may."""
    limit = cfg.labeler.max_failed_ratio
    if limit is None or not attempted or failed / attempted <= limit:
        return None
    what = "initial labels" if iteration == 0 else f"labels picked by iteration {iteration - 1}"
    return (f"{failed} of {attempted} {what} failed ({failed / attempted:.0%} > labeler.max_failed_ratio "
            f"{limit:.0%}); see `firegen provenance failures {cfg.name}`, then retry them with changed "
            f"settings: `firegen relabel {cfg.name} --set KEY=VALUE` (it resumes iteration {iteration})")


def pass_gate(store: ResultsStore, cfg: CampaignConfig, iteration: int) -> GateOutcome:
    """Take ``iteration``'s snapshot when the failure policy allows it, else stop the campaign.

    Idempotent: a snapshot taken before (a rerun) passes as it is.
    """
    existing = store.find_snapshot(cfg.name, iteration)
    if existing:
        return GateOutcome(iteration, str(existing["_id"]), existing["size"])
    rows = store.label_rows(cfg.name)
    failed, attempted = label_failures(store, cfg.name, iteration - 1, rows)
    # the tally the label Fireworks kept, set to the counts just read (it misses a count when a worker
    # died between storing a label and counting it)
    store.set_label_tally(cfg.name, iteration - 1, LabelTally(labeled=attempted - failed, failed=failed))
    reason = failure_policy_reason(cfg, iteration, failed, attempted)
    if reason is not None:
        store.update_campaign(cfg.name, status="stopped", stop_reason=reason, stopped_iteration=iteration)
        return GateOutcome(iteration, None, 0, failed, attempted, reason)
    snapshot = store.snapshot_dataset(cfg.name, iteration, rows=rows)
    return GateOutcome(iteration, str(snapshot["_id"]), snapshot["size"], failed, attempted)


def snapshot_to_train(store: ResultsStore, cfg: CampaignConfig, iteration: int, snapshot_id: str | None) -> dict:
    """The snapshot a train Firework trains on: the one its gate passed, or (for a train Firework queued
    before the gate existed, with no snapshot in its spec) the gate's decision taken here.

    Raises:
        LabelFailuresExceeded: the failure policy stopped the campaign (legacy path only).
    """
    if snapshot_id is not None:
        return store.get_snapshot(snapshot_id)
    outcome = pass_gate(store, cfg, iteration)
    if not outcome.passed:
        raise LabelFailuresExceeded(f"campaign {cfg.name} stopped: {outcome.stop_reason}")
    return store.get_snapshot(outcome.snapshot_id)
