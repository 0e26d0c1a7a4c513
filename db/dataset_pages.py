"""A dataset snapshot's members, stored in pages keyed by ``_id`` (collection ``dataset_pages``).

A snapshot (:meth:`firegen.db.repository.ResultsStore.snapshot_dataset`) lists the labeled
configurations one iteration's committee trains on. Its members live outside the ``datasets``
document, in pages of at most :data:`PAGE_SIZE` members, so that

* a snapshot of any size fits (a document holds at most 16 MiB), and
* provenance reads a page by ``_id`` (indexed on MongoDB and on firegen's embedded FerretDB),
  never a list of every member id, nor one configuration per label.

A page is column-oriented, like a dpdata system: one array per field, the member's position in
the page as index. It holds the configuration ids (``ids``), content hashes (``hashes``), the
``origin`` columns of :data:`ORIGIN_COLUMNS`, the ``label`` columns of :data:`LABEL_COLUMNS`
(energy eV, walltime s, host) and, per member, the index (``labeler``) of its labeler settings hash
in the page's ``settings_hashes``. The settings themselves (code, version, kind, settings) are stored
once per dataset (``labelers``). Columns because the embedded FerretDB spends its time per byte and
per nested document it returns: 200 members as columns read in 8 ms, the same members as documents
with their whole origin in 41 ms. A labeled configuration is never labeled
again, so the pages are the facts the models were trained on; the whole origin of one member is in
its configuration document (``firegen provenance config``).

Snapshots are cumulative (iteration *i* trains on every label so far), so a snapshot reuses the pages
of the campaign's previous snapshot and adds pages for the labels that came after it: the pages
stored grow with the number of labels, not with labels × iterations. The dataset document names its
pages in a few bytes, as the parts it is made of, in order (columns again): ``parts: {"datasets":
[the snapshot that paged each part], "sizes": [members], "page_sizes": [members per page]}``. Part
*j* is the pages ``<datasets[j]>-00000``, ``<datasets[j]>-00001``, ... of ``page_sizes[j]`` members,
the last one holding the rest. Provenance reads many dataset documents (one per snapshot holding a
configuration), so they stay small.
"""

from __future__ import annotations

from firegen.campaign.errors import FiregenError
from firegen.db.lookup import find_by_ids

#: Collection of the pages.
COLLECTION = "dataset_pages"
#: Members per page (about 20 KiB of BSON): model provenance's default page of 100 labels reads one
#: or two pages.
PAGE_SIZE = 100
#: Origin fields a page keeps (None where a member's origin lacks one).
ORIGIN_COLUMNS = ("kind", "iteration", "stage", "stage_name", "system", "fw_id", "frame")
#: Label fields a page keeps.
LABEL_COLUMNS = ("energy", "walltime", "host")
#: Label fields that say who labeled (stored once per dataset, in ``labelers``).
LABELER_FIELDS = ("code", "version", "kind", "settings", "settings_hash")
#: Projection of the label fields a snapshot keeps.
LABEL_PROJECTION = {f"label.{c}": 1 for c in (*LABELER_FIELDS, *LABEL_COLUMNS)}
#: Configuration fields a snapshot reads (the page columns and the settings for the dataset's labeler
#: summary).
MEMBER_FIELDS = {"hash": 1, **{f"origin.{c}": 1 for c in ORIGIN_COLUMNS}, **LABEL_PROJECTION}
#: The configuration fields of a label as provenance shows it from a snapshot stored before pages.
LABEL_VIEW = {"origin": 1, "status": 1, "hash": 1, **LABEL_PROJECTION}


def new_pages(dataset_id, rows: list[dict], page_size: int | None = None) -> list[dict]:
    """Page documents for ``rows`` (read with :data:`MEMBER_FIELDS`): ``_id`` ``<dataset id>-<page number>``,
    at most ``page_size`` (default :data:`PAGE_SIZE`) members each."""
    page_size = page_size or PAGE_SIZE
    pages = []
    for k in range(0, len(rows), page_size):
        chunk = rows[k:k + page_size]
        origins = [r.get("origin") or {} for r in chunk]
        labels = [r.get("label") or {} for r in chunk]
        settings = list(dict.fromkeys(label.get("settings_hash") for label in labels))
        pages.append({"_id": f"{dataset_id}-{k // page_size:05d}", "dataset_id": dataset_id,
                      "ids": [r["_id"] for r in chunk], "hashes": [r["hash"] for r in chunk],
                      "origin": {c: [o.get(c) for o in origins] for c in ORIGIN_COLUMNS},
                      "label": {c: [label.get(c) for label in labels] for c in LABEL_COLUMNS},
                      "settings_hashes": settings,
                      "labeler": [settings.index(label.get("settings_hash")) for label in labels]})
    return pages


def page_members(page: dict, labelers: dict) -> list[dict]:
    """A page's members as label documents: ``_id``, ``hash``, ``status``, ``origin`` (the page's
    columns) and ``label`` (its columns plus code, version, kind and settings from ``labelers``)."""
    out = []
    for k, cid in enumerate(page["ids"]):
        settings_hash = page["settings_hashes"][page["labeler"][k]]
        about = labelers.get(settings_hash) or {}
        label = {"code": about.get("code"), "version": about.get("version"), "kind": about.get("kind"),
                 "settings": about.get("settings"), "settings_hash": settings_hash,
                 **{c: page["label"][c][k] for c in LABEL_COLUMNS}}
        out.append({"_id": cid, "hash": page["hashes"][k], "status": "labeled",
                    "origin": {c: page["origin"][c][k] for c in ORIGIN_COLUMNS}, "label": label})
    return out


def parts_with(parts: dict | None, dataset_id, size: int, page_size: int | None = None) -> dict:
    """``parts`` (of the previous snapshot; None: none) followed by ``size`` members paged by ``dataset_id``."""
    parts = {k: list(v) for k, v in (parts or {"datasets": [], "sizes": [], "page_sizes": []}).items()}
    if size:
        parts["datasets"].append(dataset_id)
        parts["sizes"].append(size)
        parts["page_sizes"].append(page_size or PAGE_SIZE)
    return parts


def page_refs(dataset: dict) -> list[tuple[str, int]]:
    """``(page id, members)`` of every page of a snapshot, in order."""
    parts = dataset["parts"]
    refs = []
    for owner, size, page_size in zip(parts["datasets"], parts["sizes"], parts["page_sizes"]):
        refs += [(f"{owner}-{k // page_size:05d}", min(page_size, size - k)) for k in range(0, size, page_size)]
    return refs


def split_by_previous(db, previous: dict | None, rows: list[dict]) -> tuple[dict | None, list[dict]]:
    """The parts of ``previous`` (the campaign's latest earlier snapshot) the new snapshot can share,
    and the rows it must page itself.

    The parts are shared when every member of ``previous`` (read from its pages) is among ``rows`` (a
    configuration stays labeled once labeled); otherwise, or for a snapshot stored before pages,
    nothing is shared.
    """
    if not previous or "parts" not in previous:
        return None, rows
    held = set(member_ids(db, previous))
    fresh = [r for r in rows if r["_id"] not in held]
    if len(rows) - len(fresh) != len(held):
        return None, rows
    return previous["parts"], fresh


def size_of(dataset: dict) -> int:
    """Members of a snapshot (also one stored before pages, whose ``size`` may be missing)."""
    return dataset.get("size", len(dataset.get("configuration_ids", [])))


def read_members(db, dataset: dict, skip: int = 0, limit: int | None = None) -> list[dict]:
    """Members ``skip`` .. ``skip + limit - 1`` of a snapshot (all from ``skip`` when ``limit`` is None).

    Reads only the pages that hold them. A snapshot stored before pages (a ``configuration_ids``
    list) is answered from its configurations (:data:`LABEL_VIEW` fields).

    Raises:
        FiregenError: a page the dataset lists is missing (the database was damaged or partly restored).
    """
    size = size_of(dataset)
    stop = size if limit is None else min(size, skip + limit)
    if skip >= stop:
        return []
    if "parts" not in dataset:  # legacy snapshot
        ids = dataset.get("configuration_ids", [])
        return find_by_ids(db["configurations"], ids[skip:stop], LABEL_VIEW)
    refs, first = _pages_between(dataset, skip, stop)
    pages = _read_pages(db, dataset, refs, None)
    members = [m for p in pages for m in page_members(p, dataset.get("labelers") or {})]
    return members[skip - first:stop - first]


def _pages_between(dataset: dict, skip: int, stop: int) -> tuple[list[str], int]:
    """The ids of the pages holding members ``skip`` .. ``stop - 1``, and the index of the first page's
    first member."""
    wanted, offset, first = [], 0, None
    for page_id, n in page_refs(dataset):
        if offset + n > skip and offset < stop:
            first = offset if first is None else first
            wanted.append(page_id)
        offset += n
    return wanted, first or 0


def _read_pages(db, dataset: dict, wanted: list[str], projection) -> list[dict]:
    pages = find_by_ids(db[COLLECTION], wanted, projection)
    if len(pages) != len(wanted):
        missing = sorted(set(wanted) - {p["_id"] for p in pages})
        raise FiregenError(f"dataset {dataset['_id']} (campaign {dataset.get('campaign')}, iteration "
                           f"{dataset.get('iteration')}): pages {', '.join(missing)} are missing from "
                           f"{COLLECTION}. Fix: restore that collection from the backup the datasets came from")
    return pages


def member_ids(db, dataset: dict) -> list:
    """Every configuration id of a snapshot, in the snapshot's order."""
    if "parts" not in dataset:  # legacy snapshot
        return list(dataset.get("configuration_ids", []))
    return [i for p in _read_pages(db, dataset, [r for r, _ in page_refs(dataset)], {"ids": 1}) for i in p["ids"]]
