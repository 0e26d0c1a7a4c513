"""The results schema on a real FerretDB: creation, idempotence, validation, dedup, GridFS."""

import gridfs
import numpy as np
import pytest
from ase.build import bulk

from firegen.db.dataset_pages import member_ids
from firegen.db.errors import IntegrityError, SchemaViolation
from firegen.db.repository import ResultsStore
from firegen.db.schema import COLLECTIONS, init_schema


def _index_snapshot(db):
    return {spec.name: db[spec.name].index_information() for spec in COLLECTIONS}


def test_init_creates_collections_and_indexes_idempotently(mongo_db):
    first = init_schema(mongo_db)
    # the GridFS bucket too: every collection exists from the start (the embedded look-up index covers them)
    assert set(first.created) == {spec.name for spec in COLLECTIONS} | {"blobs.files", "blobs.chunks"}
    before = _index_snapshot(mongo_db)
    second = init_schema(mongo_db)
    assert second.created == []
    assert _index_snapshot(mongo_db) == before
    assert before["configurations"]["campaign_hash_unique"]["unique"] is True
    # FerretDB 1.x cannot hold $jsonSchema validators; firegen validates on the client instead.
    assert second.server_validators is False


def test_client_side_validation_names_the_field(mongo_db):
    store = ResultsStore(mongo_db)
    store.init()
    with pytest.raises(SchemaViolation, match=r"configurations\.status"):
        store.add_configuration("c", ["Cu"], np.eye(3) * 3.6, [[0, 0, 0]], {"kind": "init"}, status="bogus")
    with pytest.raises(SchemaViolation, match=r"configurations\.label\.energy"):
        cid, _ = store.add_configuration("c", ["Cu"], np.eye(3) * 3.6, [[0, 0, 0]], {"kind": "init"})
        store.set_label(cid, {"energy": "high", "forces": [[0, 0, 0]], "code": "x", "settings_hash": "h"})
    assert mongo_db.configurations.count_documents({"status": "labeled"}) == 0


def _rattled_cu(seed: int):
    """A 32-atom fcc Cu cell, rattled by 0.05 Å (its own structure per seed)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_same_structure_is_stored_once(mongo_db):
    store = ResultsStore(mongo_db)
    store.init()
    atoms = _rattled_cu(1)
    first, inserted = store.add_atoms("c", atoms, {"kind": "init"})
    assert inserted
    # the same structure with atoms permuted and one atom moved by a lattice vector
    permuted = atoms[np.random.default_rng(0).permutation(len(atoms))]
    permuted.positions[0] += permuted.cell[0]
    again, inserted_again = store.add_atoms("c", permuted, {"kind": "explored", "iteration": 3})
    assert (again, inserted_again) == (first, False)
    assert mongo_db.configurations.find_one({"_id": first})["origin"]["kind"] == "init"
    moved = atoms.copy()
    moved.positions[0, 0] += 0.01
    other, inserted_other = store.add_atoms("c", moved, {"kind": "init"})
    assert inserted_other and other != first
    # the same structure in another campaign is another document
    _, inserted_elsewhere = store.add_atoms("d", atoms, {"kind": "init"})
    assert inserted_elsewhere
    assert mongo_db.configurations.count_documents({}) == 3


def _item(atoms, **kw):
    return {"species": atoms.get_chemical_symbols(), "cell": atoms.cell.array, "positions": atoms.positions,
            "pbc": atoms.pbc, **kw}


def test_batch_insert_matches_one_by_one(mongo_db):
    store = ResultsStore(mongo_db)
    store.init()
    base = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    frames = []
    for k in range(4):
        atoms = base.copy()
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    stored, _ = store.add_atoms("c", frames[0], {"kind": "init"})
    permuted = frames[1][np.random.default_rng(0).permutation(len(frames[1]))]  # same structure as frames[1]
    items = [_item(a, origin={"kind": "explored", "frame": k}, model_deviation={"max_f": 0.2, "max_v": 0.0})
             for k, a in enumerate(frames + [permuted])]
    out = store.add_configurations("c", items)
    assert [inserted for _, inserted in out] == [False, True, True, True, False]
    assert out[0][0] == stored and out[4][0] == out[1][0]
    assert mongo_db.configurations.count_documents({"campaign": "c"}) == 4
    assert mongo_db.configurations.find_one({"_id": stored})["origin"]["kind"] == "init"  # first origin kept
    doc = mongo_db.configurations.find_one({"_id": out[2][0]})
    assert doc["origin"] == {"kind": "explored", "frame": 2} and doc["status"] == "candidate"
    assert doc["model_deviation"]["max_f"] == 0.2 and doc["datasets"] == []
    # the same call again stores nothing and returns the same ids
    assert store.add_configurations("c", items) == [(i, False) for i, _ in out]
    # a labeled item is stored labeled, as set_label leaves it; a bad label names the field
    extra = base.copy()
    extra.rattle(0.05, seed=9)
    label = {"energy": -1.5, "forces": np.zeros((len(extra), 3)), "code": "imported", "settings_hash": "h"}
    (cid, inserted), = store.add_configurations("c", [_item(extra, origin={"kind": "imported"}, label=label)])
    doc = mongo_db.configurations.find_one({"_id": cid})
    assert inserted and doc["status"] == "labeled" and doc["label_writes"] == 1
    assert len(doc["label"]["forces"]) == 3 * len(extra) and store.set_label(cid, label) is False
    with pytest.raises(SchemaViolation, match=r"label\.energy"):
        store.add_configurations("c", [_item(frames[3], origin={"kind": "imported"}, label={**label, "energy": "x"})])


def test_configuration_ids_come_from_content_and_older_random_ids_still_deduplicate(mongo_db):
    from bson import ObjectId

    from firegen.db.hashing import atoms_hash, configuration_id

    store = ResultsStore(mongo_db)
    store.init()
    atoms = _rattled_cu(3)
    cid, inserted = store.add_atoms("c", atoms, {"kind": "init"})
    assert inserted and cid == configuration_id("c", atoms_hash(atoms)) != configuration_id("d", atoms_hash(atoms))
    # a document stored before ids were derived from content (a random ObjectId) is still found
    older = _rattled_cu(4)
    doc = ResultsStore._configuration_doc("c", atoms_hash(older), older.get_chemical_symbols(), older.cell.array,
                                          older.positions, {"kind": "init"})
    random_id = mongo_db.configurations.insert_one({**doc, "_id": ObjectId()}).inserted_id
    again = store.add_configurations("c", [_item(older, origin={"kind": "explored"}), _item(atoms, origin={"kind": "explored"})])
    assert again == [(random_id, False), (cid, False)]
    assert mongo_db.configurations.count_documents({"campaign": "c"}) == 2
    assert store.add_configurations("c", []) == []


def test_gridfs_round_trip_with_checksum(mongo_db, tmp_path):
    store = ResultsStore(mongo_db)
    store.init()
    payload = np.random.default_rng(0).bytes(700_000)  # several GridFS chunks
    path = tmp_path / "model.pb"
    path.write_bytes(payload)
    file_id, sha = store.blobs.put(path, "model.pb")
    assert store.blobs.put(payload, "copy.pb") == (file_id, sha)  # content-addressed: stored once
    assert store.blobs.fetch(file_id, tmp_path / "back.pb").read_bytes() == payload
    chunk = mongo_db["blobs.chunks"].find_one({"files_id": file_id, "n": 0})
    corrupted = bytes([chunk["data"][0] ^ 0xFF]) + chunk["data"][1:]
    mongo_db["blobs.chunks"].update_one({"_id": chunk["_id"]}, {"$set": {"data": corrupted}})
    with pytest.raises(IntegrityError, match="sha256"):
        store.blobs.get(file_id)


def test_blob_cache_serves_reads_and_never_serves_damaged_bytes(mongo_db, tmp_path):
    from firegen.db.files import BlobStore

    cache = tmp_path / "cache"
    blobs = BlobStore(mongo_db, cache_dir=cache)
    payload = np.random.default_rng(1).bytes(600_000)
    file_id, sha = blobs.put(payload, "model.pb")
    assert (cache / sha).read_bytes() == payload  # the writer keeps a copy
    mongo_db["blobs.chunks"].delete_many({"files_id": file_id})  # GridFS can no longer answer
    assert blobs.get(file_id) == payload
    # a damaged copy is never returned: the read falls back to GridFS (which here fails loudly)
    (cache / sha).write_bytes(b"x" + payload[1:])
    with pytest.raises(gridfs.errors.CorruptGridFile):
        blobs.get(file_id)
    assert not (cache / sha).exists()
    # another worker (empty cache) reads from GridFS and keeps a checked copy
    other_id, _ = BlobStore(mongo_db).put(payload[::-1], "other.pb")
    reader = BlobStore(mongo_db, cache_dir=tmp_path / "reader")
    assert reader.get(other_id) == payload[::-1]
    assert [p.name for p in (tmp_path / "reader").iterdir()] == [BlobStore(mongo_db).files.find_one(
        {"_id": other_id})["metadata"]["sha256"]]


def test_a_configuration_is_labeled_once_under_concurrent_writers(mongo_db):
    from concurrent.futures import ThreadPoolExecutor

    from firegen.db.embedded.write_lock import exclusive

    store = ResultsStore(mongo_db)
    store.init()
    with exclusive(mongo_db.configurations) as locked:
        assert locked  # the suite's FerretDB is registered like the embedded one: set_label reads by _id
    cid, _ = store.add_atoms("c", bulk("Cu", "fcc", a=3.61), {"kind": "init"})
    labels = [{"energy": -float(k), "forces": [[0.0, 0.0, 0.0]], "code": "x", "settings_hash": f"h{k}"}
              for k in range(8)]
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda lab: ResultsStore(mongo_db).set_label(cid, lab), labels))
    assert won.count(True) == 1
    doc = mongo_db.configurations.find_one({"_id": cid})
    assert doc["label_writes"] == 1 and doc["label"]["settings_hash"] == f"h{won.index(True)}"
    from bson import ObjectId

    assert store.set_label(ObjectId(), labels[0]) is False  # no such configuration


def test_dataset_snapshot_and_model_record(mongo_db, tmp_path):
    store = ResultsStore(mongo_db)
    store.init()
    ids = []
    for i in range(3):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.01 * i)
        cid, _ = store.add_atoms("c", atoms, {"kind": "init"})
        store.set_label(cid, {"energy": -1.0 * i, "forces": [[0.0, 0.0, 0.0]], "virial": None,
                              "code": "ase-EMT", "settings_hash": "abc"})
        ids.append(cid)
    snapshot = store.snapshot_dataset("c", 0)
    assert sorted(member_ids(mongo_db, snapshot)) == sorted(ids)
    assert store.snapshot_dataset("c", 0)["_id"] == snapshot["_id"]  # rerun: same snapshot
    (tmp_path / "m.pb").write_bytes(b"frozen graph")
    model_id = store.add_model("c", 0, 0, seed=11, backend="tensorflow", dataset_id=snapshot["_id"],
                               model_file=tmp_path / "m.pb")
    again = store.add_model("c", 0, 0, seed=11, backend="tensorflow", dataset_id=snapshot["_id"],
                            model_file=tmp_path / "m.pb")
    assert again == model_id and mongo_db.models.count_documents({}) == 1
    # provenance: the labels that trained the model are one indexed query
    model = mongo_db.models.find_one({"_id": model_id})
    trained_on = mongo_db.configurations.find({"datasets": model["dataset_id"]}, {"_id": 1})
    assert sorted(d["_id"] for d in trained_on) == sorted(ids)


def test_a_snapshot_pages_its_new_labels_in_content_order_whatever_order_they_were_stored_in(mongo_db):
    """Two side-by-side explorations store their frames in either order; the training data must not follow."""
    store = ResultsStore(mongo_db)
    store.init()
    cells = [bulk("Cu", "fcc", a=3.6 + 0.01 * i) for i in range(7)]

    def add(name, order):
        for k in order:
            cid, _ = store.add_atoms(name, cells[k], {"kind": "init" if k < 3 else "explored"})
            store.set_label(cid, {"energy": -1.0 * k, "forces": [[0.0, 0.0, 0.0]], "virial": None,
                                  "code": "ase-EMT", "settings_hash": "abc"})

    def campaign(name, later_order):
        add(name, [0, 1, 2])
        assert store.snapshot_dataset(name, 0)["size"] == 3
        add(name, later_order)
        members = store.snapshot_members(store.snapshot_dataset(name, 1), {"hash": 1})
        return [m["hash"] for m in members]

    forward, backward = campaign("fwd", [3, 4, 5, 6]), campaign("bwd", [6, 5, 4, 3])
    assert forward == backward and len(forward) == 7
    assert forward[3:] == sorted(forward[3:])


def test_iteration_and_model_validators_come_from_the_records(mongo_db):
    from dataclasses import fields

    from bson import ObjectId

    from firegen.campaign.records import ExplorationSummary, IterationRecord, TrainingRecord
    from firegen.db.schema import SPECS

    for collection, record in (("iterations", IterationRecord), ("models", TrainingRecord)):
        schema = SPECS[collection].validator
        assert set(schema["properties"]) == {f.name for f in fields(record)}
    explorations = SPECS["iterations"].validator["properties"]["explorations"]
    assert set(explorations["additionalProperties"]["required"]) >= {"system", "accurate", "max_devi_f_hist"}
    assert len(fields(ExplorationSummary)) == len(explorations["additionalProperties"]["properties"])
    store = ResultsStore(mongo_db)
    with pytest.raises(SchemaViolation, match="iterations.selected"):
        store.update_iteration("c", 0, 0, selected="twelve")
    summary = ExplorationSummary("fcc", {"ensemble": "nvt"}, "lammps", 1, 2, 0, 3, 2, 0.5, [0.0, 1e10], [3])
    store.update_iteration("c", 0, 0, explorations={"fcc|c0": summary.as_dict()})
    with pytest.raises(SchemaViolation, match=r"iterations.explorations.fcc\|c0.accurate"):
        store.update_iteration("c", 0, 0, explorations={"fcc|c0": {**summary.as_dict(), "accurate": 1.5}})
    with pytest.raises(SchemaViolation, match="models.seed"):
        store.add_model("c", 0, 0, seed="eleven", backend="tensorflow", dataset_id=ObjectId())
    doc = store.update_iteration("c", 0, 0, selected=12, counts={"accurate": 3, "candidate": 1, "failed": 0, "total": 4})
    assert (doc["selected"], doc["counts"]["total"]) == (12, 4)


def test_bson_schema_of_a_record_names_types_nullability_and_ids():
    from dataclasses import dataclass

    from firegen.campaign.records import Ref
    from firegen.db.bson_schema import bson_schema

    @dataclass
    class Probe:
        name: str
        ids: list[Ref]
        energies: dict[str, float]
        parent: Ref | None = None
        note: str | None = None

    schema = bson_schema(Probe)
    assert schema["required"] == ["name", "ids", "energies"]
    assert schema["properties"]["ids"] == {"bsonType": "array", "items": {"bsonType": "objectId"}}
    assert schema["properties"]["energies"]["additionalProperties"] == {"bsonType": ["double", "int", "long", "decimal"]}
    assert schema["properties"]["parent"] == {"bsonType": ["objectId", "null"]}
    assert schema["properties"]["note"] == {"bsonType": ["string", "null"]}


def test_iterations_are_keyed_by_campaign_and_index_and_older_ones_are_still_updated(mongo_db):
    """Every read and write of one iteration is a look-up by ``_id`` ("<campaign>/<index>"); an iteration
    stored before the keys (ObjectId ``_id``) is found by (campaign, index) and updated, never duplicated."""
    from bson import ObjectId

    store = ResultsStore(mongo_db)
    store.init()
    created = store.update_iteration("c", 0, 0, status="running")
    assert created["_id"] == "c/0" and store.get_iteration("c", 0)["status"] == "running"
    store.set_iteration_fields("c", 0, {"explorations.t0": {"total": 3}})
    store.add_iteration_seconds("c", 0, "train_s", 2.5)
    again = store.update_iteration("c", 0, 0, status="done")
    assert (again["status"], again["explorations"], again["timings"]) == ("done", {"t0": {"total": 3}}, {"train_s": 2.5})
    old = ObjectId()
    mongo_db.iterations.insert_one({"_id": old, "campaign": "c", "index": 1, "stage": 0, "status": "running"})
    store.set_iteration_fields("c", 1, {"selected": 4})
    store.add_iteration_seconds("c", 1, "label_s", 1.0)
    assert store.update_iteration("c", 1, 0, status="done")["_id"] == old
    assert store.get_iteration("c", 1)["_id"] == old
    assert list(mongo_db.iterations.find({"campaign": "c", "index": 1}, {"selected": 1, "timings": 1, "status": 1})) == [
        {"_id": old, "selected": 4, "timings": {"label_s": 1.0}, "status": "done"}]
    assert mongo_db.iterations.count_documents({}) == 2
