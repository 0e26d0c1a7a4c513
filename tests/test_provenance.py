"""Provenance by _id look-ups: the embedded FerretDB's look-up index, paging, the models a dataset trained."""

import numpy as np
import pytest
from ase.build import bulk

from firegen.campaign.errors import FiregenError
from firegen.db.embedded.id_index import INDEX_SUFFIX, index_id_lookups
from firegen.db.embedded.capabilities import capabilities
from firegen.db.lookup import find_by_ids
from firegen.db.provenance import configuration_provenance, holding_snapshots, model_provenance
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
    assert capabilities(mongo_db.client).engine == "ferretdb"  # the suite runs on FerretDB: one indexed find_one per id


@pytest.mark.parametrize("engine", ["ferretdb", "mongodb"])
def test_update_by_ids_changes_exactly_those_documents(mongo_db, monkeypatch, engine):
    """One update per id on FerretDB, ``$in`` batches where the server indexes them (MongoDB's path, run
    here on FerretDB, which answers ``$in`` too, by reading the collection)."""
    import firegen.db.lookup as lookup
    from bson import ObjectId

    from firegen.db.embedded.capabilities import FERRETDB, MONGODB

    monkeypatch.setattr(lookup, "capabilities", lambda client: MONGODB if engine == "mongodb" else FERRETDB)
    store = ResultsStore(mongo_db)
    store.init()
    ids = _labeled(store, 5)
    assert lookup.update_by_ids(mongo_db.configurations, [ids[3], ObjectId(), ids[1]], {"$set": {"status": "rejected"}}) == 2
    statuses = {d["_id"]: d["status"] for d in mongo_db.configurations.find({}, {"status": 1})}
    assert statuses == {i: "rejected" if i in (ids[1], ids[3]) else "labeled" for i in ids}
    assert lookup.update_by_ids(mongo_db.configurations, [], {"$set": {"status": "x"}}) == 0


def test_model_provenance_pages_and_config_provenance_lists_trained_models(mongo_db, tmp_path):
    store = ResultsStore(mongo_db)
    store.init()
    first = _labeled(store, 3)
    ds0 = store.snapshot_dataset("c", 0)
    assert ds0["labelers"] == {"emt": {"code": "ase-EMT", "version": None, "kind": None, "settings": None, "n": 3}}
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
    # snapshots stored before datasets held their models' briefs, listed their models, or carried the
    # labeler summary
    mongo_db.datasets.update_many({}, {"$unset": {"models": ""}})
    assert [m["_id"] for m in configuration_provenance(mongo_db, first[0])["trained_models"]] == m0 + m1
    mongo_db.datasets.update_many({}, {"$unset": {"model_ids": "", "labelers": ""}})
    assert [m["_id"] for m in configuration_provenance(mongo_db, first[0])["trained_models"]] == m0 + m1
    assert model_provenance(mongo_db, m1[0], limit=1)["labelers"] == everything["labelers"]
    with pytest.raises(FiregenError, match="24 hex digits"):
        model_provenance(mongo_db, "nope")
    assert np.all([d["status"] == "labeled" for d in everything["labels"]])


def test_snapshots_page_their_members_and_share_the_previous_pages(mongo_db, monkeypatch):
    from firegen.db import dataset_pages

    monkeypatch.setattr(dataset_pages, "PAGE_SIZE", 2)
    store = ResultsStore(mongo_db)
    store.init()
    first = _labeled(store, 5)
    ds0 = store.snapshot_dataset("c", 0)
    assert [n for _, n in dataset_pages.page_refs(ds0)] == [2, 2, 1] and "configuration_ids" not in ds0
    assert ds0["parts"] == {"datasets": [ds0["_id"]], "sizes": [5], "page_sizes": [2]}
    assert sorted(dataset_pages.member_ids(mongo_db, ds0)) == sorted(first)
    later = _labeled(store, 2, settings_hash="emt2", start=5)
    ds1 = store.snapshot_dataset("c", 1)
    # cumulative: iteration 1 reuses iteration 0's three pages and pages only the two new labels
    refs = dataset_pages.page_refs(ds1)
    assert refs[:3] == dataset_pages.page_refs(ds0) and [n for _, n in refs[3:]] == [2]
    assert ds1["parts"] == {"datasets": [ds0["_id"], ds1["_id"]], "sizes": [5, 2], "page_sizes": [2, 2]}
    assert mongo_db.dataset_pages.count_documents({}) == 4
    assert sorted(dataset_pages.member_ids(mongo_db, ds1)[5:]) == sorted(later)  # after the shared ones
    m1 = store.add_model("c", 1, 0, seed=3, backend="tensorflow", dataset_id=ds1["_id"])
    whole = model_provenance(mongo_db, m1, limit=None)["labels"]
    assert len(whole) == 7 and len({d["_id"] for d in whole}) == 7
    for skip, limit in ((0, 1), (1, 3), (3, 2), (4, 10), (6, 1), (7, 5)):  # pages cut at every place
        page = model_provenance(mongo_db, m1, limit=limit, skip=skip)
        assert [d["_id"] for d in page["labels"]] == [d["_id"] for d in whole[skip:skip + limit]]
        assert page["next_skip"] == (skip + limit if skip + limit < 7 else None)
    label = next(d for d in whole if d["_id"] == later[0])
    assert label["label"]["settings_hash"] == "emt2" and label["status"] == "labeled" and label["hash"]
    assert "forces" not in label["label"] and label["origin"]["kind"] == "init"
    # a member lists the snapshot that paged it (a snapshot writes only to the labels it adds); the later
    # snapshots sharing that page hold it too, and the trained models come from their briefs
    assert mongo_db.configurations.find_one({"_id": first[0]})["datasets"] == [ds0["_id"]]
    assert all(c["datasets"] == [ds1["_id"]] for c in mongo_db.configurations.find({"_id": {"$in": later}}))
    assert [d["_id"] for d in holding_snapshots(mongo_db, [ds0["_id"]])] == [ds0["_id"], ds1["_id"]]
    assert [d["_id"] for d in holding_snapshots(mongo_db, [ds1["_id"]])] == [ds1["_id"]]
    in_ds1 = mongo_db.configurations.find({"datasets": {"$in": ds1["parts"]["datasets"]}}, {"_id": 1})
    assert sorted(c["_id"] for c in in_ds1) == sorted(first + later)  # db/README.md's query for a snapshot
    trained = configuration_provenance(mongo_db, first[0])["trained_models"]
    assert [(m["_id"], m["iteration"], m["seed"]) for m in trained] == [(m1, 1, 3)]
    # tagged by every snapshot holding it (as stored before): the same answer
    mongo_db.configurations.update_one({"_id": first[0]}, {"$set": {"datasets": [ds0["_id"], ds1["_id"]]}})
    assert configuration_provenance(mongo_db, first[0])["trained_models"] == trained


def test_concurrent_snapshots_of_one_iteration_store_one(mongo_db, monkeypatch):
    import threading

    from firegen.db import dataset_pages

    monkeypatch.setattr(dataset_pages, "PAGE_SIZE", 2)
    store = ResultsStore(mongo_db)
    store.init()
    _labeled(store, 5)
    results, barrier = [], threading.Barrier(4)

    def snap():
        own = ResultsStore(mongo_db)
        barrier.wait()
        results.append(own.snapshot_dataset("c", 0)["_id"])

    threads = [threading.Thread(target=snap) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (ds,) = list(mongo_db.datasets.find({}))
    assert set(results) == {ds["_id"]}
    # the losers removed their pages and their tags
    assert sorted(p["_id"] for p in mongo_db.dataset_pages.find({})) == sorted(r for r, _ in dataset_pages.page_refs(ds))
    assert all(c["datasets"] == [ds["_id"]] for c in mongo_db.configurations.find({}, {"datasets": 1}))


def test_legacy_snapshot_and_missing_page(mongo_db):
    """A snapshot stored before pages (an id list) still answers; a missing page is named."""
    store = ResultsStore(mongo_db)
    store.init()
    ids = _labeled(store, 3)
    ds = store.snapshot_dataset("c", 0)
    model = store.add_model("c", 0, 0, seed=1, backend="tensorflow", dataset_id=ds["_id"])
    paged = model_provenance(mongo_db, model, limit=None)
    mongo_db.datasets.update_one({"_id": ds["_id"]}, {"$set": {"configuration_ids": ids},
                                                       "$unset": {"parts": "", "size": "", "models": ""}})
    legacy = model_provenance(mongo_db, model, limit=2, skip=1)
    assert [d["_id"] for d in legacy["labels"]] == ids[1:] and legacy["n_labels"] == 3
    assert {d["label"]["code"] for d in legacy["labels"]} == {"ase-EMT"} and legacy["next_skip"] is None
    assert "configuration_ids" not in legacy["dataset"]
    assert [m["_id"] for m in configuration_provenance(mongo_db, ids[0])["trained_models"]] == [model]
    assert {d["_id"] for d in paged["labels"]} == set(ids)
    mongo_db.datasets.update_one({"_id": ds["_id"]}, {"$set": {"parts": ds["parts"], "size": 3},
                                                       "$unset": {"configuration_ids": ""}})
    mongo_db.dataset_pages.delete_one({"_id": f"{ds['_id']}-00000"})
    with pytest.raises(FiregenError, match="pages .* are missing from dataset_pages"):
        model_provenance(mongo_db, model)
