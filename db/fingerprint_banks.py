"""The fingerprints of a campaign's labeled and selected configurations, one part per iteration.

Deduplication compares an iteration's candidates with every configuration the campaign has labeled or
selected. Their fingerprints (see :mod:`firegen.workflows.steps.fingerprint`) are kept in parts: the
``initial`` part (the labels the first committee trained on) and one part per iteration (the
configurations its ``select`` picked). A part is written once and never changes; the matrix of a part
(``float32``, one row per configuration) is a GridFS blob, so a part holds any number of rows. A
select reads every part of its campaign (one small document per iteration plus its blob), so its reads
follow the number of iterations, not of configurations.

Document: ``{_id: "<campaign>/<part>", campaign, part, space, type_map, ids: [ObjectId], rows, file_id}``
(the ``initial`` part also ``tolerance``: the campaign's duplicate distance, measured on its starting frames);
``space`` names the fingerprint settings (parts of another space are not compared).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from firegen.db.files import BlobStore
from firegen.db.validation import validate_document

COLLECTION = "fingerprint_banks"


def part_id(campaign: str, part: str | int) -> str:
    """The ``_id`` of one part: ``"<campaign>/initial"`` or ``"<campaign>/<iteration>"``."""
    return f"{campaign}/{part}"


def has_part(db, campaign: str, part: str | int) -> bool:
    return db[COLLECTION].find_one({"_id": part_id(campaign, part)}, {"_id": 1}) is not None


def campaign_tolerance(db, campaign: str) -> float | None:
    """The duplicate tolerance the campaign's ``initial`` part keeps (None: none kept)."""
    doc = db[COLLECTION].find_one({"_id": part_id(campaign, "initial")}, {"tolerance": 1})
    return (doc or {}).get("tolerance")


def store_part(db, blobs: BlobStore, campaign: str, part: str | int, space: str, type_map: Sequence[str],
               ids: Sequence, fps: np.ndarray, tolerance: float | None = None) -> None:
    """Write one part (a rerun of the same select overwrites it with the same content); the ``initial`` part
    also keeps the campaign's duplicate ``tolerance`` (a fingerprint distance), when it has one."""
    fps = np.ascontiguousarray(fps, dtype=np.float32)
    if len(fps) != len(ids):
        raise ValueError(f"{len(fps)} fingerprints for {len(ids)} configurations")
    buf = io.BytesIO()
    np.save(buf, fps, allow_pickle=False)
    file_id, _ = blobs.put(buf.getvalue(), f"fingerprints-{campaign}-{part}.npy",
                           metadata={"campaign": campaign, "kind": "fingerprints"})
    doc = {"campaign": campaign, "part": str(part), "space": space, "type_map": list(type_map),
           "ids": list(ids), "rows": int(len(fps)), "file_id": file_id}
    if tolerance is not None:
        doc["tolerance"] = float(tolerance)
    validate_document(COLLECTION, doc)
    db[COLLECTION].replace_one({"_id": part_id(campaign, part)}, doc, upsert=True)


_MATRICES: dict = {}  # file id -> matrix: parts never change, a worker reads each once


def read_parts(db, blobs: BlobStore, space: str, campaigns: Sequence[str] | None = None,
               type_map: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> tuple[list, np.ndarray]:
    """``(ids, fingerprints)`` of every part in ``space``: of ``campaigns``, or of every campaign with this
    ``type_map`` (cross-campaign deduplication), leaving out the parts whose ``_id`` is in ``exclude``."""
    query: dict = {"space": space}
    if campaigns is not None:
        query["campaign"] = {"$in": list(campaigns)}
    if type_map is not None:
        query["type_map"] = list(type_map)
    ids: list = []
    mats = []
    for doc in db[COLLECTION].find(query, {"ids": 1, "file_id": 1}).sort("_id", 1):
        if doc["_id"] in exclude:
            continue
        key = doc["file_id"]
        if key not in _MATRICES:
            _MATRICES[key] = np.load(io.BytesIO(blobs.get(key)), allow_pickle=False)
        ids.extend(doc["ids"])
        mats.append(_MATRICES[key])
    matrix = np.concatenate(mats) if mats else np.zeros((0, 0), np.float32)
    return ids, matrix
