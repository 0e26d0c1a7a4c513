"""Results schema, connections and the embedded database server."""
