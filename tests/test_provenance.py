"""Provenance by _id look-ups: the embedded FerretDB's look-up index, paging, the models a dataset trained."""

import numpy as np
import pytest
from ase.build import bulk

from firegen.db.errors import FiregenError
from firegen.db.ferretdb_sqlite import INDEX_SUFFIX, index_id_lookups
from firegen.db.lookup import find_by_ids, is_ferretdb
from firegen.db.provenance import configuration_provenance, model_provenance
from firegen.db.repository import ResultsStore


def _plan(db, collection, filter_):
    return " ".join(db.command("explain", {"find": collection, "filter": filter_})["queryPlanner"]["Plan"])


def _labeled(store, n, campaign="c", settings_hash="emt", start=0):
    ids = []
    for i in range(start, start + n):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.01 * i)
        cid, _ = store.add_atoms(campaign, atoms, {"kind": "init", "iteration": -1})
        store.set_label(cid, {"energy": -1.0 * i, "forces": [[0.0, 0.0, 0.0]], "code": "ase-EMT",
                              "settings_hash": settings_hash})
        ids.append(cid)
    return ids


def test_id_lookups_use_firegens_index_on_ferretdb(mongo_db, ferretdb, db_name):
    store = ResultsStore(mongo_db)
    store.init()
    ids = _labeled(store, 3)
    before = mongo_db.configurations.index_information()
    assert "SCAN" in _plan(mongo_db, "configurations", {"_id": ids[1]})  # FerretDB's own _id index is not used
    created = index_id_lookups(ferretdb.root / "data", db_name)
    assert {"configurations", "models", "datasets"} <= {t.rsplit("_", 1)[0] for t in created}
    assert index_id_lookups(ferretdb.root / "data", db_name) == []  # idempotent
    assert mongo_db.configurations.find_one({"_id": ids[1]})["label"]["energy"] == -1.0
    plan = _plan(mongo_db, "configurations", {"_id": ids[1]})
    assert "SEARCH" in plan and INDEX_SUFFIX in plan
    assert "SCAN" in _plan(mongo_db, "configurations", {"campaign": "c"})  # other filters still read everything
    assert mongo_db.configurations.index_information() == before  # invisible to FerretDB's index list
    assert index_id_lookups(ferretdb.root / "data", "no_such_db") == []
    # writes still go through (FerretDB's own unique indexes are untouched)
    store.add_atoms("c", bulk("Cu", "fcc", a=3.9), {"kind": "init"})
    assert mongo_db.configurations.count_documents({}) == 4


def test_find_by_ids_keeps_order_and_skips_missing(mongo_db):
    store = ResultsStore(mongo_db)
    store.init()
    ids = _labeled(store, 4)
    from bson import ObjectId

    got = find_by_ids(mongo_db.configurations, [ids[2], ObjectId(), ids[0]], {"hash": 1})
    assert [d["_id"] for d in got] == [ids[2], ids[0]] and set(got[0]) == {"_id", "hash"}
    assert find_by_ids(mongo_db.configurations, []) == []
    assert is_ferretdb(mongo_db.client)  # the suite runs on FerretDB: one indexed find_one per id


def test_model_provenance_pages_and_config_provenance_lists_trained_models(mongo_db, tmp_path):
    store = ResultsStore(mongo_db)
    store.init()
    first = _labeled(store, 3)
    ds0 = store.snapshot_dataset("c", 0)
    assert ds0["labelers"] == {"emt": {"code": "ase-EMT", "version": None, "settings": None, "n": 3}}
    m0 = [store.add_model("c", 0, k, seed=k, backend="tensorflow", dataset_id=ds0["_id"]) for k in range(2)]
    _labeled(store, 2, settings_hash="emt2", start=3)
    ds1 = store.snapshot_dataset("c", 1)
    m1 = [store.add_model("c", 1, k, seed=k, backend="tensorflow", dataset_id=ds1["_id"]) for k in range(2)]
    assert mongo_db.datasets.find_one({"_id": ds1["_id"]})["model_ids"] == m1

    everything = model_provenance(mongo_db, m1[0], limit=None)
    n = everything["n_labels"]
    assert n == ds1["size"] == 5 == len(everything["labels"]) and everything["next_skip"] is None
    assert "configuration_ids" not in everything["dataset"] and "input" not in everything["model"]
    assert {k: v["n"] for k, v in everything["labelers"].items()} == {"emt": 3, "emt2": 2}
    page = model_provenance(mongo_db, str(m1[0]), limit=2, skip=1)
    assert [d["_id"] for d in page["labels"]] == [d["_id"] for d in everything["labels"][1:3]]
    assert page["next_skip"] == 3 and page["labelers"] == everything["labelers"]

    answer = configuration_provenance(mongo_db, first[0])
    assert [m["_id"] for m in answer["trained_models"]] == m0 + m1
    assert answer["configuration"]["label"]["code"] == "ase-EMT" and "positions" not in answer["configuration"]
    # a snapshot stored before datasets listed their models, or carried the labeler summary
    mongo_db.datasets.update_many({}, {"$unset": {"model_ids": "", "labelers": ""}})
    assert [m["_id"] for m in configuration_provenance(mongo_db, first[0])["trained_models"]] == m0 + m1
    assert model_provenance(mongo_db, m1[0], limit=1)["labelers"] == everything["labelers"]
    with pytest.raises(FiregenError, match="24 hex digits"):
        model_provenance(mongo_db, "nope")
    assert np.all([d["status"] == "labeled" for d in everything["labels"]])
