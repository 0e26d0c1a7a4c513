"""The embedded database (FerretDB 1.24 on SQLite) and everything firegen does because of it.

firegen's general modules are plain pymongo/FireWorks code. What the embedded engine needs beyond
MongoDB lives in this package and is reached through the :class:`Capabilities` of a client:

* ``server`` / ``install``: firegen's own FerretDB process and a checked binary;
* ``write_lock``: FerretDB 1.x runs updates as unlocked read-modify-write, so the read-modify-write
  calls of every client on this host are serialised by a host-wide ``flock`` (also loaded into the
  venv's plain ``rlaunch``/``lpad`` by a ``.pth`` hook, only while an embedded server is registered);
* ``id_index``: FerretDB pushes only a lone ``{_id}`` filter down to SQLite and its own ``_id`` index
  does not serve it; firegen adds an index that does, on every collection;
* ``fireworks_keys``: FireWorks' Fireworks and launches addressed by a derived ``_id``;
* ``lostruns``: ``detect_lostruns`` without ``$elemMatch`` and ``$lookup``.

FerretDB stores no nested arrays and has no ``$jsonSchema`` validators: firegen stores arrays flat
and validates on the client on every engine (:mod:`firegen.db.validation`). Measured on this
machine: FerretDB's PostgreSQL handler loses concurrent updates and scans tables the same way, so
none of this would go away with it.
"""

# nothing is imported here: the .pth hook of the venv imports write_lock at every interpreter start
