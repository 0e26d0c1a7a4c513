"""The snapshot gate on a real FerretDB: it takes an iteration's snapshot once, applies the label
failure policy before taking it, and stops the campaign with the reason instead."""

from ase.build import bulk

from campaign_helpers import small_cu_config
from firegen.db.repository import ResultsStore
from firegen.campaign.config import load_config
from firegen.workflows.jobs.label import label_batch
from firegen.workflows.builders import labels_then_iteration
from firegen.workflows.jobs.gate import pass_gate, snapshot_to_train


def _campaign(mongo_db, tmp_path, structures, name="cu-gate", **labeler):
    cfg = load_config(small_cu_config(tmp_path, name))
    if labeler:
        cfg = cfg.model_copy(update={"labeler": cfg.labeler.model_copy(update=labeler)})
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    ids = [store.add_atoms(cfg.name, atoms, {"kind": "init", "iteration": -1, "frame": k}, status="selected")[0]
           for k, atoms in enumerate(structures)]
    label_batch(store, cfg, ids)  # EMT: Cu labels, Ar fails (outside EMT's elements)
    return store, cfg


CU = [bulk("Cu", "fcc", a=a, cubic=True) for a in (3.55, 3.61, 3.67)]
AR = [bulk("Ar", "fcc", a=a, cubic=True) for a in (5.26, 5.40)]


def test_gate_passes_one_snapshot_and_a_rerun_gets_the_same(mongo_db, tmp_path):
    store, cfg = _campaign(mongo_db, tmp_path, CU + AR[:1])  # 1 of 4 failed: under the 50 % limit
    first = pass_gate(store, cfg, 0)
    assert first.passed and (first.size, first.failed, first.attempted) == (3, 1, 4)
    again = pass_gate(store, cfg, 0)
    assert again.passed and again.snapshot_id == first.snapshot_id and again.failed is None
    assert mongo_db.datasets.count_documents({"iteration": 0}) == 1
    assert str(snapshot_to_train(store, cfg, 0, first.snapshot_id)["_id"]) == first.snapshot_id
    assert store.get_campaign(cfg.name)["status"] == "queued"  # untouched


def test_gate_stops_the_campaign_before_any_snapshot(mongo_db, tmp_path):
    store, cfg = _campaign(mongo_db, tmp_path, CU[:1] + AR)  # 2 of 3 failed
    outcome = pass_gate(store, cfg, 0)
    assert not outcome.passed and outcome.snapshot_id is None and (outcome.failed, outcome.attempted) == (2, 3)
    doc = store.get_campaign(cfg.name)
    assert doc["status"] == "stopped" and doc["stopped_iteration"] == 0 and doc["stop_reason"] == outcome.stop_reason
    assert outcome.stop_reason.endswith("`firegen relabel cu-gate --set KEY=VALUE` (it resumes iteration 0)")
    assert mongo_db.datasets.count_documents({}) == 0


def test_gate_without_a_failure_limit_passes_whatever_failed(mongo_db, tmp_path):
    store, cfg = _campaign(mongo_db, tmp_path, CU[:1] + AR, max_failed_ratio=None)
    outcome = pass_gate(store, cfg, 0)
    assert outcome.passed and outcome.size == 1 and (outcome.failed, outcome.attempted) == (2, 3)


def test_labels_feed_one_gate_that_feeds_every_train(tmp_path):
    cfg = load_config(small_cu_config(tmp_path, "cu-shape"))
    wf = labels_then_iteration(cfg, [f"{i:024x}" for i in range(60)], 0, 1, 0)
    kind = {fw.fw_id: fw.spec["firegen"]["kind"] for fw in wf.fws}
    gates = [i for i, k in kind.items() if k == "gate"]
    assert len(gates) == 1 and wf.id_fw[gates[0]].spec["_category"] == "cpu"
    assert sum(k == "label" for k in kind.values()) == 8  # 60 configurations: at most 8 batches (of 8, the last 4)
    assert {i: sorted(kind[c] for c in wf.links[i]) for i, k in kind.items() if k == "label"} == \
        {i: ["gate"] for i, k in kind.items() if k == "label"}
    assert sorted(kind[c] for c in wf.links[gates[0]]) == ["train"] * cfg.committee.size
    assert all(fw.spec["_add_launchpad_and_fw_id"] is True for fw in wf.fws)
    few = labels_then_iteration(cfg, [f"{i:024x}" for i in range(12)], 0, 1, 0)  # batches of 5: 5, 5 and 2
    assert sorted(len(fw.tasks[0]["config_ids"]) for fw in few.fws if fw.spec["firegen"]["kind"] == "label") == [2, 5, 5]


def test_label_fireworks_tally_labels_per_picking_iteration_and_the_gate_sets_it_right(mongo_db, tmp_path):
    from firegen.campaign.records import LabelTally
    from firegen.orchestrator.report import label_counts

    store, cfg = _campaign(mongo_db, tmp_path, CU + AR[:1])  # the initial data: 3 labeled, Ar fails
    doc = store.get_campaign(cfg.name)
    assert doc["initial_labels"] == {"labeled": 3, "failed": 1}
    (failure,) = doc["initial_label_failures"]
    assert failure["reason"] and store.configurations_by_ids([failure["config_id"]])[0]["species"][0] == "Ar"

    store.update_iteration(cfg.name, 0, 0)  # iteration 0 picks one Cu and one Ar structure
    picked = [store.add_atoms(cfg.name, atoms, {"kind": "explored", "iteration": 0, "frame": k}, status="selected")[0]
              for k, atoms in enumerate([CU[0] * (2, 1, 1), AR[1]])]
    label_batch(store, cfg, picked)
    it = store.get_iteration(cfg.name, 0)
    assert it["labels"] == {"labeled": 1, "failed": 1} and len(it["label_failures"]) == 1
    store.set_status(picked[1:], "selected")  # `firegen relabel`: the same labeler fails again ...
    label_batch(store, cfg, picked[1:])
    it = store.get_iteration(cfg.name, 0)
    assert it["labels"] == {"labeled": 1, "failed": 1} and len(it["label_failures"]) == 2
    store.set_status(picked[1:], "selected")  # ... Lennard-Jones labels it
    label_batch(store, cfg, picked[1:], labeler_override={"kind": "lj", "settings": {}})
    assert store.get_iteration(cfg.name, 0)["labels"] == {"labeled": 2, "failed": 0}

    # a count lost (a worker killed between a label and its count) is set right by the next gate
    store.set_label_tally(cfg.name, 0, LabelTally(labeled=0, failed=5))
    assert pass_gate(store, cfg, 1).passed
    assert store.get_iteration(cfg.name, 0)["labels"] == {"labeled": 2, "failed": 0}
    # the per-iteration table reads the tallies and agrees with counting the configurations
    tallies = label_counts(store, cfg.name, store.iterations_of(cfg.name), store.get_campaign(cfg.name))
    counted = store.label_counts_by_iteration(cfg.name)
    assert {k: v for k, v in tallies.items() if v} == counted
