"""`selection.budget`: a per-iteration labeling budget in estimated CPU-hours. A label's wall time is fitted on the
campaign's own labels against the atom count (t = a * natoms^p), times the cores it occupies; the policy's picks are
kept in its order while they fit, the rest are rejected as over the budget."""

import numpy as np
import pytest
import yaml

from campaign_helpers import rattled_cu, running_campaign, small_cu_config
from firegen.campaign.config import ConfigError, load_config
from firegen.db.repository import ResultsStore
from firegen.orchestrator.report import campaign_summary
from firegen.orchestrator.view import sections, tables
from firegen.orchestrator.view.links import ReportLinks
from firegen.orchestrator.view.source import CampaignSource
from firegen.workflows.jobs.batch import choose
from firegen.workflows.jobs.explore import keep_candidates
from firegen.workflows.jobs.init import open_iteration
from firegen.workflows.jobs.label import label_batch
from firegen.workflows.jobs.select import select_and_decide
from firegen.workflows.steps.label_cost import EXPONENT_BOUNDS, affordable, fit_label_cost


def test_the_power_is_fitted_once_labels_span_two_sizes_and_noise_does_not_move_it_far():
    rng = np.random.default_rng(1)
    natoms = np.repeat([8, 16, 32, 64], 5)
    seconds = 2e-3 * natoms ** 2.5 * np.exp(rng.normal(0, 0.1, natoms.size))  # 10 % timing noise
    cost = fit_label_cost(natoms, seconds, exponent=3)
    assert cost.fitted and cost.labels == 20 and cost.p == pytest.approx(2.5, abs=0.1)
    assert cost.seconds([128])[0] == pytest.approx(2e-3 * 128 ** 2.5, rel=0.3)
    assert cost.cpu_hours([100], cores=36)[0] == pytest.approx(cost.seconds([100])[0] * 36 / 3600)


def test_one_size_takes_the_configured_power_and_no_timing_no_model():
    cost = fit_label_cost([32, 32, 32, 32], [30.0, 31.0, 29.0, 0.0], exponent=3)  # a zero time is not a timing
    assert (cost.fitted, cost.p, cost.labels) == (False, 3.0, 3)
    assert cost.a == pytest.approx(30.0 / 32 ** 3)
    assert fit_label_cost([32], [0.0], exponent=3) is None
    wild = fit_label_cost([10, 20], [1.0, 1e6], exponent=3)  # two noisy points must not extrapolate wildly
    assert wild.p == EXPONENT_BOUNDS[1]


def test_picks_are_taken_in_order_while_they_fit_and_at_least_one():
    assert affordable([1.0, 1.0, 1.0, 1.0], 2.5) == 2
    assert affordable([1.0, 1.0, 1.0, 1.0], 4.0) == 4
    assert affordable([3.0, 1.0], 2.0) == 1  # a budget below the first label's cost still labels it
    assert affordable([], 2.0) == 0


def test_a_negative_budget_is_refused_naming_the_field(tmp_path):
    path = small_cu_config(tmp_path, "cu-budget-bad")
    raw = yaml.safe_load(path.read_text())
    raw["selection"]["budget"] = {"cpu_hours": -1}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError, match=r"selection\.budget\.cpu_hours.*Fix: use a positive number of hours"):
        load_config(path)


def test_the_budget_cuts_the_pick_by_the_campaigns_own_label_times(launchpad, tmp_path):
    path = small_cu_config(tmp_path, "cu-budget")
    raw = yaml.safe_load(path.read_text())
    raw["selection"].update(policy="random", dedup={"displacement": None},
                            budget={"cpu_hours": 1.0, "cores_per_label": 36})
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(path)
    store = ResultsStore.from_launchpad(launchpad)
    small, large = rattled_cu(4, 0.05), [a.repeat((2, 1, 1)) for a in rattled_cu(4, 0.06)]  # 32 and 64 atoms
    ids = running_campaign(store, cfg, small + large)
    assert label_batch(store, cfg, ids).failed == 0
    for key, atoms in zip(ids, small + large):  # timings as a DFT code's would be: 10 s x (natoms / 32)^3
        store.configurations.update_one({"_id": key}, {"$set": {"label.walltime": 10.0 * (len(atoms) / 32) ** 3}})
    # candidates: 20 cells of 64 atoms, each estimated at 80 s x 36 cores = 0.8 CPU-hours
    candidates = [store.add_atoms(cfg.name, a.repeat((2, 1, 1)), {"kind": "explored", "iteration": 0, "frame": k},
                                  status="candidate", model_deviation={"max_f": 0.2})[0]
                  for k, a in enumerate(rattled_cu(30, 0.07)[10:])]
    batch = choose(store, cfg, 0, candidates, cap=5, seed=3)
    assert len(batch.picked) == 1 and len(batch.over_budget) == 4  # 0.8 fits 1.0 CPU-hours, 1.6 does not
    assert batch.budget["cost_model"]["fitted"] and batch.budget["cost_model"]["p"] == pytest.approx(3, abs=1e-6)
    assert batch.budget["estimated_cpu_hours"] == pytest.approx(0.8, rel=1e-6)
    assert set(batch.picked) | set(batch.over_budget) == set(choose(store, cfg.model_copy(update={
        "selection": cfg.selection.model_copy(update={"budget": cfg.selection.budget.model_copy(
            update={"cpu_hours": None})})}), 0, candidates, cap=5, seed=3).picked)  # the same pick, cut
    more = cfg.model_copy(update={"selection": cfg.selection.model_copy(update={
        "budget": cfg.selection.budget.model_copy(update={"cpu_hours": 3.3})})})
    assert len(choose(store, more, 0, candidates, cap=5, seed=3).picked) == 4  # 4 x 0.8 = 3.2 <= 3.3


def test_select_rejects_what_the_budget_does_not_afford_and_says_so(launchpad, tmp_path):
    """The default diverse pick under a budget: farthest-point order decides which picks are kept."""
    path = small_cu_config(tmp_path, "cu-budget-select")
    raw = yaml.safe_load(path.read_text())
    raw["selection"].update(max_per_iteration=6, budget={"cpu_hours": 0.05})
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(path)
    store = ResultsStore.from_launchpad(launchpad)
    ids = running_campaign(store, cfg, rattled_cu(3, 0.05))
    assert label_batch(store, cfg, ids).failed == 0
    store.configurations.update_many({"_id": {"$in": ids}}, {"$set": {"label.walltime": 100.0}})  # 36 per hour
    open_iteration(store, cfg, 0, 0)
    frames = rattled_cu(40, 0.1)[10:]
    items = [{"species": a.get_chemical_symbols(), "cell": a.cell.array, "positions": a.positions, "pbc": a.pbc,
              "origin": {"kind": "explored", "iteration": 0}, "status": "candidate",
              "model_deviation": {"max_f": 0.2, "max_v": 0.0}} for a in frames]
    keep_candidates(store, cfg.name, 0, "fcc|c0", items)
    for task, n in (("fcc|c0", len(frames)), ("fcc|c1", 0)):
        store.set_iteration_fields(cfg.name, 0, {f"explorations.{task}": {
            "accurate": 5, "candidate": n, "failed": 0, "total": 5 + n}})
    _, picked = select_and_decide(store, cfg, 0, 0)
    assert len(picked) == 1  # one label of 100 s is 0.028 CPU-hours; two are 0.056 > 0.05
    over = list(store.configurations.find({"campaign": cfg.name, "rejected_reason": "over the labeling budget "
                                                                                     "(selection.budget)"}))
    assert len(over) == 5  # the other 5 of the 6 the cap allowed
    capped = store.configurations.count_documents({"campaign": cfg.name, "rejected_reason": "over the per-iteration cap"})
    assert capped == len(frames) - 6
    budget = store.get_iteration(cfg.name, 0)["budget"]
    assert (budget["picked"], budget["over_budget"], budget["cpu_hours"]) == (1, 5, 0.05)
    assert budget["cost_model"]["fitted"] is False and budget["cost_model"]["p"] == 3.0
    assert budget["estimated_cpu_hours"] == pytest.approx(100.0 / 3600)

    # what a person sees: a line under `firegen status`'s table, and the dashboard's label-cost table
    summary = campaign_summary(store, cfg.name).splitlines()
    assert ("labeling budget (iteration 0): 1 of 6 picks kept, an estimated 0.0278 of 0.05 CPU-h "
            "(label wall time 0.00305 s x natoms^3.00, selection.budget.exponent: one atom count so far)") in summary
    source = CampaignSource(store, launchpad, cfg.name)
    row = next(r for r in tables.label_budget(source) if r["picked by"] == "0")
    assert (row["over budget"], row["allowed CPU-h"]) == (5, 0.05)
    html = sections.labels(source, ReportLinks())[0].html
    assert 'data-field="budget.0.over budget"' in html and ">5<" in html.split('data-field="budget.0.over budget"')[1][:40]


def test_without_a_budget_status_and_dashboard_say_nothing_of_one(launchpad, tmp_path):
    cfg = load_config(small_cu_config(tmp_path, "cu-no-budget"))
    store = ResultsStore.from_launchpad(launchpad)
    running_campaign(store, cfg, rattled_cu(2, 0.05))
    open_iteration(store, cfg, 0, 0)
    assert "labeling budget" not in campaign_summary(store, cfg.name)
    html = sections.labels(CampaignSource(store, launchpad, cfg.name), ReportLinks())[0].html
    assert "over budget" not in html
