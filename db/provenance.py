"""Provenance queries: look-ups by ``_id`` only (indexed on MongoDB and on firegen's embedded FerretDB),
also runnable in mongosh.

See ``db/README.md`` for the same queries in mongosh syntax.
"""

from __future__ import annotations

from collections.abc import Sequence

from bson import ObjectId

from firegen.db.dataset_pages import LABELER_FIELDS, member_ids, read_members, size_of
from firegen.campaign.errors import FiregenError
from firegen.db.lookup import find_by_ids


def _oid(value: str | ObjectId, what: str) -> ObjectId:
    try:
        return ObjectId(value)
    except Exception:
        raise FiregenError(f"{what} id {value!r} is not an ObjectId (24 hex digits). "
                           "Fix: copy it from `firegen status` or the models/configurations collection.") from None


def labeler_summary(labels) -> dict:
    """``settings_hash`` -> {code, version, kind, settings, n} over ``{"label": ...}`` documents."""
    out: dict = {}
    for doc in labels:
        label = doc.get("label") or {}
        out.setdefault(label.get("settings_hash"), {"code": label.get("code"), "version": label.get("version"),
                                                    "kind": label.get("kind"), "settings": label.get("settings"),
                                                    "n": 0})["n"] += 1
    return out


def model_provenance(db, model_id, limit: int | None = 100, skip: int = 0) -> dict:
    """The model, its dataset snapshot, the labeler settings behind it and its labels, a page at a time.

    Args:
        db: The results database.
        model_id: The model's id (ObjectId or 24 hex digits).
        limit: Labels to return (None: all of them).
        skip: Labels to skip first (the dataset's order).

    Returns:
        dict: ``model`` (without its deepmd input), ``dataset`` (a legacy one without its id list), ``n_labels``,
        ``labelers`` (settings hash -> code, version, settings, count, over the whole dataset),
        ``labels`` (this page: configuration id, hash, origin, status and label without the arrays,
        as they were when the snapshot was taken) and ``next_skip`` (None after the last page).
    """
    model = db.models.find_one({"_id": _oid(model_id, "model")}, {"input": 0})
    if model is None:
        raise FiregenError(f"no model {model_id} in this database. Fix: check the id with `firegen status`.")
    dataset = db.datasets.find_one({"_id": model["dataset_id"]}) or {}
    size = size_of(dataset)
    labelers = dataset.get("labelers")
    if labelers is None and dataset:  # a snapshot taken before datasets carried the summary
        labelers = dataset["labelers"] = labeler_summary(find_by_ids(db.configurations, member_ids(db, dataset), {
            f"label.{k}": 1 for k in LABELER_FIELDS}))
    labels = read_members(db, dataset, skip, limit) if dataset else []
    stop = size if limit is None else min(size, skip + limit)
    dataset.pop("configuration_ids", None)
    return {"model": model, "dataset": dataset or None, "n_labels": size, "labelers": labelers, "labels": labels,
            "next_skip": stop if stop < size else None}


def holding_snapshots(db, paged_by: Sequence, projection=None) -> list[dict]:
    """The dataset snapshots that hold a configuration whose ``datasets`` is ``paged_by``: the snapshots
    that paged it and every later one sharing their pages (snapshots are cumulative); by iteration.
    Configurations tagged by every snapshot that held them (before snapshots tagged only what they
    paged) are answered the same."""
    paged_by = list(paged_by)
    if not paged_by:
        return []
    # a snapshot lists itself in parts.datasets when it paged anything; _id covers those stored before pages
    query = {"$or": [{"_id": {"$in": paged_by}}, {"parts.datasets": {"$in": paged_by}}]}
    return list(db.datasets.find(query, {**(projection or {}), "iteration": 1}).sort("iteration", 1))


def configuration_provenance(db, config_id) -> dict:
    """Where a configuration came from (campaign, stage, condition, models, Firework, frame), its label, the
    dataset snapshot that first held it (``first_snapshot``: ``_id`` and ``iteration``; in an asynchronous
    campaign a label that came back late joins a later snapshot than the one after its pick), and the models
    later trained on it (sorted by iteration and member)."""
    doc = db.configurations.find_one({"_id": _oid(config_id, "configuration")}, {"positions": 0, "label.forces": 0})
    if doc is None:
        raise FiregenError(f"no configuration {config_id} in this database.")
    brief = {"iteration": 1, "member": 1, "seed": 1, "sha256": 1}
    explored_with = find_by_ids(db.models, doc["origin"].get("model_ids", []), brief)
    datasets = holding_snapshots(db, doc.get("datasets", []), {"model_ids": 1, "models": 1, "iteration": 1})
    trained = [{"_id": ObjectId(k), **v} for d in datasets for k, v in (d.get("models") or {}).items()]
    # snapshots taken before datasets held their models' briefs, or listed their models at all
    older = [d for d in datasets if "models" not in d]
    trained += find_by_ids(db.models, [m for d in older for m in d.get("model_ids", [])], brief)
    legacy = [d["_id"] for d in older if "model_ids" not in d]
    if legacy:
        trained += list(db.models.find({"dataset_id": {"$in": legacy}}, brief))
    trained.sort(key=lambda m: (m.get("iteration", 0), m.get("member", 0)))
    first = min(datasets, key=lambda d: d.get("iteration", 0), default=None)
    first_snapshot = {"_id": first["_id"], "iteration": first.get("iteration")} if first else None
    return {"configuration": doc, "explored_with": explored_with, "first_snapshot": first_snapshot,
            "trained_models": trained}


def failed_labels(db, campaign: str) -> list[dict]:
    """Every configuration whose label failed, with the reasons of each attempt."""
    return list(db.configurations.find({"campaign": campaign, "status": "label_failed"},
                                       {"origin": 1, "label_attempts": 1, "hash": 1}))
