"""Provenance queries: look-ups by ``_id`` only (indexed on MongoDB and on firegen's embedded FerretDB),
also runnable in mongosh.

See ``db/README.md`` for the same queries in mongosh syntax.
"""

from __future__ import annotations

from bson import ObjectId

from firegen.db.errors import FiregenError
from firegen.db.lookup import find_by_ids

LABEL_VIEW = {"origin": 1, "status": 1, "hash": 1, "label.code": 1, "label.version": 1, "label.kind": 1,
              "label.settings": 1, "label.settings_hash": 1, "label.energy": 1, "label.walltime": 1, "label.host": 1}


def _oid(value: str | ObjectId, what: str) -> ObjectId:
    try:
        return ObjectId(value)
    except Exception:
        raise FiregenError(f"{what} id {value!r} is not an ObjectId (24 hex digits). "
                           "Fix: copy it from `firegen status` or the models/configurations collection.") from None


def labeler_summary(labels) -> dict:
    """``settings_hash`` -> {code, version, settings, n} over label documents (or ``{"label": ...}`` documents)."""
    out: dict = {}
    for doc in labels:
        label = doc.get("label") or {}
        out.setdefault(label.get("settings_hash"), {"code": label.get("code"), "version": label.get("version"),
                                                    "settings": label.get("settings"), "n": 0})["n"] += 1
    return out


def model_provenance(db, model_id, limit: int | None = 100, skip: int = 0) -> dict:
    """The model, its dataset snapshot, the labeler settings behind it and its labels, a page at a time.

    Args:
        db: The results database.
        model_id: The model's id (ObjectId or 24 hex digits).
        limit: Labels to return (None: all of them).
        skip: Labels to skip first (the dataset's order).

    Returns:
        dict: ``model`` (without its deepmd input), ``dataset`` (without its id list), ``n_labels``,
        ``labelers`` (settings hash -> code, version, settings, count, over the whole dataset),
        ``labels`` (this page, :data:`LABEL_VIEW` fields) and ``next_skip`` (None after the last page).
    """
    model = db.models.find_one({"_id": _oid(model_id, "model")}, {"input": 0})
    if model is None:
        raise FiregenError(f"no model {model_id} in this database. Fix: check the id with `firegen status`.")
    dataset = db.datasets.find_one({"_id": model["dataset_id"]})
    ids = dataset.pop("configuration_ids") if dataset else []
    stop = len(ids) if limit is None else min(len(ids), skip + limit)
    labels = find_by_ids(db.configurations, ids[skip:stop], LABEL_VIEW)
    labelers = dataset.get("labelers") if dataset else None
    if labelers is None:  # a snapshot taken before datasets carried the summary
        labelers = labeler_summary(labels if (skip, stop) == (0, len(ids)) else
                                   find_by_ids(db.configurations, ids, {"label.settings_hash": 1, "label.code": 1,
                                                                        "label.version": 1, "label.settings": 1}))
    return {"model": model, "dataset": dataset, "n_labels": len(ids), "labelers": labelers, "labels": labels,
            "next_skip": stop if stop < len(ids) else None}


def configuration_provenance(db, config_id) -> dict:
    """Where a configuration came from (campaign, stage, condition, models, Firework, frame), its label,
    and the models later trained on it (sorted by iteration and member)."""
    doc = db.configurations.find_one({"_id": _oid(config_id, "configuration")}, {"positions": 0, "label.forces": 0})
    if doc is None:
        raise FiregenError(f"no configuration {config_id} in this database.")
    brief = {"iteration": 1, "member": 1, "seed": 1, "sha256": 1}
    explored_with = find_by_ids(db.models, doc["origin"].get("model_ids", []), brief)
    datasets = find_by_ids(db.datasets, doc.get("datasets", []), {"model_ids": 1})
    model_ids = [m for d in datasets for m in d.get("model_ids", [])]
    trained = find_by_ids(db.models, model_ids, brief)
    legacy = [d["_id"] for d in datasets if "model_ids" not in d]
    if legacy:  # snapshots taken before datasets listed their models
        trained += list(db.models.find({"dataset_id": {"$in": legacy}}, brief))
    trained.sort(key=lambda m: (m.get("iteration", 0), m.get("member", 0)))
    return {"configuration": doc, "explored_with": explored_with, "trained_models": trained}


def failed_labels(db, campaign: str) -> list[dict]:
    """Every configuration whose label failed, with the reasons of each attempt."""
    return list(db.configurations.find({"campaign": campaign, "status": "label_failed"},
                                       {"origin": 1, "label_attempts": 1, "hash": 1}))
