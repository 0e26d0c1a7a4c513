"""FireWorks' ``fireworks`` and ``launches`` documents keyed by ``_id`` on the embedded FerretDB.

FireWorks reads and writes a Firework as ``{fw_id: n}`` and a launch as ``{launch_id: n}``: about
25 such calls per launch (checkout, three pings, completion, the workflow refresh). MongoDB answers
them from the indexes ``lpad tuneup`` builds. FerretDB 1.24 pushes only a lone ``{_id: <ObjectId or
string>}`` filter down to SQLite (which firegen's look-up index answers, :mod:`firegen.db.embedded.id_index`)
and reads and decodes every document of the collection for any other filter: 7 ms per launch look-up
at 30 launches, growing with every launch the database holds.

:func:`key_launchpad` replaces a LaunchPad's two collections by :class:`KeyedCollection`, which

* gives each document it inserts an ``_id`` derived from its integer id (:func:`keyed_id`);
* sends a filter that is exactly ``{fw_id: n}`` (``{launch_id: n}``) or ``{fw_id: {$in: [n]}}`` as
  ``{_id: keyed_id(n)}``, and answers ``{$in: []}`` without reading anything;
* falls back to the original filter when the derived ``_id`` finds nothing, so documents stored
  without one (``lpad add`` of stock FireWorks, databases from before) are found as before; a
  write that falls back runs under the server's write lock (:func:`firegen.db.embedded.write_lock.exclusive`).

Every other call (other filters, deletes, aggregations) goes to pymongo unchanged. ``firegen
worker`` and the LaunchPads of the ``firegen`` commands use it on the embedded FerretDB
(:func:`~firegen.db.embedded.capabilities.adapt_launchpad`); a LaunchPad on MongoDB is left alone.
"""

from __future__ import annotations

from bson import ObjectId
from pymongo.collection import Collection

from firegen.db.embedded.write_lock import exclusive

#: collection -> (first two bytes of its derived ids, its integer key). ObjectIds that pymongo or a
#: server makes start with a timestamp; 0xfff1... is the year 2106, so no generated id collides.
KEYS = {"fireworks": (b"\xff\xf1", "fw_id"), "launches": (b"\xff\xf2", "launch_id")}
_NOTHING = {"_id": "firegen: no such document"}  # an indexed look-up that finds nothing
_EMPTY = object()


def keyed_id(collection: str, n: int) -> ObjectId:
    """The ``_id`` of the document with integer id ``n`` (``fw_id`` / ``launch_id``) in ``collection``."""
    tag, _ = KEYS[collection]
    return ObjectId(tag + int(n).to_bytes(10, "big"))


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**80


class KeyedCollection(Collection):
    """A pymongo collection of FireWorks documents addressed by their derived ``_id`` (module docstring)."""

    def __init__(self, database, name: str):
        super().__init__(database, name)
        self.key = KEYS[name][1]

    def keyed(self, n: int) -> dict:
        return {"_id": keyed_id(self.name, n)}

    def _key_of(self, filter):
        """``n`` for ``{key: n}`` or ``{key: {$in: [n]}}``, ``_EMPTY`` for ``{key: {$in: []}}``, else None."""
        if not isinstance(filter, dict) or list(filter) != [self.key]:
            return None
        return self._key_value(filter)

    def _key_value(self, filter):
        value = filter[self.key]
        if isinstance(value, dict):
            ids = value.get("$in")
            if list(value) != ["$in"] or not isinstance(ids, (list, tuple)) or len(ids) > 1:
                return None
            if not ids:
                return _EMPTY
            value = ids[0]
        return value if _is_id(value) else None

    def _stamped(self, doc):
        if isinstance(doc, dict) and "_id" not in doc and _is_id(doc.get(self.key)):
            doc["_id"] = keyed_id(self.name, doc[self.key])
        return doc

    # reads ---------------------------------------------------------------------------------------
    def find(self, *args, **kwargs):
        filter = args[0] if args else kwargs.get("filter")
        n = self._key_of(filter)
        if n is None:
            return super().find(*args, **kwargs)
        rest = {k: v for k, v in kwargs.items() if k != "filter"}
        if n is _EMPTY:
            return super().find(_NOTHING, *args[1:], **rest)
        if super().find_one(self.keyed(n), {"_id": 1}) is None:  # stored without a derived _id
            return super().find(*args, **kwargs)
        return super().find(self.keyed(n), *args[1:], **rest)

    def find_one(self, filter=None, *args, **kwargs):
        n = self._key_of(filter)
        if n is None:
            return super().find_one(filter, *args, **kwargs)
        if n is _EMPTY:
            return None
        doc = super().find_one(self.keyed(n), *args, **kwargs)
        if doc is not None:
            return doc
        return next(iter(Collection.find(self, filter, *args, **kwargs).limit(-1)), None)

    # writes --------------------------------------------------------------------------------------
    def find_one_and_update(self, filter, update, *args, **kwargs):
        return self._write(super().find_one_and_update, filter, update, args, kwargs, lambda r: r is not None)

    def find_one_and_replace(self, filter, replacement, *args, **kwargs):
        return self._write(super().find_one_and_replace, filter, replacement, args, kwargs, lambda r: r is not None)

    def update_one(self, filter, update, *args, **kwargs):
        return self._write(super().update_one, filter, update, args, kwargs, lambda r: r.matched_count > 0)

    def insert_one(self, document, *args, **kwargs):
        return super().insert_one(self._stamped(document), *args, **kwargs)

    def insert_many(self, documents, *args, **kwargs):
        return super().insert_many([self._stamped(d) for d in documents], *args, **kwargs)

    def _conditions(self, filter):
        """``(n, {field: value})`` for ``{key: n, field: value, ...}`` with plain top-level equalities
        (FireWorks' ``{launch_id: n, state: "RUNNING"}``), else None."""
        if not isinstance(filter, dict) or self.key not in filter or len(filter) < 2:
            return None
        rest = {k: v for k, v in filter.items() if k != self.key}
        if any(k.startswith("$") or "." in k or not isinstance(v, (str, int, float, type(None))) for k, v in rest.items()):
            return None
        n = self._key_value({self.key: filter[self.key]})
        return (n, rest) if n is not None and n is not _EMPTY else None

    def _write(self, method, filter, doc, args, kwargs, hit):
        if args:  # options given by position: unchanged
            return method(filter, doc, *args, **kwargs)
        conditional = self._conditions(filter)
        if conditional is not None and not kwargs.get("upsert"):
            return self._conditional_write(method, filter, doc, kwargs, *conditional)
        n = self._key_of(filter)
        if n is None or n is _EMPTY:
            return method(filter, doc, **kwargs)
        upsert = kwargs.pop("upsert", False)
        with exclusive(self):
            result = method(self.keyed(n), doc, **kwargs)
            if hit(result):
                return result
            result = method(filter, doc, **kwargs)  # a document stored without a derived _id
            if hit(result) or not upsert:
                return result
            return method(self.keyed(n), self._with_key(doc, n), upsert=True, **kwargs)

    def _conditional_write(self, method, filter, doc, kwargs, n: int, conditions: dict):
        """``{key: n, field: value}``: read the document by ``_id`` and write it by ``_id`` when the
        fields match, under the write lock that makes the pair atomic for every client of the server."""
        with exclusive(self):
            stored = super().find_one(self.keyed(n), list(conditions))
            if stored is None:  # stored without a derived _id
                return method(filter, doc, **kwargs)
            if all(stored.get(k) == v for k, v in conditions.items()):
                return method(self.keyed(n), doc, **kwargs)
            return method(_NOTHING, doc, **kwargs)  # no match, answered from the index

    def _with_key(self, doc: dict, n: int) -> dict:
        """``doc`` for an upsert by ``_id``: it must also set the integer key the original filter would have."""
        if not any(k.startswith("$") for k in doc):
            return {**doc, self.key: n}
        if self.key in doc.get("$set", {}):
            return doc
        return {**doc, "$setOnInsert": {**doc.get("$setOnInsert", {}), self.key: n}}


def key_launchpad(lp):
    """Give ``lp`` (a FireWorks LaunchPad on FerretDB) keyed ``fireworks`` and ``launches`` collections;
    returns ``lp``. :func:`firegen.db.embedded.capabilities.adapt_launchpad` calls it for FerretDB only."""
    if not isinstance(lp.fireworks, KeyedCollection):
        lp.fireworks = KeyedCollection(lp.db, "fireworks")
        lp.launches = KeyedCollection(lp.db, "launches")
    return lp
