"""The label tally after a late batch (seen in test_netns_partition.py, the database's end of the link down): a
worker cut off mid-batch stores a few labels, its batch is declared lost and rerun elsewhere, the gate sets the
tally from the configurations, and then the link comes back and the first batch ends and counts the labels it
stored before the cut. Those are in the gate's count already: before the fix the initial tally read 21 labels for
18 stored. Here the same sequence is driven by hand, on the session's FerretDB, with firegen's own label batch and
gate."""

from __future__ import annotations

import datetime

from ase.build import bulk

from campaign_helpers import small_cu_config
from firegen.campaign.config import load_config
from firegen.db.repository import ResultsStore
from firegen.workflows.jobs.gate import pass_gate
from firegen.workflows.jobs.label import label_batch


def test_a_batch_that_ends_after_the_gate_counted_its_labels_adds_nothing(mongo_db, tmp_path):
    cfg = load_config(small_cu_config(tmp_path, "late-tally"))  # EMT labels
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    ids = []
    for i in range(6):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=i)
        ids.append(store.add_atoms(cfg.name, atoms, {"kind": "init", "iteration": -1}, status="selected")[0])

    first_started = datetime.datetime.now(datetime.timezone.utc)  # the batch that will be cut off begins
    rerun = label_batch(store, cfg, ids)  # its rerun, elsewhere, labels all six and counts them
    assert rerun.labeled == 6
    gate = pass_gate(store, cfg, 0)  # the gate sets the tally from the configurations
    assert gate.passed
    assert mongo_db.campaigns.find_one({"name": cfg.name})["initial_labels"] == {"labeled": 6, "failed": 0}

    # the first batch comes back and counts the 3 labels it stored before the cut: they are counted already
    store.count_labels(cfg.name, -1, labeled=3, started=first_started)
    assert mongo_db.campaigns.find_one({"name": cfg.name})["initial_labels"] == {"labeled": 6, "failed": 0}

    # a batch that began after the gate (firegen relabel's) still counts
    store.count_labels(cfg.name, -1, labeled=1, started=datetime.datetime.now(datetime.timezone.utc))
    assert mongo_db.campaigns.find_one({"name": cfg.name})["initial_labels"]["labeled"] == 7
    assert all(d["label_writes"] == 1 for d in mongo_db.configurations.find({"campaign": cfg.name}))
