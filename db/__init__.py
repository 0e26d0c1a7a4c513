"""Results schema, connections and the embedded database server."""

from firegen.db import ferretdb_guard as _ferretdb_guard

_ferretdb_guard.install_lazy()
