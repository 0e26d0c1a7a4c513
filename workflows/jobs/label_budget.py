"""``selection.budget``: the capped pick trimmed to the CPU-hours its labels are estimated to cost, from a cost model
fitted on the campaign's own labels (:mod:`firegen.workflows.steps.label_cost`)."""

from __future__ import annotations

from firegen.campaign.config import CampaignConfig
from firegen.db.repository import ResultsStore
from firegen.workflows.steps.label_cost import affordable, fit_label_cost


def within_budget(store: ResultsStore, cfg: CampaignConfig, priority: list) -> tuple[list, dict | None]:
    """The longest prefix of ``priority`` (picked ids, most wanted first) whose labels fit
    ``selection.budget.cpu_hours``, and what was decided (stored on the iteration as ``budget``). Without a budget,
    or before any label has been timed, ``priority`` whole (and why)."""
    budget = cfg.selection.budget
    if budget.cpu_hours is None or not priority:
        return priority, None
    model = fit_label_cost(*store.label_timings(cfg.name), budget.exponent)
    if model is None:
        return priority, {"cpu_hours": budget.cpu_hours, "skipped": "no timed label yet: only max_per_iteration"}
    natoms = {d["_id"]: d["natoms"] for d in store.configurations_by_ids(priority, {"natoms": 1})}
    costs = model.cpu_hours([natoms[k] for k in priority], budget.cores_per_label)
    n = affordable(costs, budget.cpu_hours)
    return priority[:n], {"cpu_hours": budget.cpu_hours, "estimated_cpu_hours": float(costs[:n].sum()),
                          "picked": n, "over_budget": len(priority) - n, "cost_model": model.as_dict()}
