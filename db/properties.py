"""What comes after the campaign: its final model (in ``models``) and the properties computed with a model
(the ``properties`` collection).

The final model is a ``models`` document like a committee member's (its dataset snapshot, deepmd input,
metrics, seed, frozen file in GridFS, held-out predictions), keyed ``(campaign, FINAL_ITERATION, 0)`` and
marked ``kind: "final"``; its training snapshot is the campaign's dataset of iteration ``FINAL_ITERATION``.
It adds the compressed file (``compressed_file_id``, ``compressed_sha256``, or ``compress_error``) and
the validation per system and per condition (``validation_groups``).

A ``properties`` document is one MD run with a model at one temperature (``kind: "md"``: density, RDF,
MSD, D, conductivity) or the Arrhenius fit over a ladder of them (``kind: "arrhenius"``); its ``_id``
says what it is (:func:`property_key`), so a rerun replaces it. Provenance: ``model_id``, ``md``
(engine, ensemble, T (K), P (bar), dt (fs), steps, seed), ``analysis`` settings; units are in the field
names (``_K``, ``_bar``, ``_g_cm3``, ``_A``, ``_cm2_s``, ``_S_cm``, ``_eV``).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from bson import ObjectId

from firegen.campaign.plain import plain
from firegen.db.validation import validate_document

#: The ``iteration`` of a campaign's final model and of its training snapshot.
FINAL_ITERATION = -1
PROPERTY_KINDS = ("md", "arrhenius")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def property_key(campaign: str, model_id, system: str, kind: str, label: str) -> str:
    """A property document's ``_id``: ``"<campaign>/<model id>/<system>/<kind>/<label>"`` (label e.g.
    ``npt-600K-1bar``)."""
    return f"{campaign}/{model_id}/{system}/{kind}/{label}"


class PropertyStore:
    """The final model's extra fields and the ``properties`` collection of one database."""

    def __init__(self, db):
        self.db = db
        self.models = db["models"]
        self.properties = db["properties"]

    # final model -------------------------------------------------------------------------------
    def final_model(self, campaign: str) -> dict | None:
        """The campaign's final model (without its deepmd input), or None."""
        return self.models.find_one({"campaign": campaign, "iteration": FINAL_ITERATION, "member": 0}, {"input": 0})

    def mark_final(self, model_id: ObjectId, fields: dict) -> None:
        """Set ``kind: "final"`` and ``fields`` (compressed file, validation groups) on a stored model."""
        self.models.update_one({"_id": model_id}, {"$set": {**plain(fields), "kind": "final", "updated": _now()}})

    # properties --------------------------------------------------------------------------------
    def store(self, doc: dict) -> str:
        """Store (or replace, on a rerun) one property document; returns its ``_id``."""
        doc = plain({**doc, "updated": _now()}, nested_lists=False)
        validate_document("properties", doc)
        self.properties.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        return doc["_id"]

    def get(self, key: str) -> dict | None:
        return self.properties.find_one({"_id": key})

    def by_keys(self, keys: Sequence[str]) -> list[dict]:
        """The property documents with these ``_id`` s that exist, in the order given."""
        return [d for d in (self.get(k) for k in keys) if d is not None]

    def of_campaign(self, campaign: str, brief: bool = True, without: Sequence[str] | None = None) -> list[dict]:
        """The campaign's properties by system, kind and temperature; ``brief`` leaves out the curves
        (RDF, MSD); ``without`` names the ``results`` fields to leave out instead (e.g. ``["msd"]``)."""
        if without is not None:
            projection = {f"results.{name}": 0 for name in without} or None
        else:
            projection = {"results.rdf": 0, "results.msd": 0} if brief else None
        docs = list(self.properties.find({"campaign": campaign}, projection))
        return sorted(docs, key=lambda d: (d.get("system", ""), d.get("kind", ""),
                                           (d.get("md") or {}).get("temperature_K") or 0, d["_id"]))
