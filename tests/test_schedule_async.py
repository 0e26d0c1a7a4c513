"""The asynchronous schedule (``schedule.mode: asynchronous``): the rule that starts the next committee's training
(pure), and on a real FerretDB: a quorum of labels starts it exactly once, a straggling label joins the next
snapshot (and its provenance names that snapshot), the deadline starts it with what is back, and re-scoring by
a newer committee (real deepmd-kit models) skips a queued configuration it now predicts within f_lo."""

import datetime

import numpy as np
import pytest
from ase.build import bulk

from campaign_helpers import small_cu_config
from firegen.campaign.config import load_config
from firegen.campaign.config_schedule import ScheduleConfig
from firegen.campaign.schedule import LabelProgress, training_start
from firegen.db.provenance import configuration_provenance
from firegen.db.label_queue import mark_labels_queued, outstanding_by_iteration
from firegen.db.repository import ResultsStore
from firegen.workflows.jobs.gate import pass_gate
from firegen.workflows.jobs.init import open_iteration
from firegen.workflows.jobs.label import label_batch
from firegen.workflows.jobs.schedule import try_start_training

ASYNC = ScheduleConfig(mode="asynchronous", quorum=0.5, quorum_count=None, deadline_s=600.0, max_in_flight=2)


@pytest.mark.parametrize("progress, ready, why", [
    (LabelProgress(total=10, back=4, waited_s=10, outstanding=1), False, "waiting: 4 of 10"),
    (LabelProgress(total=10, back=5, waited_s=10, outstanding=1), True, "quorum: 5 of 10"),
    (LabelProgress(total=10, back=1, waited_s=601, outstanding=1), True, "deadline: 601 s"),
    (LabelProgress(total=10, back=0, waited_s=601, outstanding=1), False, "waiting: 0 of 10"),
    (LabelProgress(total=10, back=9, waited_s=601, outstanding=3), False, "3 iterations have labels outstanding"),
    (LabelProgress(total=10, back=10, waited_s=0, outstanding=3), True, "all labels back"),
    (LabelProgress(total=0, back=0, waited_s=0, outstanding=0), True, "all labels back"),
])
def test_the_rule_starts_on_a_quorum_or_the_deadline_and_holds_too_many_in_flight(progress, ready, why):
    start = training_start(ASYNC, progress)
    assert start.ready is ready and start.reason.startswith(why)


def test_a_label_count_is_a_quorum_too():
    counted = ASYNC.model_copy(update={"quorum": 0.9, "quorum_count": 3})
    assert training_start(counted, LabelProgress(total=40, back=3, waited_s=0, outstanding=1)).ready
    assert not training_start(counted, LabelProgress(total=40, back=2, waited_s=0, outstanding=1)).ready


REFILL = ASYNC.model_copy(update={"quorum": 0.8, "refill_floor": 0.5})


@pytest.mark.parametrize("schedule, progress, ready, why", [
    # 5 of 10 back after 100 s: the other 5 are due in about 100 s, sooner than the 120 s the last committee
    # took from snapshot to labels, so training now brings new labels before the cpu workers run dry
    (REFILL, LabelProgress(total=10, back=5, waited_s=100, outstanding=1, turnaround_s=120), True,
     "refill: 5 of 10 labels back, the rest due in about 100 s <= 120 s"),
    (REFILL, LabelProgress(total=10, back=5, waited_s=100, outstanding=1, turnaround_s=90), False, "waiting: 5 of 10"),
    (REFILL, LabelProgress(total=10, back=4, waited_s=10, outstanding=1, turnaround_s=1000), False,
     "waiting: 4 of 10"),  # below refill_floor
    (REFILL, LabelProgress(total=10, back=5, waited_s=100, outstanding=1, turnaround_s=None), False,
     "waiting: 5 of 10"),  # nothing measured yet
    (REFILL.model_copy(update={"refill": False}),
     LabelProgress(total=10, back=5, waited_s=100, outstanding=1, turnaround_s=120), False, "waiting: 5 of 10"),
    (REFILL, LabelProgress(total=10, back=7, waited_s=100, outstanding=3, turnaround_s=1000), False,
     "3 iterations have labels outstanding"),
])
def test_refill_starts_training_when_the_labels_left_are_due_before_a_new_committee_could_queue_more(
        schedule, progress, ready, why):
    start = training_start(schedule, progress)
    assert start.ready is ready and start.reason.startswith(why)


def _cu(a: float, shake: float = 0.0, seed: int = 0):
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((2, 2, 2))
    atoms.positions += np.random.default_rng(seed).normal(0, shake, atoms.positions.shape)
    return atoms


def _async_campaign(mongo_db, tmp_path, name, **schedule):
    cfg = load_config(small_cu_config(tmp_path, name, schedule={"mode": "asynchronous", **schedule}))
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    store.update_campaign(cfg.name, status="running")
    init = [store.add_atoms(cfg.name, _cu(a), {"kind": "init", "iteration": -1, "frame": k}, status="selected")[0]
            for k, a in enumerate((3.55, 3.61, 3.67))]
    label_batch(store, cfg, init)
    assert pass_gate(store, cfg, 0).size == 3
    return store, cfg


def _picked(store, cfg, iteration: int, structures) -> list:
    """Configurations that iteration ``iteration``'s select picked, and the next iteration opened behind them."""
    ids = [store.add_atoms(cfg.name, atoms, {"kind": "explored", "iteration": iteration, "frame": k},
                           status="selected")[0] for k, atoms in enumerate(structures)]
    store.update_iteration(cfg.name, iteration, 0, selected=len(ids), status="done")
    open_iteration(store, cfg, iteration + 1, 0)
    mark_labels_queued(store, cfg.name, iteration + 1, len(ids))
    return ids


def test_a_quorum_starts_the_next_training_once_and_a_straggler_joins_the_snapshot_after(mongo_db, tmp_path):
    store, cfg = _async_campaign(mongo_db, tmp_path, "cu-async", quorum=0.5)
    picked = _picked(store, cfg, 0, [_cu(3.61, 0.05, seed=s) for s in range(4)])
    assert try_start_training(store, cfg) is None  # 0 of 4 back
    label_batch(store, cfg, picked[:1])
    assert try_start_training(store, cfg) is None  # 1 of 4
    label_batch(store, cfg, picked[1:2])
    order = try_start_training(store, cfg)
    assert (order.iteration, order.stage) == (1, 0) and order.reason.startswith("quorum: 2 of 4 labels back")
    assert try_start_training(store, cfg) is None  # claimed once: a second caller gets nothing
    assert store.get_iteration(cfg.name, 1)["training_start"]["labels_back"] == 2
    first = pass_gate(store, cfg, 1)
    assert first.size == 5  # 3 initial + the 2 labels back
    assert outstanding_by_iteration(store, cfg.name) == {0: 2}

    label_batch(store, cfg, picked[2:])  # the stragglers come back while iteration 1 trains
    _picked(store, cfg, 1, [])  # iteration 1 picked nothing: iteration 2 need not wait
    order = try_start_training(store, cfg)
    assert order.iteration == 2 and order.reason.startswith("all labels back (0 of 0")
    second = pass_gate(store, cfg, 2)
    assert second.size == 7
    for doc in store.configurations_by_ids(picked):
        assert doc["status"] == "labeled" and doc["label_writes"] == 1
        first_snapshot = first.snapshot_id if doc["_id"] in picked[:2] else second.snapshot_id
        assert str(doc["datasets"][0]) == first_snapshot  # the snapshot that first held it
        shown = configuration_provenance(mongo_db, doc["_id"])["first_snapshot"]  # as `firegen provenance config`
        assert str(shown["_id"]) == first_snapshot and shown["iteration"] == (1 if doc["_id"] in picked[:2] else 2)


def test_the_deadline_starts_training_on_what_is_back(mongo_db, tmp_path):
    store, cfg = _async_campaign(mongo_db, tmp_path, "cu-deadline", quorum=0.9, deadline_s=300.0)
    picked = _picked(store, cfg, 0, [_cu(3.61, 0.05, seed=s) for s in range(4)])
    label_batch(store, cfg, picked[:1])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert try_start_training(store, cfg, now=now) is None
    order = try_start_training(store, cfg, now=now + datetime.timedelta(seconds=301))
    assert order.iteration == 1 and order.reason.startswith("deadline: ") and "with 1 of 4 labels back" in order.reason


def test_a_strict_campaign_never_starts_early(mongo_db, tmp_path):
    cfg = load_config(small_cu_config(tmp_path, "cu-strict"))
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    store.update_campaign(cfg.name, status="running")
    _picked(store, cfg, 0, [])
    assert cfg.schedule.mode == "strict" and try_start_training(store, cfg) is None


def test_rescoring_by_a_newer_committee_skips_what_it_predicts_within_f_lo(mongo_db, launchpad, tmp_path):
    from science_data import make_emt_dataset, train_tiny_model

    from firegen.workflows.steps.rescore import max_force_deviation

    data = make_emt_dataset(tmp_path / "data", n_frames=20, seed=0)
    models = [train_tiny_model(tmp_path / f"m{seed}", data, seed=seed, steps=100) for seed in (1, 2)]
    near, far = _cu(3.61, 0.02, seed=5), _cu(3.30, 0.25, seed=6)
    low, high = max_force_deviation(models, [near, far])
    assert low < high
    store, cfg = _async_campaign(mongo_db, tmp_path, "cu-rescore", quorum=1.0)
    trust = cfg.selection.trust.model_copy(update={"f_lo": float((low + high) / 2), "f_hi": float(high + 10)})
    cfg = cfg.model_copy(update={"selection": cfg.selection.model_copy(update={"trust": trust})})
    picked = _picked(store, cfg, 0, [near, far])
    snapshot = store.find_snapshot(cfg.name, 0)["_id"]
    for member, path in enumerate(models):  # iteration 1's committee exists: newer than iteration 0's pick
        store.add_model(cfg.name, 1, member, member + 1, "tensorflow", snapshot, model_file=path)
    outcome = label_batch(store, cfg, picked, workdir=tmp_path)
    assert (outcome.labeled, outcome.skipped) == (1, 1)
    skipped, labeled = store.configurations_by_ids(picked)
    assert skipped["status"] == "skipped" and skipped.get("label") is None and "label_writes" not in skipped
    assert skipped["rescore"]["committee_iteration"] == 1 and skipped["rescore"]["max_f"] == pytest.approx(low)
    assert "< f_lo" in skipped["rescore"]["reason"]
    assert labeled["status"] == "labeled" and labeled["rescore"]["skip"] is False
    assert labeled["rescore"]["max_f"] == pytest.approx(high)
    order = try_start_training(store, cfg)  # a skipped configuration is back: quorum 1.0 is met
    assert order.iteration == 1 and order.reason.startswith("all labels back (2 of 2")

    from firegen.orchestrator.relabel import relabel

    done = relabel(launchpad, cfg.name, {}, status="skipped")  # reversible: `firegen relabel --skipped`
    assert done["configurations"] == 1
    assert store.configurations_by_ids([skipped["_id"]])[0]["status"] == "selected"
    (fw,) = [launchpad.get_fw_by_id(i) for i in done["fw_ids"]]
    assert fw.tasks[0]["config_ids"] == [str(skipped["_id"])] and fw.tasks[0]["labeler"]["kind"] == "emt"


def test_the_maintenance_duty_queues_an_iteration_past_its_deadline_once(mongo_db, launchpad, tmp_path):
    from firegen.db.fireworks_archive import workflow_queued
    from firegen.workflows import schedule_duty

    store, cfg = _async_campaign(mongo_db, tmp_path, "cu-duty", quorum=0.9, deadline_s=60.0)
    picked = _picked(store, cfg, 0, [_cu(3.61, 0.05, seed=s) for s in range(4)])
    label_batch(store, cfg, picked[:1])
    assert schedule_duty.advance_schedules(launchpad) == []  # 1 of 4 back, 60 s not passed
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=61)
    store.set_iteration_fields(cfg.name, 1, {"labels_queued_at": past})
    ((campaign, iteration, why),) = schedule_duty.advance_schedules(launchpad)
    assert (campaign, iteration) == (cfg.name, 1) and why.startswith("deadline: ")
    assert workflow_queued(launchpad, {"firegen_campaign": cfg.name, "firegen_iteration": 1})
    kinds = sorted(fw["spec"]["firegen"]["kind"] for fw in launchpad.fireworks.find({}, {"spec.firegen": 1}))
    assert kinds == sorted(["gate", "select"] + ["train"] * cfg.committee.size
                           + ["explore"] * len(cfg.stages[0].conditions()))
    assert schedule_duty.advance_schedules(launchpad) == []  # once


def test_the_duty_queues_an_iteration_whose_claimer_died_before_queueing_it(mongo_db, launchpad, tmp_path):
    from firegen.db.fireworks_archive import workflow_queued
    from firegen.workflows import schedule_duty

    store, cfg = _async_campaign(mongo_db, tmp_path, "cu-claimer", quorum=0.5)
    picked = _picked(store, cfg, 0, [_cu(3.61, 0.05, seed=s) for s in range(2)])
    label_batch(store, cfg, picked)
    assert try_start_training(store, cfg).iteration == 1  # claimed, and then the claimer died: nothing queued
    assert schedule_duty.advance_schedules(launchpad) == []  # within the grace period: the claimer may be slow
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=schedule_duty.CLAIM_GRACE_S + 1)
    store.set_iteration_fields(cfg.name, 1, {"training_start.at": old})
    ((_, iteration, why),) = schedule_duty.advance_schedules(launchpad)
    assert iteration == 1 and "claimed by a Firework that ended before queueing it" in why
    assert workflow_queued(launchpad, {"firegen_campaign": cfg.name, "firegen_iteration": 1})
    assert schedule_duty.advance_schedules(launchpad) == []


def test_asynchronous_labels_are_one_per_firework_in_workflows_of_at_most_25(tmp_path):
    from firegen.workflows.builders import LABEL_FWS_PER_WORKFLOW, labels_workflows

    cfg = load_config(small_cu_config(tmp_path, "cu-chunks", schedule={"mode": "asynchronous"}))
    ids = [f"{k:024x}" for k in range(60)]
    wfs = labels_workflows(cfg, ids, 3)
    assert LABEL_FWS_PER_WORKFLOW == 25 and [len(wf.fws) for wf in wfs] == [25, 25, 10]
    assert [wf.metadata["firegen_part"] for wf in wfs] == [0, 1, 2]
    assert all(wf.metadata["firegen_labels_of"] == 3 for wf in wfs)
    assert [fw.tasks[0]["config_ids"] for wf in wfs for fw in wf.fws] == [[i] for i in ids]


def _four_picked(mongo_db, tmp_path, name, began_s: float, queued_s: float):
    """4 labels picked by iteration 0, whose committee began ``began_s`` ago and queued them ``queued_s`` ago."""
    store, cfg = _async_campaign(mongo_db, tmp_path, name, quorum=0.9, deadline_s=None)
    picked = _picked(store, cfg, 0, [_cu(3.61, 0.05, seed=s) for s in range(4)])
    now = datetime.datetime.now(datetime.timezone.utc)
    store.datasets.update_one({"campaign": cfg.name, "iteration": 0},
                              {"$set": {"created": now - datetime.timedelta(seconds=began_s)}})
    store.set_iteration_fields(cfg.name, 1, {"labels_queued_at": now - datetime.timedelta(seconds=queued_s)})
    return store, cfg, picked, now


def test_refill_measures_the_last_committees_turnaround_from_its_snapshot(mongo_db, tmp_path):
    store, cfg, picked, now = _four_picked(mongo_db, tmp_path, "cu-refill", began_s=200, queued_s=20)  # 180 s
    label_batch(store, cfg, picked[:1])
    assert try_start_training(store, cfg, now=now) is None  # 1 of 4: below refill_floor 0.5
    label_batch(store, cfg, picked[1:2])
    order = try_start_training(store, cfg, now=now)  # 2 of 4 in 20 s: the other 2 due in ~20 s <= 180 s
    assert order.iteration == 1 and order.reason.startswith("refill: 2 of 4 labels back")
    started = store.get_iteration(cfg.name, 1)["training_start"]
    assert started["turnaround_s"] == pytest.approx(180.0, abs=1.0) and started["labels_back"] == 2


def test_refill_waits_while_the_labels_left_take_longer_than_the_turnaround(mongo_db, tmp_path):
    # a 30-s turnaround, and 2 labels back in 600 s: the other 2 need about 600 s more
    store, cfg, picked, now = _four_picked(mongo_db, tmp_path, "cu-norefill", began_s=630, queued_s=600)
    label_batch(store, cfg, picked[:2])
    assert try_start_training(store, cfg, now=now) is None


def _init_task(launchpad, cfg, tmp_path, monkeypatch):
    """Run the campaign's init Firework's task as a worker would (its LaunchPad handed over); its FWAction."""
    from firegen.orchestrator.submit import prepared_systems
    from firegen.workflows.tasks import InitCampaignTask

    task = InitCampaignTask(config=cfg.frozen(), systems=prepared_systems(cfg), imported=[])
    task.launchpad = launchpad
    monkeypatch.chdir(tmp_path)
    return task.execute({})


def test_a_quorum_of_the_initial_labels_starts_iteration_0_and_the_stragglers_join_iteration_1(
        mongo_db, launchpad, tmp_path, monkeypatch):
    from firegen.db.fireworks_archive import workflow_queued

    cfg = load_config(small_cu_config(tmp_path, "cu-async-init", schedule={"mode": "asynchronous", "quorum": 0.5}))
    _init_task(launchpad, cfg, tmp_path, monkeypatch)
    store = ResultsStore(mongo_db)
    initial = store.ids_with_status(cfg.name, "selected", origin_kind="init")
    expected = cfg.initial_data.perturb.count * len(cfg.initial_data.perturb.scales)
    assert len(initial) == expected and store.get_iteration(cfg.name, 0)["labels_expected"] == expected
    # the initial labels are queued alone, one per Firework; iteration 0 is not queued behind them
    kinds = [fw["spec"]["firegen"]["kind"] for fw in launchpad.fireworks.find({}, {"spec.firegen": 1})]
    assert kinds == ["label"] * expected
    assert not workflow_queued(launchpad, {"firegen_campaign": cfg.name, "firegen_iteration": 0})

    half = expected // 2
    label_batch(store, cfg, initial[:half - 1])
    assert try_start_training(store, cfg) is None
    label_batch(store, cfg, initial[half - 1:half])
    order = try_start_training(store, cfg)
    assert (order.iteration, order.stage) == (0, 0)
    assert order.reason.startswith(f"quorum: {half} of {expected} labels back")
    assert pass_gate(store, cfg, 0).size == half
    label_batch(store, cfg, initial[half:])  # the initial stragglers, back while iteration 0 trains
    _picked(store, cfg, 0, [])
    assert try_start_training(store, cfg).reason.startswith("all labels back (0 of 0")
    assert pass_gate(store, cfg, 1).size == expected


def test_a_rerun_init_keeps_the_count_and_time_its_labels_were_queued_at(mongo_db, launchpad, tmp_path, monkeypatch):
    cfg = load_config(small_cu_config(tmp_path, "cu-async-rerun", schedule={"mode": "asynchronous"}))
    _init_task(launchpad, cfg, tmp_path, monkeypatch)
    store = ResultsStore(mongo_db)
    first = store.get_iteration(cfg.name, 0)
    label_batch(store, cfg, store.ids_with_status(cfg.name, "selected", origin_kind="init")[:3])
    _init_task(launchpad, cfg, tmp_path, monkeypatch)  # the init Firework rerun (its worker died after queueing)
    again = store.get_iteration(cfg.name, 0)
    assert again["labels_expected"] == first["labels_expected"]
    assert again["labels_queued_at"] == first["labels_queued_at"]
    assert launchpad.fireworks.count_documents({"spec.firegen.kind": "label"}) == first["labels_expected"]


def test_a_strict_campaigns_init_queues_iteration_0_behind_every_initial_label(launchpad, tmp_path, monkeypatch):
    cfg = load_config(small_cu_config(tmp_path, "cu-strict-init"))
    _init_task(launchpad, cfg, tmp_path, monkeypatch)
    gate = launchpad.fireworks.find_one({"spec.firegen.kind": "gate"})
    labels = [fw["fw_id"] for fw in launchpad.fireworks.find({"spec.firegen.kind": "label"}, {"fw_id": 1})]
    parents = [fw["fw_id"] for fw in launchpad.fireworks.find({"spec.firegen.kind": "label"}, {"fw_id": 1})
               if gate["fw_id"] in launchpad.workflows.find_one({"nodes": fw["fw_id"]})["links"][str(fw["fw_id"])]]
    assert gate is not None and labels and sorted(parents) == sorted(labels)
