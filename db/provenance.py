"""Provenance queries: each answer is one indexed query (plus id look-ups), also runnable in mongosh.

See ``db/README.md`` for the same queries in mongosh syntax.
"""

from __future__ import annotations

from bson import ObjectId

from firegen.db.errors import FiregenError

LABEL_VIEW = {"origin": 1, "status": 1, "hash": 1, "label.code": 1, "label.version": 1, "label.kind": 1,
              "label.settings": 1, "label.settings_hash": 1, "label.energy": 1, "label.walltime": 1, "label.host": 1}


def _oid(value: str | ObjectId, what: str) -> ObjectId:
    try:
        return ObjectId(value)
    except Exception:
        raise FiregenError(f"{what} id {value!r} is not an ObjectId (24 hex digits). "
                           "Fix: copy it from `firegen status` or the models/configurations collection.") from None


def model_provenance(db, model_id) -> dict:
    """The model, its dataset snapshot and every label behind it (with the labeler settings)."""
    model = db.models.find_one({"_id": _oid(model_id, "model")}, {"input": 0})
    if model is None:
        raise FiregenError(f"no model {model_id} in this database. Fix: check the id with `firegen status`.")
    dataset = db.datasets.find_one({"_id": model["dataset_id"]}, {"configuration_ids": 0})
    labels = list(db.configurations.find({"datasets": model["dataset_id"]}, LABEL_VIEW))
    settings = {}
    for doc in labels:
        label = doc.get("label") or {}
        settings.setdefault(label.get("settings_hash"), {"code": label.get("code"), "version": label.get("version"),
                                                         "settings": label.get("settings"), "n": 0})["n"] += 1
    return {"model": model, "dataset": dataset, "labels": labels, "labelers": settings}


def configuration_provenance(db, config_id) -> dict:
    """Where a configuration came from (campaign, stage, condition, models, Firework, frame), its label,
    and the models later trained on it."""
    doc = db.configurations.find_one({"_id": _oid(config_id, "configuration")}, {"positions": 0, "label.forces": 0})
    if doc is None:
        raise FiregenError(f"no configuration {config_id} in this database.")
    origin = doc["origin"]
    explored_with = list(db.models.find({"_id": {"$in": origin.get("model_ids", [])}},
                                        {"iteration": 1, "member": 1, "seed": 1, "sha256": 1}))
    trained = list(db.models.find({"dataset_id": {"$in": doc.get("datasets", [])}},
                                  {"iteration": 1, "member": 1, "sha256": 1}).sort([("iteration", 1), ("member", 1)]))
    return {"configuration": doc, "explored_with": explored_with, "trained_models": trained}


def failed_labels(db, campaign: str) -> list[dict]:
    """Every configuration whose label failed, with the reasons of each attempt."""
    return list(db.configurations.find({"campaign": campaign, "status": "label_failed"},
                                       {"origin": 1, "label_attempts": 1, "hash": 1}))
