"""Reading documents by ``_id``, the one look-up both MongoDB and the embedded FerretDB answer from an index."""

from __future__ import annotations

import weakref

_FERRETDB: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_ferretdb(client) -> bool:
    """Whether a pymongo client talks to FerretDB (its ``buildInfo`` has ``ferretdbVersion``); cached per client."""
    if client not in _FERRETDB:
        _FERRETDB[client] = "ferretdbVersion" in client.server_info()
    return _FERRETDB[client]


def find_by_ids(collection, ids, projection=None) -> list[dict]:
    """The documents with these ``_id``s, in the order given (ids not found are left out).

    MongoDB answers ``{_id: {$in: ...}}`` from its ``_id`` index (batches of 1000). FerretDB 1.24
    reads the whole collection for any filter but a lone ``{_id: value}``, which the embedded server
    answers from firegen's ``_id`` look-up index (:mod:`firegen.db.ferretdb_sqlite`): one
    ``find_one`` per id there.
    """
    ids = list(ids)
    if not ids:
        return []
    if is_ferretdb(collection.database.client):
        docs = (collection.find_one({"_id": i}, projection) for i in ids)
        return [d for d in docs if d is not None]
    found = {}
    for k in range(0, len(ids), 1000):
        found.update((d["_id"], d) for d in collection.find({"_id": {"$in": ids[k:k + 1000]}}, projection))
    return [found[i] for i in ids if i in found]
