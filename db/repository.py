"""The repository API over the results schema: the only code that touches its collections.

Every write is validated against the collection's schema (:mod:`firegen.db.validation`) and is
idempotent where a task may be rerun: configurations are upserted by content hash, models by
(campaign, iteration, member), datasets by (campaign, iteration), blobs by sha256.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from firegen.db.dataset_pages import COLLECTION as PAGES
from firegen.campaign.plain import plain
from firegen.campaign.records import HeldOutPredictions, LabelFailure, LabelTally, TrainingRecord
from firegen.db import candidate_lists
from firegen.db.dataset_pages import MEMBER_FIELDS, member_ids, new_pages, parts_with, read_members, split_by_previous
from firegen.db.embedded.capabilities import update_unless
from firegen.db.files import BlobStore
from firegen.db.hashing import configuration_id, dataset_hash, structure_hash
from firegen.db.lookup import find_by_ids, update_by_ids
from firegen.db.provenance import labeler_summary
from firegen.db.schema import init_schema
from firegen.db.validation import validate_document, validate_label


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


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
        self.heldout = db["heldout_predictions"]
        self.blobs = BlobStore(db, cache_dir=blob_cache)

    @classmethod
    def from_launchpad(cls, lp) -> "ResultsStore":
        return cls(lp.db)

    def init(self):
        """Create collections, indexes and validators (idempotent)."""
        return init_schema(self.db)

    def document_counts(self, names: Iterable[str]) -> dict[str, int]:
        """Documents per collection of this database (estimates, as ``db status`` prints them)."""
        return {name: self.db[name].estimated_document_count() for name in names}

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

    def update_campaign(self, name: str, unset: Sequence[str] = (), **fields) -> None:
        """``$set`` ``fields`` on the campaign (dotted names reach into sub-documents); ``unset``: fields
        to remove."""
        update = {"$set": {**plain(fields), "updated": _now()}}
        if unset:
            update["$unset"] = {k: "" for k in unset}
        self.campaigns.update_one({"name": name}, update)

    def campaign_briefs(self) -> list[dict]:
        """Every campaign's document without its config and starting structures, by name."""
        return list(self.campaigns.find({}, {"config": 0, "systems": 0}).sort("name", 1))

    def campaign_names(self) -> list[str]:
        """Every campaign's name, sorted."""
        return sorted(d["name"] for d in self.campaigns.find({}, {"name": 1}))

    def count_archived(self, name: str, fireworks: int) -> None:
        """Add to the campaign's ``archived_fireworks``: its Fireworks moved to the archive LaunchPad
        (:mod:`firegen.db.fireworks_archive`), all COMPLETED; views add them to the live ones."""
        self.campaigns.update_one({"name": name}, {"$inc": {"archived_fireworks": int(fireworks)}})

    def add_campaign_seconds(self, name: str, key: str, seconds: float) -> None:
        """Add ``seconds`` to the campaign's ``timings.<key>`` (work outside any iteration, e.g. initial labels)."""
        self.campaigns.update_one({"name": name}, {"$inc": {f"timings.{key}": float(seconds)}})

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
        return update_unless(self.configurations, config_id, "status", "labeled", update)

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
        """Set the status (and ``fields``) of these configurations; returns how many changed."""
        return update_by_ids(self.configurations, config_ids, {"$set": {"status": status, **plain(fields)}})

    def configurations_with_status(self, campaign: str, status: str, projection=None) -> list[dict]:
        return list(self.configurations.find({"campaign": campaign, "status": status}, projection))

    def ids_with_status(self, campaign: str, status: str, iteration: int | None = None,
                        origin_kind: str | None = None) -> list[ObjectId]:
        """Ids of the campaign's configurations with ``status`` (found by ``iteration`` and/or of origin
        ``origin_kind`` when given)."""
        query = {"campaign": campaign, "status": status}
        if iteration is not None:
            query["origin.iteration"] = iteration
        if origin_kind is not None:
            query["origin.kind"] = origin_kind
        return [d["_id"] for d in self.configurations.find(query, {"_id": 1})]

    def configurations_by_ids(self, ids: Sequence, projection=None) -> list[dict]:
        """The configurations with these ids, in the order given (see :func:`~firegen.db.lookup.find_by_ids`)."""
        return find_by_ids(self.configurations, ids, projection)

    def count_configurations(self, campaign: str, status: str) -> int:
        return self.configurations.count_documents({"campaign": campaign, "status": status})

    def label_counts_by_iteration(self, campaign: str) -> dict[tuple[int, str], int]:
        """``(iteration that picked them, status) -> n`` over labeled and label_failed configurations."""
        rows = self.configurations.aggregate([
            {"$match": {"campaign": campaign, "status": {"$in": ["labeled", "label_failed"]}}},
            {"$group": {"_id": {"iteration": "$origin.iteration", "status": "$status"}, "n": {"$sum": 1}}}])
        return {(r["_id"]["iteration"], r["_id"]["status"]): r["n"] for r in rows}

    # candidate lists (db/candidate_lists.py) ---------------------------------------------------
    def store_candidate_list(self, campaign: str, iteration: int, task: str, stored: Sequence[tuple]) -> None:
        """Record which of ``stored`` (``add_configurations`` results) are exploration ``task``'s candidates."""
        candidate_lists.store_candidates(self.db, campaign, iteration, task,
                                         candidate_lists.iteration_candidates(self.configurations, iteration, stored))

    def candidate_ids(self, campaign: str, iteration: int, tasks: Sequence[str]) -> list[ObjectId]:
        """The candidates of ``iteration``'s exploration ``tasks``, task by task, each once; for an
        iteration explored before the candidate lists, its configurations still ``candidate``."""
        ids = candidate_lists.read_candidates(self.db, campaign, iteration, tasks)
        return self.ids_with_status(campaign, "candidate", iteration) if ids is None else ids

    # datasets and models -----------------------------------------------------------------------
    def snapshot_members(self, snapshot: dict, projection=None, known: Mapping | None = None) -> list[dict]:
        """The configurations of a dataset snapshot (its pages, or a legacy inline id list), in member order.

        ``known``: documents by id read before with the same projection (a previous snapshot's: a labeled
        configuration's structure and label never change); only the other members are read."""
        ids = member_ids(self.db, snapshot)
        known = known or {}
        fetched = {d["_id"]: d for d in find_by_ids(self.configurations, [i for i in ids if i not in known], projection)}
        return [known[i] if i in known else fetched[i] for i in ids if i in known or i in fetched]

    def snapshots(self, campaign: str) -> list[dict]:
        """The campaign's dataset snapshots (iteration and size), by iteration."""
        return list(self.datasets.find({"campaign": campaign}, {"iteration": 1, "size": 1}).sort("iteration", 1))

    def get_dataset(self, dataset_id) -> dict | None:
        return self.datasets.find_one({"_id": dataset_id})

    def snapshot_briefs(self, snapshot: dict) -> list[dict]:
        """A snapshot's members as its pages hold them (id, hash, origin, label summary), no structures."""
        return read_members(self.db, snapshot)

    def committee(self, campaign: str, iteration: int) -> list[dict]:
        """The models of ``iteration``, by member."""
        return list(self.models.find({"campaign": campaign, "iteration": iteration}).sort("member", 1))

    def find_model(self, campaign: str, iteration: int, member: int) -> dict | None:
        return self.models.find_one({"campaign": campaign, "iteration": iteration, "member": member})

    def steps_behind(self, model_id) -> int:
        """Training steps behind a stored model: its own (its deepmd input's ``training.numb_steps``) and those of
        its warm-start parents (``parent``), back to the one trained from scratch."""
        steps, seen = 0, set()
        while model_id is not None and model_id not in seen:
            seen.add(model_id)
            doc = self.models.find_one({"_id": model_id}, {"input.training.numb_steps": 1, "parent": 1}) or {}
            steps += int(((doc.get("input") or {}).get("training") or {}).get("numb_steps") or 0)
            model_id = doc.get("parent")
        return steps

    def trained_iterations(self, campaign: str) -> list[int]:
        """Iterations with at least one model whose file is stored, ascending."""
        return sorted({d["iteration"] for d in self.models.find({"campaign": campaign, "file_id": {"$ne": None}},
                                                                {"iteration": 1})})

    def trained_committee(self, campaign: str, iteration: int) -> list[dict]:
        """The models of ``iteration`` whose files are stored, by member."""
        return list(self.models.find({"campaign": campaign, "iteration": iteration,
                                      "file_id": {"$ne": None}}).sort("member", 1))

    def count_models(self, campaign: str) -> int:
        return self.models.count_documents({"campaign": campaign})

    def label_timings(self, campaign: str) -> tuple[list[int], list[float]]:
        """Atom counts and labeler wall times (s) of the campaign's labeled configurations (what
        ``selection.budget`` fits its cost model on)."""
        docs = self.configurations.find({"campaign": campaign, "status": "labeled"}, {"natoms": 1, "label.walltime": 1})
        rows = [(d.get("natoms"), (d.get("label") or {}).get("walltime")) for d in docs]
        rows = [(n, t) for n, t in rows if n and t]
        return [n for n, _ in rows], [t for _, t in rows]

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
        previous snapshot; a configuration paged here lists this snapshot in its ``datasets`` (the
        later snapshots that share the page hold it too: :func:`firegen.db.provenance.holding_snapshots`),
        so a snapshot tags the labels added since the previous one, not every member. Pages and tags
        are written before the dataset document, so a visible snapshot is complete. The members a
        snapshot adds are paged in the order of their content hashes: the same labels give the same
        training data, whichever exploration or label the database happened to store first.
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
        shared, fresh = split_by_previous(self.db, earlier[0] if earlier else None, rows)
        fresh = sorted(fresh, key=lambda r: r["hash"])
        doc = {"_id": ObjectId(), **key, "hash": dataset_hash(r["hash"] for r in rows), "size": len(rows),
               "labelers": labeler_summary(rows), "model_ids": [], "models": {}, "created": _now()}
        doc["parts"] = parts_with(shared, doc["_id"], len(fresh))
        pages = new_pages(doc["_id"], fresh)
        validate_document("datasets", doc)
        for page in pages:
            validate_document(PAGES, page)
        paged = [r["_id"] for r in fresh]
        if pages:
            self.db[PAGES].insert_many(pages)
        update_by_ids(self.configurations, paged, {"$addToSet": {"datasets": doc["_id"]}})
        try:
            self.datasets.insert_one(doc)
        except DuplicateKeyError:  # a concurrent caller for this iteration stored its snapshot first
            for page in pages:
                self.db[PAGES].delete_one({"_id": page["_id"]})
            update_by_ids(self.configurations, paged, {"$pull": {"datasets": doc["_id"]}})
            return self.datasets.find_one(key)
        return doc

    def add_model(self, campaign: str, iteration: int, member: int, seed: int, backend: str,
                  dataset_id: ObjectId, model_file=None, **fields) -> ObjectId:
        """:meth:`store_model` from keyword arguments (the other fields of :class:`TrainingRecord`)."""
        return self.store_model(TrainingRecord(campaign, iteration, member, seed, backend, dataset_id,
                                               **plain(fields)), model_file)

    def store_model(self, record: TrainingRecord, model_file=None) -> ObjectId:
        """Store (or replace, on a rerun) one committee member, with its frozen model in GridFS."""
        doc = {k: v for k, v in plain(record.as_dict()).items() if v is not None}
        campaign, iteration, member = record.campaign, record.iteration, record.member
        if model_file is not None:
            doc["file_id"], doc["sha256"] = self.blobs.put(
                model_file, filename=f"{campaign}-it{iteration:03d}-m{member}.pb",
                metadata={"campaign": campaign, "iteration": iteration, "member": member})
        validate_document("models", doc)
        found = self.models.find_one_and_update(
            {"campaign": campaign, "iteration": iteration, "member": member},
            {"$set": {**doc, "updated": _now()}}, upsert=True, return_document=ReturnDocument.AFTER)
        # the dataset lists the models trained on it: provenance then needs only _id look-ups
        brief = {"iteration": iteration, "member": member, "seed": record.seed, "sha256": doc.get("sha256")}
        self.datasets.update_one({"_id": record.dataset_id}, {"$addToSet": {"model_ids": found["_id"]},
                                                              "$set": {f"models.{found['_id']}": brief}})
        return found["_id"]

    def models_of(self, campaign: str) -> list[dict]:
        """The campaign's models (without their deepmd input), by iteration and member."""
        return list(self.models.find({"campaign": campaign}, {"input": 0}).sort([("iteration", 1), ("member", 1)]))

    def get_model(self, model_id) -> dict | None:
        """A model by id, without its deepmd input."""
        return self.models.find_one({"_id": ObjectId(model_id)}, {"input": 0})

    def snapshots_of(self, campaign: str) -> list[dict]:
        """The campaign's dataset snapshots (without a legacy inline id list), by iteration."""
        return list(self.datasets.find({"campaign": campaign}, {"configuration_ids": 0}).sort("iteration", 1))

    def snapshot_members_page(self, snapshot: dict, skip: int, limit: int) -> list[dict]:
        """Members ``skip`` .. ``skip + limit - 1`` of a snapshot as its pages hold them (id, hash, origin,
        label summary): only the pages holding them are read."""
        return read_members(self.db, snapshot, skip, limit)

    def store_heldout_predictions(self, model_id: ObjectId, record: HeldOutPredictions) -> None:
        """Store (or replace, on a rerun) a model's predictions on its held-out frames, under the model's id."""
        doc = plain(record.as_dict())
        validate_document("heldout_predictions", doc)
        self.heldout.replace_one({"_id": model_id}, doc, upsert=True)

    def heldout_predictions(self, model_ids: Sequence) -> list[dict]:
        """The held-out predictions of these models (those that have them), in the order given."""
        return find_by_ids(self.heldout, model_ids)

    # label tallies -----------------------------------------------------------------------------
    @staticmethod
    def _tally_fields(iteration: int | None) -> tuple[str, str]:
        """Where the tally and the failures of ``iteration``'s picks live: an iteration's ``labels`` and
        ``label_failures``, the campaign's ``initial_labels`` and ``initial_label_failures`` for -1."""
        return ("labels", "label_failures") if iteration is not None and iteration >= 0 else (
            "initial_labels", "initial_label_failures")

    def _update_tally_owner(self, campaign: str, iteration: int | None, update: dict, where: dict | None = None) -> None:
        """``update`` on the document that holds ``iteration``'s tally, if it also matches ``where``."""
        if iteration is not None and iteration >= 0:
            if not where:
                self._update_iteration_doc(campaign, iteration, update)
                return
            key = self.iteration_key(campaign, iteration)
            if self.iterations.find_one({"_id": key}, {"_id": 1}) is not None:
                self.iterations.update_one({"_id": key, **where}, update)
            else:  # stored before the keys
                self.iterations.update_one({"campaign": campaign, "index": iteration, **where}, update)
        else:
            self.campaigns.update_one({"name": campaign, **(where or {})}, update)

    def count_labels(self, campaign: str, iteration: int | None, labeled: int = 0, failed: int = 0,
                     failures: Sequence[LabelFailure] = (), started: datetime.datetime | None = None) -> None:
        """Add to the tally (:class:`LabelTally`) of the labels of the configurations ``iteration`` picked
        (-1 or None: the initial data) and list failed attempts, in one update.

        ``started``: when the label batch that counts began. Nothing is added when the iteration's gate set the
        tally from the configurations after that (:meth:`set_label_tally`): it counted this batch's labels
        already. That is a batch whose run was declared lost and rerun, ending late (a worker cut off from the
        database); adding its labels again would count them twice."""
        tally, listed = self._tally_fields(iteration)
        update: dict = {}
        inc = {f"{tally}.{k}": n for k, n in (("labeled", labeled), ("failed", failed)) if n}
        if inc:
            update["$inc"] = inc
        if failures:
            update["$push"] = {listed: {"$each": [plain(f.as_dict()) for f in failures]}}
        if update:
            set_at = f"{tally}_set_at"
            where = None if started is None else {"$or": [{set_at: {"$exists": False}}, {set_at: {"$lte": started}}]}
            self._update_tally_owner(campaign, iteration, update, where)

    def set_label_tally(self, campaign: str, iteration: int, tally: LabelTally) -> None:
        """Set the tally of ``iteration``'s picks to counts taken from the configurations themselves (and when:
        ``<tally>_set_at``, which :meth:`count_labels` compares with a batch's start)."""
        field = self._tally_fields(iteration)[0]
        self._update_tally_owner(campaign, iteration, {"$set": {field: plain(tally.as_dict()), f"{field}_set_at": _now()}})

    # iterations --------------------------------------------------------------------------------
    @staticmethod
    def iteration_key(campaign: str, index: int) -> str:
        """An iteration's ``_id``: ``"<campaign>/<index>"``, so that every read and update of one iteration
        is a look-up by ``_id`` (the embedded FerretDB reads the whole collection for any other filter).
        Iterations stored before carry an ObjectId and are found by ``(campaign, index)``."""
        return f"{campaign}/{index}"

    def _update_iteration_doc(self, campaign: str, index: int, update: dict) -> None:
        if not self.iterations.update_one({"_id": self.iteration_key(campaign, index)}, update).matched_count:
            self.iterations.update_one({"campaign": campaign, "index": index}, update)  # stored before the keys

    def set_iteration_fields(self, campaign: str, index: int, fields: dict) -> None:
        """``$set`` dotted sub-fields of an existing iteration (exploration counts, timings)."""
        self._update_iteration_doc(campaign, index, {"$set": plain(fields)})

    def get_iteration(self, campaign: str, index: int) -> dict | None:
        return (self.iterations.find_one({"_id": self.iteration_key(campaign, index)})
                or self.iterations.find_one({"campaign": campaign, "index": index}))

    def iterations_of(self, campaign: str, stage: int | None = None, before: int | None = None,
                      decided: bool = False) -> list[dict]:
        """The campaign's iterations by index: of ``stage`` only, before index ``before``, and only those
        with a decision (their ratios stored) when ``decided``."""
        query: dict = {"campaign": campaign}
        if stage is not None:
            query["stage"] = stage
        if before is not None:
            query["index"] = {"$lt": before}
        if decided:
            query["ratios"] = {"$exists": True}
        return list(self.iterations.find(query).sort("index", 1))

    def last_decided_iteration(self, campaign: str) -> dict | None:
        return self.iterations.find_one({"campaign": campaign, "decision": {"$ne": None}}, sort=[("index", -1)])

    def add_iteration_seconds(self, campaign: str, index: int, key: str, seconds: float,
                              model_id: ObjectId | None = None) -> None:
        """Add ``seconds`` to the iteration's ``timings.<key>`` (``train_s``, ``explore_s``, ``label_s``), and
        list ``model_id`` in its committee when given."""
        update: dict = {"$inc": {f"timings.{key}": float(seconds)}}
        if model_id is not None:
            update["$addToSet"] = {"model_ids": model_id}
        self._update_iteration_doc(campaign, index, update)

    def update_iteration(self, campaign: str, index: int, stage: int, **fields) -> dict:
        """Set ``fields`` on the iteration, creating it (``_id`` :meth:`iteration_key`) when it is new."""
        doc = plain({"campaign": campaign, "index": index, "stage": stage, **fields})
        validate_document("iterations", doc)
        update = {"$set": {**doc, "updated": _now()}}
        key = self.iteration_key(campaign, index)
        found = self.iterations.find_one_and_update({"_id": key}, update, return_document=ReturnDocument.AFTER)
        if found is None:  # a new iteration, or one stored before the keys
            legacy = self.iterations.find_one({"campaign": campaign, "index": index}, {"_id": 1})
            found = self.iterations.find_one_and_update({"_id": legacy["_id"] if legacy else key}, update,
                                                        upsert=True, return_document=ReturnDocument.AFTER)
        return found

