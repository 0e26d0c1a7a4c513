"""Reading and updating documents by ``_id``, the one look-up both MongoDB and the embedded FerretDB answer
from an index."""

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


def update_by_ids(collection, ids, update: dict) -> int:
    """Apply ``update`` to the documents with these ``_id``s; returns how many changed.

    A server with ``indexed_filters`` (MongoDB): one ``update_many`` with ``{_id: {$in: ...}}`` per 1000
    ids. FerretDB 1.24 reads and decodes the whole collection for that filter (and for each statement of
    a multi-statement update), so there: one ``update_one`` per id, which it answers from firegen's
    ``_id`` look-up index. Its cost follows the ids, not the collection (``benchmarks/README.md``,
    "soak.py": at 2,500 configurations one id took 3.5 ms, one ``$in`` update 4.1 s).
    """
    ids = list(ids)
    if not ids:
        return 0
    if not capabilities(collection.database.client).indexed_filters:
        return sum(collection.update_one({"_id": i}, update).modified_count for i in ids)
    return sum(collection.update_many({"_id": {"$in": ids[k:k + 1000]}}, update).modified_count
               for k in range(0, len(ids), 1000))
