"""A label Firework: label a batch of selected configurations; a failure quarantines that one."""

from __future__ import annotations

from bson import ObjectId

from firegen.campaign.config import CampaignConfig
from firegen.campaign.records import LabelOutcome
from firegen.db.repository import ResultsStore
from firegen.workflows.steps import label as labeling


def label_batch(store: ResultsStore, cfg: CampaignConfig, ids: list[ObjectId], fw_id=None,
                labeler_override: dict | None = None) -> LabelOutcome:
    """Label the configurations of ``ids`` still ``selected``; failures become ``label_failed``.

    ``labeler_override`` (``{"kind", "settings"}``, from ``firegen relabel``) replaces the campaign's labeler.
    """
    spec = labeler_override or {"kind": cfg.labeler.kind, "settings": cfg.labeler.settings}
    labeler = labeling.get_labeler(spec["kind"], spec["settings"])
    done = failed = 0
    science = 0.0
    for doc in store.configurations_by_ids(ids):
        if doc["status"] != "selected":
            continue
        result = labeling.label_many(labeler, [ResultsStore.atoms(doc)])[0]
        science += result.walltime or 0.0
        if result.ok:
            done += store.set_label(doc["_id"], {**result.to_dict(), "fw_id": fw_id})
        else:
            store.mark_label_failed(doc["_id"], result.reason, error_type=result.error_type, fw_id=fw_id,
                                    code=result.code, settings_hash=result.settings_hash,
                                    **_failure_details(result))
            failed += 1
    return LabelOutcome(labeled=done, failed=failed, seconds=science)


def _failure_details(result) -> dict:
    """What a labeler knows about a failure beyond its reason (custodian's history, the work folder)."""
    details = {k: getattr(result, k, None) for k in ("details", "history")}
    return {k: v for k, v in details.items() if v}
