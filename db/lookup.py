"""Reading documents by ``_id``, the one look-up both MongoDB and the embedded FerretDB answer from an index."""

from __future__ import annotations

from firegen.db.embedded.capabilities import capabilities


def find_by_ids(collection, ids, projection=None) -> list[dict]:
    """The documents with these ``_id``s, in the order given (ids not found are left out).

    A server with ``indexed_filters`` (MongoDB) answers ``{_id: {$in: ...}}`` from its ``_id`` index
    (batches of 1000). FerretDB 1.24 reads the whole collection for any filter but a lone
    ``{_id: value}``, which the embedded server answers from firegen's ``_id`` look-up index
    (:mod:`firegen.db.embedded.id_index`): one ``find_one`` per id there.
    """
    ids = list(ids)
    if not ids:
        return []
    if not capabilities(collection.database.client).indexed_filters:
        docs = (collection.find_one({"_id": i}, projection) for i in ids)
        return [d for d in docs if d is not None]
    found = {}
    for k in range(0, len(ids), 1000):
        found.update((d["_id"], d) for d in collection.find({"_id": {"$in": ids[k:k + 1000]}}, projection))
    return [found[i] for i in ids if i in found]
