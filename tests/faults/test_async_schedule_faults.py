"""An asynchronous campaign (``schedule.mode: asynchronous``, heavy-tailed ``delayed`` EMT labels) whose cpu worker
is SIGKILLed in the middle of a label of iteration 0's picks, under `firegen run`, and no person acts (issue 19,
item 4): `firegen run` starts another cpu worker, the lost-run duty reruns the label Firework once, the next
committee still starts on its quorum, and at the end every picked configuration was labeled exactly once or
skipped by re-scoring, none is lost, and every label is in the snapshot taken after it came back."""

from __future__ import annotations

import pytest

from campaign_helpers import small_cu_config
from fault_helpers import private_port, NAME, database, label_figures, record_outcome, start_run, stop_run, strike_during
from firegen.db.fireworks_archive import find_firework
from firegen.db.healing import LOST_KEY


def _of_iteration_0(db, launch) -> bool:
    fw = db.fireworks.find_one({"fw_id": launch["fw_id"]}, {"spec.firegen": 1})
    return (fw or {}).get("spec", {}).get("firegen", {}).get("iteration") == 0


@pytest.mark.slow
def test_sigkill_of_the_cpu_worker_during_an_asynchronous_label_heals_itself(tmp_path):
    config = small_cu_config(tmp_path, NAME, stage={"temperatures": [1500], "nsteps": 300, "max_iterations": 2},
                             labeler={"kind": "delayed", "settings": {"labeler": "emt", "median_s": 1.0,
                                                                      "p99_over_p50": 20, "seed": 3}},
                             schedule={"mode": "asynchronous", "quorum": 0.5},
                             # a low f_lo: iteration 0 must pick labels (not converge on its own frames)
                             selection={"trust": {"f_lo": 0.03, "f_hi": 0.6}, "max_per_iteration": 20})
    private_port(tmp_path)  # not 27117, where an orphaned worker may wait
    run = start_run(tmp_path, config, timeout=2400)
    try:
        db = database(tmp_path)
        launch = strike_during(db, tmp_path, "cpu", "label", when=_of_iteration_0, step=0.05, timeout=1500)
        out, err = run.communicate(timeout=2400)
        assert run.returncode == 0, out[-3000:] + err[-3000:]
        assert "the cpu worker exited with code -9; starting another (1 of 3)" in err
        fw = find_firework(db, {"fw_id": launch["fw_id"]})
        assert fw["state"] == "COMPLETED" and fw["spec"][LOST_KEY] == 1

        campaign = db.campaigns.find_one({"name": NAME})
        assert campaign["status"] in ("converged", "max_iterations"), campaign.get("stop_reason")
        assert db.configurations.count_documents({"campaign": NAME, "label_writes": {"$gt": 1}}) == 0
        assert db.configurations.count_documents(
            {"campaign": NAME, "status": {"$in": ["selected", "label_failed", "candidate"]}}) == 0
        iterations = sorted(db.iterations.find({"campaign": NAME}), key=lambda it: it["index"])
        assert [it["index"] for it in iterations] == [0, 1]
        assert iterations[1]["training_start"]["reason"].startswith(("quorum: ", "all labels back"))
        picked = list(db.configurations.find({"campaign": NAME, "origin.kind": "explored", "origin.iteration": 0},
                                             {"status": 1, "datasets": 1, "labeled_at": 1, "rescore": 1}))
        assert len(picked) >= iterations[0]["selected"] > 0
        done = [d for d in picked if d["status"] in ("labeled", "skipped")]
        assert len(done) == iterations[0]["selected"]
        for doc in done:
            if doc["status"] == "skipped":
                assert doc["rescore"]["committee_iteration"] == 1 and doc["rescore"]["skip"] is True
        snapshot_1 = db.datasets.find_one({"campaign": NAME, "iteration": 1})
        late = [d for d in done if d["status"] == "labeled" and snapshot_1["_id"] not in d.get("datasets", [])]
        for doc in late:  # not in iteration 1's snapshot: it came back after it (a 2-iteration campaign has no later one)
            assert doc["labeled_at"] > snapshot_1["created"]
        for it in iterations:
            members = sorted(m["member"] for m in db.models.find({"campaign": NAME, "iteration": it["index"]}))
            assert members == [0, 1]
        assert db.fireworks.count_documents({"state": "FIZZLED"}) == 0
        figures = label_figures(db)
        assert figures["labels_lost"] == 0 and figures["labels_duplicated"] == 0
        record_outcome("SIGKILL cpu worker during label (asynchronous schedule)", True, figures,
                       f"rerun once; iteration 1 started on '{iterations[1]['training_start']['reason']}'; "
                       f"{len(late)} label(s) came back after its snapshot, "
                       f"{sum(d['status'] == 'skipped' for d in done)} skipped by re-scoring")
    finally:
        stop_run(tmp_path, run)
