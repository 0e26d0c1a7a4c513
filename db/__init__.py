"""Results schema, connections and the embedded database server."""

from firegen.db.embedded import write_lock as _write_lock

if _write_lock.registered():  # an embedded FerretDB runs on this host: serialize its read-modify-writes
    _write_lock.install_lazy()
