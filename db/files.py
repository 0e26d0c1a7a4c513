"""Blobs (frozen models, archives) in GridFS with sha256 checksums, so workers share no filesystem.

A worker may keep a local, content-addressed copy of every blob it wrote or read (``cache_dir``,
one file per sha256, written atomically, checked on every read). The gpu worker that trained a
committee then explores with it without reading the models back: on the embedded FerretDB a GridFS
read is a query on ``blobs.chunks`` by ``files_id``, which reads every chunk of every model stored
so far (FerretDB pushes no filter but a lone ``_id`` down to SQLite).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gridfs
from bson import ObjectId

from firegen.db.errors import IntegrityError
from firegen.db.hashing import sha256_bytes
from firegen.db.schema import GRIDFS_BUCKET

#: Environment variable naming a worker's blob cache folder (``firegen worker`` sets it).
BLOB_CACHE_ENV = "FIREGEN_BLOB_CACHE"


class BlobStore:
    """Content-addressed GridFS bucket: the same bytes are stored once (by sha256)."""

    def __init__(self, db, bucket: str = GRIDFS_BUCKET, cache_dir: str | Path | None = None):
        self.db = db
        self.fs = gridfs.GridFS(db, collection=bucket)
        self.files = db[f"{bucket}.files"]
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def _cached(self, digest: str | None) -> bytes | None:
        """The cached bytes of ``digest`` if present and intact (a damaged copy is removed)."""
        if self.cache_dir is None or not digest:
            return None
        path = self.cache_dir / digest
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if sha256_bytes(data) == digest:
            return data
        path.unlink(missing_ok=True)
        return None

    def _cache(self, digest: str, data: bytes) -> None:
        if self.cache_dir is None or (self.cache_dir / digest).exists():
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{digest[:12]}-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.cache_dir / digest)
        except OSError:  # a full or read-only cache only costs a GridFS read next time
            pass

    def put(self, data: bytes | Path, filename: str, metadata: dict | None = None) -> tuple[ObjectId, str]:
        """Store ``data`` (bytes or a file path); return ``(file_id, sha256)``.

        An identical blob already stored is reused, so a rerun task uploads nothing twice.
        """
        if isinstance(data, (str, Path)):
            data = Path(data).read_bytes()
        digest = sha256_bytes(data)
        self._cache(digest, data)
        existing = self.files.find_one({"metadata.sha256": digest}, {"_id": 1})
        if existing:
            return existing["_id"], digest
        file_id = self.fs.put(data, filename=filename, metadata={**(metadata or {}), "sha256": digest})
        return file_id, digest

    def get(self, file_id: ObjectId) -> bytes:
        """The blob's bytes, after checking them against the recorded sha256 (from the cache when it has them)."""
        if self.cache_dir is not None:
            doc = self.files.find_one({"_id": file_id}, {"metadata.sha256": 1})
            data = self._cached(((doc or {}).get("metadata") or {}).get("sha256"))
            if data is not None:
                return data
        grid_out = self.fs.get(file_id)
        data = grid_out.read()
        expected = (grid_out.metadata or {}).get("sha256")
        if expected != sha256_bytes(data):
            raise IntegrityError(f"blob {file_id} ({grid_out.filename}) fails its sha256 check: stored {expected}, "
                                 f"read {sha256_bytes(data)}. Fix: re-upload it from the task that produced it.")
        self._cache(expected, data)
        return data

    def fetch(self, file_id: ObjectId, dest: Path) -> Path:
        """Write the checked blob to ``dest`` and return it."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.get(file_id))
        return dest
