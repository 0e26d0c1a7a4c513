"""The results schema: collections, their indexes and their JSON-schema validators.

One database per deployment, beside the LaunchPad's collections (``fireworks``, ``workflows``,
``launches``, ...). :func:`init_schema` creates everything and is idempotent.

Validators are installed on the server when it supports them (MongoDB); FerretDB 1.x answers
``NotImplemented`` to ``create``/``collMod`` with a ``validator``, so firegen always validates the
same schemas on the client too (:mod:`firegen.db.validation`) before writing. The validators of
``iterations``, ``models`` and ``heldout_predictions`` are generated from the records the steps hand back
(:mod:`firegen.campaign.records`); the others are written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pymongo
from pymongo import ASCENDING, DESCENDING

from firegen.campaign.records import CAMPAIGN_STATUSES, HeldOutPredictions, IterationRecord, TrainingRecord
from firegen.db.bson_schema import bson_schema

NUM = {"bsonType": ["double", "int", "long", "decimal"]}
NUM_OR_NULL = {"bsonType": ["double", "int", "long", "decimal", "null"]}
STR = {"bsonType": "string"}
INT = {"bsonType": ["int", "long"]}
# Arrays are stored flat, row-major (FerretDB 1.x rejects nested arrays): a 3x3 tensor is 9 numbers,
# N x 3 positions or forces are 3N numbers. ``ResultsStore.atoms`` / ``numpy.reshape`` restore them.
FLAT9 = {"bsonType": "array", "items": NUM, "minItems": 9, "maxItems": 9}
FLAT3N = {"bsonType": "array", "items": NUM, "minItems": 3}
CONFIG_STATUSES = ["candidate", "selected", "labeled", "label_failed", "rejected", "duplicate", "skipped"]
ORIGIN_KINDS = ["init", "explored", "imported"]

LABEL = {
    "bsonType": "object",
    "required": ["energy", "forces", "code", "settings_hash"],
    "properties": {
        "energy": NUM,
        "forces": FLAT3N,
        "virial": {"anyOf": [FLAT9, {"bsonType": "null"}]},
        "code": STR,
        "version": {"bsonType": ["string", "null"]},
        "settings_hash": STR,
        "walltime": NUM_OR_NULL,
        "host": {"bsonType": ["string", "null"]},
        "kind": {"bsonType": ["string", "null"]},
        "settings": {"bsonType": ["object", "null"]},
        # DFT labelers: code_version, input_sha256, command, mpi_ranks, n_scf_steps, workdir, and
        # corrections (custodian's, each {job, handler, errors, actions as JSON text})
        "details": {"bsonType": ["object", "null"],
                    "properties": {"code_version": {"bsonType": ["string", "null"]},
                                   "input_sha256": {"bsonType": ["string", "null"]},
                                   "command": {"bsonType": ["string", "null"]},
                                   "mpi_ranks": {"bsonType": ["int", "long", "null"]},
                                   "n_scf_steps": {"bsonType": ["int", "long", "null"]},
                                   "corrections": {"bsonType": ["array", "null"], "items": {"bsonType": "object"}}}},
    },
}


@dataclass(frozen=True)
class CollectionSpec:
    """One results collection: its validator and its indexes ``(keys, options)``."""

    name: str
    validator: dict
    indexes: list[tuple[list[tuple[str, int]], dict]] = field(default_factory=list)


COLLECTIONS: list[CollectionSpec] = [
    CollectionSpec(
        "campaigns",
        {"bsonType": "object", "required": ["name", "config", "type_map", "status"],
         "properties": {"name": STR, "config": {"bsonType": "object"},
                        "type_map": {"bsonType": "array", "items": STR, "minItems": 1},
                        "status": {"enum": list(CAMPAIGN_STATUSES)},
                        "stage": {"bsonType": ["int", "long", "null"]}, "iteration": {"bsonType": ["int", "long", "null"]},
                        "wf_id": {"bsonType": ["int", "long", "null"]}}},
        [([("name", ASCENDING)], {"unique": True, "name": "name_unique"}),
         ([("status", ASCENDING)], {"name": "status"})],
    ),
    CollectionSpec(
        "iterations", bson_schema(IterationRecord),
        [([("campaign", ASCENDING), ("index", ASCENDING)], {"unique": True, "name": "campaign_index_unique"})],
    ),
    CollectionSpec(
        "configurations",
        {"bsonType": "object", "required": ["campaign", "hash", "species", "cell", "positions", "origin", "status"],
         "properties": {"campaign": STR, "hash": STR, "natoms": INT,
                        "species": {"bsonType": "array", "items": STR, "minItems": 1},
                        "cell": FLAT9, "pbc": {"bsonType": "array"},
                        "positions": FLAT3N,
                        "origin": {"bsonType": "object", "required": ["kind"],
                                   "properties": {"kind": {"enum": ORIGIN_KINDS}}},
                        "status": {"enum": CONFIG_STATUSES},
                        "model_deviation": {"bsonType": ["object", "null"]},
                        "label": {"anyOf": [LABEL, {"bsonType": "null"}]},
                        "datasets": {"bsonType": "array"}}},
        [([("campaign", ASCENDING), ("hash", ASCENDING)], {"unique": True, "name": "campaign_hash_unique"}),
         ([("campaign", ASCENDING), ("status", ASCENDING)], {"name": "campaign_status"}),
         ([("campaign", ASCENDING), ("origin.iteration", ASCENDING)], {"name": "campaign_origin_iteration"}),
         ([("origin.fw_id", ASCENDING)], {"name": "origin_fw"}),
         ([("datasets", ASCENDING)], {"name": "datasets"}),
         ([("label.settings_hash", ASCENDING)], {"name": "label_settings"})],
    ),
    CollectionSpec(
        "models", bson_schema(TrainingRecord),
        [([("campaign", ASCENDING), ("iteration", ASCENDING), ("member", ASCENDING)],
          {"unique": True, "name": "campaign_iteration_member_unique"}),
         ([("dataset_id", ASCENDING)], {"name": "dataset"})],
    ),
    CollectionSpec(  # a model's predictions on its held-out frames (_id: the model's), its parity plots
        "heldout_predictions", bson_schema(HeldOutPredictions),
    ),
    CollectionSpec(
        "datasets",
        {"bsonType": "object", "required": ["campaign", "iteration", "hash", "size"],
         "properties": {"campaign": STR, "iteration": INT, "hash": STR, "size": INT,
                        "parts": {"bsonType": "object", "required": ["datasets", "sizes", "page_sizes"],
                                  "properties": {"datasets": {"bsonType": "array", "items": {"bsonType": "objectId"}},
                                                 "sizes": {"bsonType": "array", "items": INT},
                                                 "page_sizes": {"bsonType": "array", "items": INT}}},
                        "configuration_ids": {"bsonType": "array"}}},
        [([("campaign", ASCENDING), ("iteration", ASCENDING)], {"unique": True, "name": "campaign_iteration_unique"}),
         ([("hash", ASCENDING)], {"name": "hash"})],
    ),
    CollectionSpec(  # the members of the datasets (db/dataset_pages.py)
        "dataset_pages",
        {"bsonType": "object", "required": ["_id", "dataset_id", "ids", "hashes", "origin", "label",
                                            "settings_hashes", "labeler"],
         "properties": {"_id": STR, "ids": {"bsonType": "array", "items": {"bsonType": "objectId"}},
                        "hashes": {"bsonType": "array", "items": STR}, "origin": {"bsonType": "object"},
                        "label": {"bsonType": "object"}, "settings_hashes": {"bsonType": "array"},
                        "labeler": {"bsonType": "array", "items": INT}}},
        [([("dataset_id", ASCENDING)], {"name": "dataset"})],
    ),
    CollectionSpec(  # properties computed with a model: MD runs and Arrhenius fits (db/properties.py)
        "properties",
        {"bsonType": "object", "required": ["_id", "campaign", "model_id", "system", "kind", "results"],
         "properties": {"_id": STR, "campaign": STR, "model_id": {"bsonType": "objectId"}, "system": STR,
                        "kind": {"enum": ["md", "arrhenius"]}, "results": {"bsonType": "object"},
                        "md": {"bsonType": ["object", "null"]}, "analysis": {"bsonType": ["object", "null"]}}},
        [([("campaign", ASCENDING), ("system", ASCENDING)], {"name": "campaign_system"}),
         ([("model_id", ASCENDING)], {"name": "model"})],
    ),
    CollectionSpec(  # the candidates of each exploration (db/candidate_lists.py)
        "candidate_lists",
        {"bsonType": "object", "required": ["campaign", "iteration", "task", "ids"],
         "properties": {"campaign": STR, "iteration": INT, "task": STR,
                        "ids": {"bsonType": "array", "items": {"bsonType": "objectId"}}}},
        [([("campaign", ASCENDING), ("iteration", ASCENDING)], {"name": "campaign_iteration"})],
    ),
    CollectionSpec(  # fingerprints of the labeled and selected configurations (db/fingerprint_banks.py)
        "fingerprint_banks",
        {"bsonType": "object", "required": ["campaign", "part", "space", "type_map", "ids", "rows", "file_id"],
         "properties": {"campaign": STR, "part": STR, "space": STR, "type_map": {"bsonType": "array", "items": STR},
                        "ids": {"bsonType": "array", "items": {"bsonType": "objectId"}}, "rows": INT,
                        "file_id": {"bsonType": "objectId"}, "tolerance": {"bsonType": "double"}}},
        [([("space", ASCENDING), ("campaign", ASCENDING)], {"name": "space_campaign"})],
    ),
]
SPECS = {spec.name: spec for spec in COLLECTIONS}
GRIDFS_BUCKET = "blobs"
GRIDFS_INDEXES = [([("metadata.sha256", ASCENDING)], {"name": "sha256"}),
                  ([("uploadDate", DESCENDING)], {"name": "upload_date"})]
#: GridFS's own chunk index (pymongo creates it at the first upload; created here with the bucket).
GRIDFS_CHUNK_INDEXES = [([("files_id", ASCENDING), ("n", ASCENDING)], {"unique": True, "name": "files_id_1_n_1"})]


@dataclass
class SchemaReport:
    created: list[str]
    indexes: dict[str, list[str]]
    server_validators: bool


def _install_validator(db, spec: CollectionSpec) -> bool:
    try:
        db.command("collMod", spec.name, validator={"$jsonSchema": spec.validator}, validationLevel="moderate")
        return True
    except pymongo.errors.OperationFailure as exc:
        if exc.code in (238, 59, 115):  # NotImplemented / CommandNotFound / CommandNotSupported (FerretDB)
            return False
        raise


def init_schema(db) -> SchemaReport:
    """Create the results collections, indexes and (where supported) validators. Idempotent."""
    existing = set(db.list_collection_names())
    created, indexes, validators = [], {}, True
    for spec in COLLECTIONS:
        if spec.name not in existing:
            db.create_collection(spec.name)
            created.append(spec.name)
        validators = _install_validator(db, spec) and validators
        indexes[spec.name] = [db[spec.name].create_index(keys, **opts) for keys, opts in spec.indexes]
    # the GridFS bucket too, so that every collection exists from the start (the embedded server's
    # look-up index is made for the collections that exist, db/embedded/id_index.py)
    for name, specs in ((f"{GRIDFS_BUCKET}.files", GRIDFS_INDEXES), (f"{GRIDFS_BUCKET}.chunks", GRIDFS_CHUNK_INDEXES)):
        if name not in existing:
            db.create_collection(name)
            created.append(name)
        indexes[name] = [db[name].create_index(keys, **opts) for keys, opts in specs]
    return SchemaReport(created=created, indexes=indexes, server_validators=validators)
