"""Blobs (frozen models, archives) in GridFS with sha256 checksums, so workers share no filesystem."""

from __future__ import annotations

from pathlib import Path

import gridfs
from bson import ObjectId

from firegen.db.errors import IntegrityError
from firegen.db.hashing import sha256_bytes
from firegen.db.schema import GRIDFS_BUCKET


class BlobStore:
    """Content-addressed GridFS bucket: the same bytes are stored once (by sha256)."""

    def __init__(self, db, bucket: str = GRIDFS_BUCKET):
        self.db = db
        self.fs = gridfs.GridFS(db, collection=bucket)
        self.files = db[f"{bucket}.files"]

    def put(self, data: bytes | Path, filename: str, metadata: dict | None = None) -> tuple[ObjectId, str]:
        """Store ``data`` (bytes or a file path); return ``(file_id, sha256)``.

        An identical blob already stored is reused, so a rerun task uploads nothing twice.
        """
        if isinstance(data, (str, Path)):
            data = Path(data).read_bytes()
        digest = sha256_bytes(data)
        existing = self.files.find_one({"metadata.sha256": digest}, {"_id": 1})
        if existing:
            return existing["_id"], digest
        file_id = self.fs.put(data, filename=filename, metadata={**(metadata or {}), "sha256": digest})
        return file_id, digest

    def get(self, file_id: ObjectId) -> bytes:
        """The blob's bytes, after checking them against the recorded sha256."""
        grid_out = self.fs.get(file_id)
        data = grid_out.read()
        expected = (grid_out.metadata or {}).get("sha256")
        if expected != sha256_bytes(data):
            raise IntegrityError(f"blob {file_id} ({grid_out.filename}) fails its sha256 check: stored {expected}, "
                                 f"read {sha256_bytes(data)}. Fix: re-upload it from the task that produced it.")
        return data

    def fetch(self, file_id: ObjectId, dest: Path) -> Path:
        """Write the checked blob to ``dest`` and return it."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.get(file_id))
        return dest
