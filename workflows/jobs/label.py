"""A label Firework: label a batch of selected configurations; a failure quarantines that one.

Each outcome is also counted on the iteration that picked the configuration (its ``labels`` tally and
``label_failures``; the campaign's ``initial_labels`` for the initial data), so that reports read
per-iteration label figures without reading the configurations.
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Callable
from pathlib import Path

from bson import ObjectId

from firegen.campaign.config import CampaignConfig
from firegen.campaign.records import LabelFailure, LabelOutcome
from firegen.db.repository import ResultsStore
from firegen.db.label_queue import record_rescore
from firegen.workflows.jobs.schedule import rescore_queued
from firegen.workflows.steps import label as labeling

#: Characters of a failure's reason an iteration lists (the configuration keeps the whole attempt).
REASON_CHARS = 300


def label_batch(store: ResultsStore, cfg: CampaignConfig, ids: list[ObjectId], fw_id=None,
                labeler_override: dict | None = None, workdir: Path | None = None,
                after_each: Callable[[], None] | None = None) -> LabelOutcome:
    """Label the configurations of ``ids`` still ``selected``; failures become ``label_failed``.

    ``labeler_override`` (``{"kind", "settings"}``, from ``firegen relabel``) replaces the campaign's labeler.
    An asynchronous campaign first re-scores them with its newest committee (in ``workdir``) and skips those it
    now predicts within ``f_lo`` (status ``skipped``, the deviation and the committee under ``rescore``).
    ``after_each`` is called after each configuration's outcome is stored (the asynchronous schedule's check).
    """
    started = datetime.datetime.now(datetime.timezone.utc)  # a gate that counts after this has our labels
    spec = labeler_override or {"kind": cfg.labeler.kind, "settings": cfg.labeler.settings}
    labeler = labeling.get_labeler(spec["kind"], spec["settings"])
    done = failed = 0
    science = 0.0
    tallies: dict = {}  # iteration that picked them -> [labeled, failed, failures]: one update each at the end
    docs = [doc for doc in store.configurations_by_ids(ids) if doc["status"] == "selected"]
    skipped: set = set()
    if labeler_override is None and docs:
        with tempfile.TemporaryDirectory(dir=workdir) as scratch:
            rescored = rescore_queued(store, cfg, docs, Path(scratch))
        skipped = {key for key, found in rescored.items() if record_rescore(store, key, found)}
        if skipped and after_each is not None:
            after_each()
    for doc in docs:
        if doc["_id"] in skipped:
            continue
        result = labeling.label_many(labeler, [ResultsStore.atoms(doc)])[0]
        science += result.walltime or 0.0
        tally = tallies.setdefault((doc.get("origin") or {}).get("iteration"), [0, 0, []])
        retried = bool(doc.get("label_attempts"))  # a failed label queued again (firegen relabel)
        if result.ok:
            stored = store.set_label(doc["_id"], {**result.to_dict(), "fw_id": fw_id})
            done += stored
            if stored:
                tally[0] += 1
                tally[1] -= retried
        else:
            store.mark_label_failed(doc["_id"], result.reason, error_type=result.error_type, fw_id=fw_id,
                                    code=result.code, settings_hash=result.settings_hash,
                                    **_failure_details(result))
            tally[1] += not retried
            tally[2].append(LabelFailure(doc["_id"], result.reason[:REASON_CHARS], result.error_type, fw_id,
                                         datetime.datetime.now(datetime.timezone.utc)))
            failed += 1
        if after_each is not None:
            after_each()
    # counted once per batch: a worker killed before this line loses the batch's counts until the
    # iteration's snapshot gate sets the tally from the configurations themselves
    for picked_by, (labeled, failed_now, failures) in tallies.items():
        store.count_labels(cfg.name, picked_by, labeled=labeled, failed=failed_now, failures=failures, started=started)
    return LabelOutcome(labeled=done, failed=failed, seconds=science, skipped=len(skipped))


def _failure_details(result) -> dict:
    """What a labeler knows about a failure beyond its reason (custodian's history, the work folder)."""
    details = {k: getattr(result, k, None) for k in ("details", "history")}
    return {k: v for k, v in details.items() if v}
