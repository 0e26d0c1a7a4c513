"""What a database server can do, asked by the general code instead of naming the engine."""


from __future__ import annotations

import weakref
from dataclasses import dataclass

from firegen.db.embedded.fireworks_keys import key_launchpad
from firegen.db.embedded.write_lock import exclusive

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Capabilities:
    """What a database server does, as the general code needs to know it.

    Attributes:
        engine: ``"mongodb"`` or ``"ferretdb"``.
        indexed_filters: secondary indexes and ``$in`` on ``_id`` are served from an index; False on
            FerretDB 1.24, where only a lone ``{_id: value}`` filter is (so read by ``_id``, one at a time).
        atomic_updates: a conditional update is atomic on the server; False on FerretDB 1.x (take the
            host-wide write lock around a read and the write that depends on it).
    """

    engine: str
    indexed_filters: bool
    atomic_updates: bool


MONGODB = Capabilities("mongodb", indexed_filters=True, atomic_updates=True)
FERRETDB = Capabilities("ferretdb", indexed_filters=False, atomic_updates=False)


def capabilities(client) -> Capabilities:
    """The capabilities of a pymongo client's server (one ``buildInfo`` round trip per client, cached)."""
    if client not in _CACHE:
        _CACHE[client] = FERRETDB if "ferretdbVersion" in client.server_info() else MONGODB
    return _CACHE[client]


def update_unless(collection, doc_id, field: str, value, update: dict) -> bool:
    """Apply ``update`` to the document ``doc_id`` unless its ``field`` already equals ``value``, atomically
    for every client; True when the document was changed.

    MongoDB: one conditional ``update_one``. FerretDB: a read and an update by ``_id`` (the only look-up it
    indexes) under the host-wide write lock, since its conditional update is not atomic.
    """
    if capabilities(collection.database.client).atomic_updates:
        return collection.update_one({"_id": doc_id, field: {"$ne": value}}, update).modified_count == 1
    with exclusive(collection):
        doc = collection.find_one({"_id": doc_id}, {field: 1})
        if doc is None or doc.get(field) == value:
            return False
        return collection.update_one({"_id": doc_id}, update).modified_count == 1


def adapt_launchpad(lp):
    """``lp`` (a FireWorks LaunchPad) as firegen uses it on its server: on FerretDB with its Fireworks and
    launches addressed by ``_id`` (:mod:`firegen.db.embedded.fireworks_keys`); on MongoDB unchanged."""
    return key_launchpad(lp) if capabilities(lp.connection).engine == "ferretdb" else lp
