"""The repository API over the results schema: the only code that touches its collections.

Every write is validated against the collection's schema (:mod:`firegen.db.validation`) and is
idempotent where a task may be rerun: configurations are upserted by content hash, models by
(campaign, iteration, member), datasets by (campaign, iteration), blobs by sha256.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from firegen.db.dataset_pages import COLLECTION as PAGES
from firegen.db.dataset_pages import MEMBER_FIELDS, new_pages, parts_with, split_by_previous
from firegen.db.ferretdb_guard import exclusive
from firegen.db.files import BlobStore
from firegen.db.hashing import configuration_id, dataset_hash, structure_hash
from firegen.db.lookup import find_by_ids
from firegen.db.provenance import labeler_summary
from firegen.db.schema import init_schema
from firegen.db.validation import validate_document, validate_label


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def plain(value):
    """Convert numpy scalars/arrays (recursively) into BSON-friendly Python values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


class ResultsStore:
    """Typed access to ``campaigns``, ``iterations``, ``configurations``, ``models``, ``datasets``.

    Args:
        db: a pymongo ``Database`` (usually ``LaunchPad.db``: results live beside the LaunchPad).
        blob_cache: folder for a local content-addressed copy of the blobs (see :mod:`firegen.db.files`).
    """

    def __init__(self, db, blob_cache: str | Path | None = None):
        self.db = db
        self.campaigns = db["campaigns"]
        self.iterations = db["iterations"]
        self.configurations = db["configurations"]
        self.models = db["models"]
        self.datasets = db["datasets"]
        self.blobs = BlobStore(db, cache_dir=blob_cache)

    @classmethod
    def from_launchpad(cls, lp) -> "ResultsStore":
        return cls(lp.db)

    def init(self):
        """Create collections, indexes and validators (idempotent)."""
        return init_schema(self.db)

    # campaigns ---------------------------------------------------------------------------------
    def create_campaign(self, name: str, config: dict, type_map: Sequence[str], **fields) -> dict:
        """Insert the campaign (status ``queued``); an existing campaign of that name is returned as is."""
        doc = plain({"name": name, "config": config, "type_map": list(type_map), "status": "queued",
                     "stage": 0, "iteration": 0, **fields})
        validate_document("campaigns", doc)
        return self.campaigns.find_one_and_update(
            {"name": name}, {"$setOnInsert": {**doc, "created": _now()}}, upsert=True,
            return_document=ReturnDocument.AFTER)

    def get_campaign(self, name: str) -> dict | None:
        return self.campaigns.find_one({"name": name})

    def update_campaign(self, name: str, **fields) -> None:
        self.campaigns.update_one({"name": name}, {"$set": {**plain(fields), "updated": _now()}})

    # configurations ----------------------------------------------------------------------------
    @staticmethod
    def _configuration_doc(campaign: str, digest: str, species, cell, positions, origin: dict,
                           status: str = "candidate", pbc=(True, True, True), model_deviation: dict | None = None,
                           label: dict | None = None) -> dict:
        doc = plain({"campaign": campaign, "hash": digest, "natoms": len(species), "species": list(species),
                     "cell": np.asarray(cell, float).reshape(9), "pbc": [bool(p) for p in np.broadcast_to(pbc, 3)],
                     "positions": np.asarray(positions, float).reshape(-1), "origin": origin, "status": status,
                     "model_deviation": model_deviation, "label": label, "datasets": []})
        validate_document("configurations", doc)
        return doc

    def add_configuration(self, campaign: str, species: Sequence[str], cell, positions, origin: dict,
                          status: str = "candidate", pbc=(True, True, True), model_deviation: dict | None = None,
                          label: dict | None = None) -> tuple[ObjectId, bool]:
        """Store a structure once per campaign; return ``(id, inserted)``.

        A structure already present (same content hash) keeps its first origin and status; the
        call then only returns its id, so reruns and overlapping explorations add nothing.
        """
        return self.add_configurations(campaign, [{"species": species, "cell": cell, "positions": positions,
                                                   "origin": origin, "status": status, "pbc": pbc,
                                                   "model_deviation": model_deviation, "label": label}])[0]

    def add_configurations(self, campaign: str, items: Sequence[dict]) -> list[tuple[ObjectId, bool]]:
        """:meth:`add_configuration` for many structures in one unordered ``insert_many``.

        Each document's ``_id`` is derived from the campaign and its content hash
        (:func:`~firegen.db.hashing.configuration_id`), so no query is needed to tell new structures
        from stored ones: the insert of a stored one fails as a duplicate and is left out.

        Args:
            campaign: The campaign.
            items: Keyword arguments of :meth:`add_configuration` (``species``, ``cell``, ``positions``,
                ``origin`` and optionally ``status``, ``pbc``, ``model_deviation``, ``label``). An item
                with a ``label`` is stored labeled, as :meth:`set_label` would leave it.

        Returns:
            ``(id, inserted)`` per item, in order. A structure stored before, or earlier in ``items``,
            keeps its first document (``inserted`` False).
        """
        docs = []
        for item in items:
            item = dict(item)
            digest = structure_hash(item["species"], item["cell"], item["positions"], item.get("pbc", (True,) * 3))
            if item.get("label") is not None:
                item.update(label=self._label_doc(item["label"]), status="labeled")
            doc = self._configuration_doc(campaign, digest, **item)
            if doc["label"] is not None:
                doc.update(labeled_at=_now(), label_writes=1)
            docs.append(doc)
        if not docs:
            return []
        ids = {d["hash"]: configuration_id(campaign, d["hash"]) for d in docs}
        first = {}  # the first item of each structure
        for doc in docs:
            first.setdefault(doc["hash"], {**doc, "_id": ids[doc["hash"]], "created": _now()})
        new = list(first.values())
        inserted = set(first)
        try:
            self.configurations.insert_many(new, ordered=False)
        except BulkWriteError as exc:  # stored before (by this campaign or a concurrent writer)
            if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
                raise
            lost = {new[err["index"]]["hash"] for err in exc.details["writeErrors"]}
            inserted -= lost
            ids.update(self._stored_ids(campaign, sorted(lost), ids))
        out = []
        for doc in docs:  # only the first item of a structure inserted here counts as inserted
            out.append((ids[doc["hash"]], doc["hash"] in inserted))
            inserted.discard(doc["hash"])
        return out

    def _stored_ids(self, campaign: str, hashes: list[str], ids: dict) -> dict:
        """The ids of stored structures: the derived ones, or, for a document stored before ids were
        derived from content, the id a ``{campaign, hash}`` query finds."""
        found = {d["hash"] for d in find_by_ids(self.configurations, [ids[h] for h in hashes], {"hash": 1})}
        older = [h for h in hashes if h not in found]
        if not older:
            return {}
        return {r["hash"]: r["_id"] for r in self.configurations.find({"campaign": campaign, "hash": {"$in": older}},
                                                                      {"_id": 1, "hash": 1})}

    def add_atoms(self, campaign: str, atoms, origin: dict, **kwargs) -> tuple[ObjectId, bool]:
        """:meth:`add_configuration` for an ``ase.Atoms``."""
        return self.add_configuration(campaign, atoms.get_chemical_symbols(), atoms.cell.array, atoms.positions,
                                      origin, pbc=atoms.pbc, **kwargs)

    @staticmethod
    def atoms(doc: dict):
        """The ``ase.Atoms`` of a configuration document (with its label as a calculator, if any)."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = Atoms(doc["species"], positions=np.reshape(doc["positions"], (-1, 3)),
                      cell=np.reshape(doc["cell"], (3, 3)), pbc=doc.get("pbc", True))
        label = doc.get("label")
        if label:
            atoms.calc = SinglePointCalculator(atoms, energy=label["energy"],
                                               forces=np.reshape(label["forces"], (-1, 3)))
            if label.get("virial") is not None:
                atoms.info["virial"] = np.reshape(label["virial"], (3, 3))
        return atoms

    def set_label(self, config_id: ObjectId, label: dict) -> bool:
        """Attach a label (energy eV, forces eV/Å, virial eV; arrays flat) and mark it ``labeled``.

        A configuration is labeled once: a second call (a rerun task) changes nothing and returns False.
        """
        label = self._label_doc(label)
        update = {"$set": {"label": label, "status": "labeled", "labeled_at": _now()}, "$inc": {"label_writes": 1}}
        with exclusive(self.configurations) as locked:
            if locked:  # the embedded FerretDB: a lone {_id} filter is its only indexed one (db/ferretdb_sqlite.py)
                doc = self.configurations.find_one({"_id": config_id}, {"status": 1})
                if doc is None or doc.get("status") == "labeled":
                    return False
                return self.configurations.update_one({"_id": config_id}, update).modified_count == 1
        return self.configurations.update_one({"_id": config_id, "status": {"$ne": "labeled"}},
                                              update).modified_count == 1

    @staticmethod
    def _label_doc(label: dict) -> dict:
        """A label as stored: plain types, flat forces and virial, checked against the schema."""
        label = plain(label)
        label["forces"] = np.asarray(label["forces"], float).reshape(-1).tolist()
        if label.get("virial") is not None:
            label["virial"] = np.asarray(label["virial"], float).reshape(-1).tolist()
        validate_label(label)
        return label

    def mark_label_failed(self, config_id: ObjectId, reason: str, **details) -> None:
        """Quarantine a configuration whose labeling failed; earlier attempts are kept in ``label_attempts``."""
        attempt = plain({"reason": reason, "at": _now(), **details})
        self.configurations.update_one({"_id": config_id}, {"$set": {"status": "label_failed"},
                                                            "$push": {"label_attempts": attempt}})

    def set_status(self, config_ids: Iterable[ObjectId], status: str, **fields) -> int:
        # one update_many: on the embedded FerretDB it reads the collection once but commits once, where
        # one update per id would commit (about 25 ms) per id
        return self.configurations.update_many({"_id": {"$in": list(config_ids)}},
                                               {"$set": {"status": status, **plain(fields)}}).modified_count

    def configurations_with_status(self, campaign: str, status: str, projection=None) -> list[dict]:
        return list(self.configurations.find({"campaign": campaign, "status": status}, projection))

    # datasets and models -----------------------------------------------------------------------
    def label_rows(self, campaign: str) -> list[dict]:
        """The campaign's ``labeled`` and ``label_failed`` configurations (:data:`MEMBER_FIELDS` and
        ``status``), what the snapshot gate counts and the snapshot takes, read once for both: on the
        embedded FerretDB any query on ``configurations`` but by ``_id`` reads the whole collection."""
        return list(self.configurations.find({"campaign": campaign, "status": {"$in": ["labeled", "label_failed"]}},
                                             {**MEMBER_FIELDS, "status": 1}))

    def find_snapshot(self, campaign: str, iteration: int) -> dict | None:
        """Iteration ``iteration``'s dataset snapshot, when it was taken."""
        return self.datasets.find_one({"campaign": campaign, "iteration": iteration})

    def get_snapshot(self, snapshot_id) -> dict:
        """A dataset snapshot by id (``LookupError`` when there is none)."""
        doc = self.datasets.find_one({"_id": ObjectId(snapshot_id)})
        if doc is None:
            raise LookupError(f"no dataset snapshot {snapshot_id} in this database")
        return doc

    def snapshot_dataset(self, campaign: str, iteration: int, rows: list[dict] | None = None) -> dict:
        """Record the set of labeled configurations of ``campaign`` as iteration ``iteration``'s dataset.

        The members go to pages (:mod:`firegen.db.dataset_pages`), sharing the pages of the campaign's
        previous snapshot; each member configuration lists the snapshot in ``datasets``. Pages and
        tags are written before the dataset document, so a visible snapshot is complete.
        Idempotent per (campaign, iteration): a rerun, or a concurrent caller for the same iteration,
        returns the snapshot stored first (and removes what it wrote for its own). ``rows``: what
        :meth:`label_rows` returned, when the caller read it already.
        """
        key = {"campaign": campaign, "iteration": iteration}
        existing = self.datasets.find_one(key)
        if existing:
            return existing
        rows = self.label_rows(campaign) if rows is None else rows
        rows = [r for r in rows if r["status"] == "labeled"]
        earlier = list(self.datasets.find({"campaign": campaign, "iteration": {"$lt": iteration}},
                                          {"parts": 1, "size": 1, "iteration": 1}).sort("iteration", -1).limit(1))
        shared, fresh = split_by_previous(earlier[0] if earlier else None, rows)
        doc = {"_id": ObjectId(), **key, "hash": dataset_hash(r["hash"] for r in rows), "size": len(rows),
               "labelers": labeler_summary(rows), "model_ids": [], "models": {}, "created": _now()}
        doc["parts"] = parts_with(shared, doc["_id"], len(fresh))
        pages = new_pages(doc["_id"], fresh)
        validate_document("datasets", doc)
        for page in pages:
            validate_document(PAGES, page)
        ids = [r["_id"] for r in rows]
        if pages:
            self.db[PAGES].insert_many(pages)
        self.configurations.update_many({"_id": {"$in": ids}}, {"$addToSet": {"datasets": doc["_id"]}})
        try:
            self.datasets.insert_one(doc)
        except DuplicateKeyError:  # a concurrent caller for this iteration stored its snapshot first
            for page in pages:
                self.db[PAGES].delete_one({"_id": page["_id"]})
            self.configurations.update_many({"_id": {"$in": ids}}, {"$pull": {"datasets": doc["_id"]}})
            return self.datasets.find_one(key)
        return doc

    def add_model(self, campaign: str, iteration: int, member: int, seed: int, backend: str,
                  dataset_id: ObjectId, model_file=None, **fields) -> ObjectId:
        """Store (or replace, on a rerun) one committee member, with its frozen model in GridFS."""
        doc = {"campaign": campaign, "iteration": iteration, "member": member, "seed": seed, "backend": backend,
               "dataset_id": dataset_id, **plain(fields)}
        if model_file is not None:
            doc["file_id"], doc["sha256"] = self.blobs.put(
                model_file, filename=f"{campaign}-it{iteration:03d}-m{member}.pb",
                metadata={"campaign": campaign, "iteration": iteration, "member": member})
        validate_document("models", doc)
        found = self.models.find_one_and_update(
            {"campaign": campaign, "iteration": iteration, "member": member},
            {"$set": {**doc, "updated": _now()}}, upsert=True, return_document=ReturnDocument.AFTER)
        # the dataset lists the models trained on it: provenance then needs only _id look-ups
        brief = {"iteration": iteration, "member": member, "seed": seed, "sha256": doc.get("sha256")}
        self.datasets.update_one({"_id": dataset_id}, {"$addToSet": {"model_ids": found["_id"]},
                                                       "$set": {f"models.{found['_id']}": brief}})
        return found["_id"]

    # iterations --------------------------------------------------------------------------------
    def set_iteration_fields(self, campaign: str, index: int, fields: dict) -> None:
        """``$set`` dotted sub-fields of an existing iteration (exploration counts, timings)."""
        self.iterations.update_one({"campaign": campaign, "index": index}, {"$set": plain(fields)})

    def get_iteration(self, campaign: str, index: int) -> dict | None:
        return self.iterations.find_one({"campaign": campaign, "index": index})

    def update_iteration(self, campaign: str, index: int, stage: int, **fields) -> dict:
        doc = plain({"campaign": campaign, "index": index, "stage": stage, **fields})
        validate_document("iterations", doc)
        return self.iterations.find_one_and_update({"campaign": campaign, "index": index},
                                                   {"$set": {**doc, "updated": _now()}}, upsert=True,
                                                   return_document=ReturnDocument.AFTER)

