"""The snapshot gate on a real FerretDB: it takes an iteration's snapshot once, applies the label
failure policy before taking it, and stops the campaign with the reason instead."""

from ase.build import bulk

from campaign_helpers import small_cu_config
from firegen.db.repository import ResultsStore
from firegen.campaign.config import load_config
from firegen.workflows.jobs.label import label_batch
from firegen.workflows.tasks import labels_then_iteration
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
    assert sum(k == "label" for k in kind.values()) == 3  # 60 configurations in batches of 25
    assert {i: sorted(kind[c] for c in wf.links[i]) for i, k in kind.items() if k == "label"} == \
        {i: ["gate"] for i, k in kind.items() if k == "label"}
    assert sorted(kind[c] for c in wf.links[gates[0]]) == ["train"] * cfg.committee.size
    assert all(fw.spec["_add_launchpad_and_fw_id"] is True for fw in wf.fws)
