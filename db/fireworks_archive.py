"""Finished iterations moved out of the collections FireWorks scans, into a LaunchPad of their own.

A campaign queues one FireWorks workflow per iteration (:mod:`firegen.workflows.tasks`). Every
checkout (``{state: READY}``), workflow refresh (``{nodes: fw_id}``) and idle poll of a worker
reads the ``fireworks`` and ``workflows`` collections; MongoDB answers from indexes, the embedded
FerretDB reads every document. So once an iteration's workflow is COMPLETED, its Fireworks,
launches and workflow document move to the same collections of the database ``<name>_archive``
beside the LaunchPad's: the live collections hold about two iterations, whatever the campaign's
length, and the archive is itself a LaunchPad (``firegen db launchpad --archive -o archive.yaml``,
then ``lpad -l archive.yaml get_fws ...``).

A move copies first (inserts; a document copied by an earlier, interrupted move is left as it is)
and deletes after, so a worker killed half-way leaves copies in both places and the next move
finishes it; nothing is ever only in flight. (Inserts, not a bulk of upserts: FerretDB 1.24 hangs
on an update command of about 100 statements.)
"""

from __future__ import annotations

import logging

from pymongo.errors import BulkWriteError, OperationFailure

ARCHIVE_SUFFIX = "_archive"
COLLECTIONS = ("fireworks", "launches", "workflows")
_log = logging.getLogger(__name__)


def archive_database(lp):
    """The archive database of LaunchPad ``lp`` (``<lp.db.name>_archive`` on the same server)."""
    return archive_of(lp.db)


def archive_of(db):
    """The archive database beside the LaunchPad database ``db`` (a pymongo ``Database``)."""
    return db.client[db.name + ARCHIVE_SUFFIX]


def archive_completed(lp, campaign: str, keep: set[int] | None = None) -> list[int]:
    """Move every COMPLETED workflow of ``campaign`` (but those holding a Firework of ``keep``) to the
    archive; return the ids of the Fireworks moved. A server that refuses the archive database
    (MongoDB without rights on it) leaves everything where it is, with a warning."""
    keep = keep or set()
    finished = [wf for wf in lp.workflows.find({"metadata.firegen_campaign": campaign, "state": "COMPLETED"})
                if not keep.intersection(wf["nodes"])]
    if not finished:
        return []
    fw_ids = sorted({n for wf in finished for n in wf["nodes"]})
    fireworks = list(lp.fireworks.find({"fw_id": {"$in": fw_ids}}))
    launch_ids = sorted({i for fw in fireworks for i in fw.get("launches", []) + fw.get("archived_launches", [])})
    launches = list(lp.launches.find({"launch_id": {"$in": launch_ids}})) if launch_ids else []
    archive = archive_database(lp)
    try:
        for name, docs in (("workflows", finished), ("fireworks", fireworks), ("launches", launches)):
            if docs:
                _insert_missing(archive[name], docs)
    except OperationFailure as exc:
        _log.warning("could not write the archive database %s (%s); finished iterations stay in the LaunchPad",
                     archive.name, exc)
        return []
    for name, docs in (("launches", launches), ("fireworks", fireworks), ("workflows", finished)):
        if docs:
            lp.db[name].delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
    return fw_ids


def iteration_queued(lp, campaign: str, iteration: int) -> bool:
    """Whether iteration ``iteration`` of ``campaign`` has a workflow, live or archived."""
    return workflow_queued(lp, {"firegen_campaign": campaign, "firegen_iteration": iteration})


def add_once(lp, wf) -> bool:
    """Add ``wf`` to ``lp`` unless a workflow with its metadata is there (or archived); True when added."""
    if workflow_queued(lp, wf.metadata):
        return False
    lp.add_wf(wf)
    return True


def workflow_queued(lp, metadata: dict) -> bool:
    """Whether a workflow with this ``metadata`` (every key equal) is on the LaunchPad or in its archive."""
    query = {f"metadata.{k}": v for k, v in metadata.items()}
    return bool(lp.workflows.find_one(query, {"_id": 1}) or archive_database(lp)["workflows"].find_one(query, {"_id": 1}))


def _insert_missing(collection, docs: list[dict]) -> None:
    """Insert ``docs``; those already there (an interrupted earlier move) are left as they are."""
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
            raise


def find_firework(db, query: dict, projection=None) -> dict | None:
    """The first Firework matching ``query`` in the LaunchPad database ``db`` or, once archived, in its archive."""
    return db["fireworks"].find_one(query, projection) or archive_of(db)["fireworks"].find_one(query, projection)
