"""The select Firework: count an iteration's frames, pick candidates to label, decide what comes next."""

from __future__ import annotations

from bson import ObjectId

from firegen.campaign.config import CampaignConfig
from firegen.campaign.convergence import Decision, decide, stage_task_keys
from firegen.campaign.observable_rule import observable_status
from firegen.campaign.seeds import selection_seed
from firegen.db.repository import ResultsStore
from firegen.workflows.jobs.batch import choose
from firegen.workflows.jobs.calibration import check_committee
from firegen.workflows.steps import select as selection


def task_histories(stage_cfg, iterations: list[dict]) -> dict[str, list[dict]]:
    """Per exploration task of the stage, the ratios of each time it was explored (``iterations`` in order)."""
    out: dict[str, list[dict]] = {key: [] for key in stage_task_keys(stage_cfg)}
    for it in iterations:
        for key, counts in (it.get("explorations") or {}).items():
            if key in out:
                r = selection.ratios(counts)
                out[key].append({"accurate_ratio": r["accurate"], "candidate_ratio": r["candidate"]})
    return out


def observable_statuses(cfg: CampaignConfig, stage_cfg, it: dict, previous: dict | None) -> list[dict]:
    """The stage's observables after iteration ``it`` (each member's measurement against the committee's and
    the previous iteration's of the stage: :func:`~firegen.campaign.observable_rule.observable_status`)."""
    now, before = it.get("observables") or {}, (previous or {}).get("observables") or {}
    return [observable_status(obs, key, now.get(key), before.get(key), cfg.committee.size)
            for key, _, obs in stage_cfg.observables()]


def select_and_decide(store: ResultsStore, cfg: CampaignConfig, iteration: int,
                      stage: int) -> tuple[Decision, list[ObjectId]]:
    """Totals, the capped pick, and the convergence decision of one iteration (stored on it)."""
    it = store.get_iteration(cfg.name, iteration)
    if it.get("decision"):  # rerun: the first run decided
        return Decision(**it["decision"]), store.ids_with_status(cfg.name, "selected", iteration)
    totals = {k: sum(e[k] for e in it.get("explorations", {}).values())
              for k in ("accurate", "candidate", "failed", "total")}
    ratio = selection.ratios(totals)
    earlier = store.iterations_of(cfg.name, stage=stage, before=iteration, decided=True)
    history = [{"accurate_ratio": h["ratios"]["accurate"], "candidate_ratio": h["ratios"]["candidate"]}
               for h in earlier]
    history.append({"accurate_ratio": ratio["accurate"], "candidate_ratio": ratio["candidate"]})
    tasks = task_histories(cfg.stages[stage], earlier + [it])
    campaign = store.get_campaign(cfg.name)
    observed = observable_statuses(cfg, cfg.stages[stage], it, earlier[-1] if earlier else None)
    decision = decide(stage, cfg.stages, history, campaign.get("stage_status", [])[:stage], tasks, observed)
    keys = store.candidate_ids(cfg.name, iteration, sorted(it.get("explorations", {})))
    sel_cfg = cfg.selection
    cap = selection.labeling_cap(sel_cfg.max_per_iteration, ratio["accurate"],
                                 sel_cfg.skip_when_accurate_above, sel_cfg.soft_accurate_ratio)
    if decision.action == "done":
        cap = 0
    batch = choose(store, cfg, iteration, keys, cap, selection_seed(cfg.name, iteration, sel_cfg.seed))
    picked = batch.picked
    if len(picked) < sel_cfg.min_per_iteration:
        picked = []
    picked_set = set(picked)
    store.set_status(picked, "selected")
    for key, (of, distance) in batch.duplicates.items():
        store.set_status([key], "duplicate", duplicate_of=of, duplicate_distance=distance)
    over_budget = set(batch.over_budget) - picked_set
    store.set_status(sorted(over_budget), "rejected", rejected_reason="over the labeling budget (selection.budget)")
    store.set_status([k for k in keys if k not in picked_set and k not in batch.duplicates and k not in over_budget],
                     "rejected",
                     rejected_reason="campaign ended" if decision.action == "done" else "over the per-iteration cap")
    try:  # a diagnostic: it never holds the campaign up
        calibration = check_committee(store, cfg, iteration)
    except Exception as exc:  # noqa: BLE001  (deepmd-kit, TensorFlow and GridFS raise their own kinds)
        calibration = {"skipped": f"the check failed: {type(exc).__name__}: {exc}"}
    statuses = campaign.get("stage_status", [])[:stage]
    if decision.stage_status != "running":
        statuses = statuses + [decision.stage_status]
    store.update_iteration(cfg.name, iteration, stage, counts=totals, ratios=ratio, selected=len(picked),
                           duplicates=len(batch.duplicates), duplicate_tolerance=batch.tolerance,
                           decision=decision.as_dict(), status="done",
                           **({"calibration": calibration} if calibration is not None else {}),
                           **({"budget": batch.budget} if batch.budget is not None else {}))
    store.update_campaign(cfg.name, status=decision.campaign_status, stage_status=statuses)
    return decision, picked
