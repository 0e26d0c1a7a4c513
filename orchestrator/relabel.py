"""Retry quarantined labels with changed settings, and resume a campaign the failure policy stopped.

    firegen relabel na3ocl-cp2k --set scf.max_scf=100 --set scf.mixing.alpha=0.2
    firegen relabel na3ocl-cp2k --iteration 3 --settings-file fixed_scf.yaml --persist

Every ``label_failed`` configuration (of one iteration, or all) goes back to ``selected`` and is queued
in label Fireworks that use the campaign's labeler with the changes applied. Each earlier failure
stays in the configuration's ``label_attempts``; a success stores the new settings and their hash
with the label. When the campaign was stopped by ``labeler.max_failed_ratio`` before training
iteration *i*, the unfinished Fireworks of iteration *i* are defused and iteration *i* is queued
again behind the new labels, its snapshot gate first (its tasks are idempotent), so the campaign continues by itself.
``--persist`` also makes the changed labeler the campaign's labeler for every later label.
"""

from __future__ import annotations

from typing import Any

import yaml
from fireworks import Workflow

from firegen.campaign.config import CampaignConfig
from firegen.campaign.errors import FiregenError
# nested labeler settings merge like deepmd inputs: mappings key by key, anything else replaced
from firegen.campaign.mappings import deep_merge as merge_settings
from firegen.db.launchpad_queries import unfinished_fireworks
from firegen.db.repository import ResultsStore
from firegen.workflows.steps.label import get_labeler
from firegen.workflows.builders import label_fireworks, labels_then_iteration, with_priority


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """``["scf.max_scf=100", "cutoff=500"]`` → ``{"scf": {"max_scf": 100}, "cutoff": 500}`` (values
    parsed as YAML, dotted keys as nested mappings)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FiregenError(f"--set {pair!r}: expected KEY=VALUE. Fix: e.g. --set max_scf=100 "
                               "or --set scf.mixing.alpha=0.2")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FiregenError(f"--set {pair!r}: {part!r} is set to a value and used as a section")
        node[parts[-1]] = yaml.safe_load(value)
    return out


_PARENTS_FIRST = {"label": 0, "gate": 1, "train": 2, "explore": 3, "select": 4}


def defuse_unfinished(lp, campaign: str, iteration: int) -> list[int]:
    """Defuse every Firework of ``campaign``'s ``iteration`` that has not completed; return their ids.

    A Firework left RUNNING by a worker that was stopped cannot be defused directly: FireWorks reruns
    it first, which also resets its children to WAITING. So parents go first (gate → train →
    explore → select), and the pass repeats until nothing of the iteration is left to run.
    """
    defused: set[int] = set()
    for _ in range(5):
        left = sorted(unfinished_fireworks(lp, campaign, iteration),
                      key=lambda fw: (_PARENTS_FIRST.get(fw[1], 9), fw[0]))
        if not left:
            break
        for fw_id, _kind in left:
            lp.defuse_fw(fw_id)
            defused.add(fw_id)
    return sorted(defused)


def relabel(lp, campaign: str, changes: dict, kind: str | None = None, iteration: int | None = None,
            persist: bool = False, status: str = "label_failed") -> dict:
    """Queue the retry of ``campaign``'s failed labels with ``changes`` to the labeler settings
    (``status="skipped"``: label the configurations that re-scoring skipped instead).

    Returns what was done: ``configurations``, ``labeler`` (kind, settings), ``resumed_iteration``
    (None when the campaign was not stopped), ``defused`` (Firework ids), ``fw_ids`` queued.
    """
    store = ResultsStore.from_launchpad(lp)
    doc = store.get_campaign(campaign)
    if doc is None:
        raise FiregenError(f"no campaign {campaign!r} in this database. Fix: check the name with `firegen status`.")
    cfg = CampaignConfig.model_validate(doc["config"])
    spec = {"kind": kind or cfg.labeler.kind, "settings": merge_settings(cfg.labeler.settings, changes)}
    try:
        get_labeler(spec["kind"], spec["settings"])
    except (ValueError, ImportError) as exc:
        raise FiregenError(f"relabel {campaign}: labeler {spec['kind']}: {exc}") from None
    ids = store.ids_with_status(campaign, status, iteration)
    if not ids:
        where = f" from iteration {iteration}" if iteration is not None else ""
        raise FiregenError(f"campaign {campaign} has no {status} configurations{where}; nothing to relabel")
    store.set_status(ids, "selected", relabel={"kind": spec["kind"], "settings": spec["settings"]})
    if persist:
        store.update_campaign(campaign, **{"config.labeler.kind": spec["kind"],
                                           "config.labeler.settings": spec["settings"]})
    str_ids = [str(i) for i in ids]
    resumed, defused = None, []
    if doc.get("status") == "stopped" and doc.get("stopped_iteration") is not None:
        resumed = int(doc["stopped_iteration"])
        it = store.get_iteration(campaign, resumed) or {}
        defused = defuse_unfinished(lp, campaign, resumed)
        wf = labels_then_iteration(cfg, str_ids, resumed - 1, resumed, int(it.get("stage", doc.get("stage") or 0)),
                                   it.get("explore"), labeler=spec)
        store.update_campaign(campaign, status="running", unset=("stop_reason", "stopped_iteration"))
    else:
        wf = with_priority(Workflow(label_fireworks(campaign, str_ids, -1 if iteration is None else iteration, spec),
                                    name=f"{campaign}/relabel", metadata={"firegen_campaign": campaign}), cfg.priority)
    old_new = lp.add_wf(wf)
    return {"configurations": len(ids), "labeler": spec, "resumed_iteration": resumed, "defused": defused,
            "fw_ids": sorted(old_new.values())}
