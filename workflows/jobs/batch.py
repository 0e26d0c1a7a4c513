"""Which of an iteration's candidates are labeled: deduplication, then the capped pick of the selection policy.

``select`` gives the candidate ids (in exploration order) and the cap; this module reads what the policy
needs (structures, force deviations, the fingerprints of the campaign's labeled and selected
configurations), decides, and stores the fingerprints of the picked configurations as the iteration's
part of the campaign's fingerprint bank (:mod:`firegen.db.fingerprint_banks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from firegen.campaign.config import CampaignConfig
from firegen.db import fingerprint_banks as banks
from firegen.db.repository import ResultsStore
from firegen.workflows.jobs.label_budget import within_budget
from firegen.workflows.steps import fingerprint as fp
from firegen.workflows.steps import select as selection

_STRUCTURE = {"species": 1, "cell": 1, "positions": 1, "pbc": 1}


@dataclass
class Batch:
    """What selection decided for one iteration's candidates.

    Attributes:
        picked: ids to label, in candidate order.
        duplicates: id -> ``(id of the configuration it duplicates, fingerprint distance)``.
        tolerance: the fingerprint distance that made a duplicate (None: no deduplication).
        over_budget: ids the policy picked that ``selection.budget`` did not afford.
        budget: what the budget decided (:func:`~firegen.workflows.jobs.label_budget.within_budget`), or None.
    """

    picked: list
    duplicates: dict = field(default_factory=dict)
    tolerance: float | None = None
    over_budget: list = field(default_factory=list)
    budget: dict | None = None


#: Selection policies that pick in fingerprint space.
FINGERPRINT_POLICIES = ("diverse", "kmeans")


def needs_fingerprints(cfg: CampaignConfig) -> bool:
    return cfg.selection.policy in FINGERPRINT_POLICIES or cfg.selection.dedup.enabled


#: Starting frames the duplicate tolerance is measured on (``selection.dedup.displacement``).
CALIBRATION_FRAMES = 8


def duplicate_tolerance(cfg: CampaignConfig, frames: list) -> float | None:
    """The fingerprint distance below which two structures of this campaign are one: ``dedup.tolerance`` when
    given, else the distance that moving every atom of ``frames`` by ``dedup.displacement`` makes."""
    dedup = cfg.selection.dedup
    if dedup.tolerance is not None:
        return dedup.tolerance
    if dedup.displacement is None or not frames:
        return None
    step = max(1, len(frames) // CALIBRATION_FRAMES)
    return fp.displacement_distance(frames[::step][:CALIBRATION_FRAMES], cfg.type_map, dedup.displacement,
                                    fingerprint_spec(cfg))


def fingerprint_spec(cfg: CampaignConfig) -> fp.FingerprintSpec:
    return fp.FingerprintSpec(**cfg.selection.fingerprint.model_dump())


def write_initial_part(store: ResultsStore, cfg: CampaignConfig, ids: list, frames: list) -> None:
    """The ``initial`` part of the campaign's fingerprint bank: its starting frames and imported labels
    (``ids`` and their ``ase.Atoms``), written by the init Firework when selection uses fingerprints."""
    if needs_fingerprints(cfg):
        fps = fp.fingerprints(frames, cfg.type_map, fingerprint_spec(cfg))
        banks.store_part(store.db, store.blobs, cfg.name, "initial", fingerprint_spec(cfg).key(cfg.type_map),
                         cfg.type_map, ids, fps, tolerance=duplicate_tolerance(cfg, frames))


def stored_index(store: ResultsStore, cfg: CampaignConfig, iteration: int) -> fp.FingerprintIndex:
    """The fingerprints of the campaign's labeled and selected configurations before ``iteration`` (and, with
    ``dedup.across_campaigns``, of every campaign with the same type map). A campaign whose init wrote no
    ``initial`` part (queued before fingerprints, or with them turned off then) gets one here, from the
    configurations labeled so far."""
    space = fingerprint_spec(cfg).key(cfg.type_map)
    if not banks.has_part(store.db, cfg.name, "initial"):
        docs = store.configurations_by_ids(store.ids_with_status(cfg.name, "labeled"), _STRUCTURE)
        write_initial_part(store, cfg, [d["_id"] for d in docs], [ResultsStore.atoms(d) for d in docs])
    scope = {"type_map": cfg.type_map} if cfg.selection.dedup.across_campaigns else {"campaigns": [cfg.name]}
    ids, matrix = banks.read_parts(store.db, store.blobs, space, exclude=[banks.part_id(cfg.name, iteration)],
                                   **scope)
    index = fp.FingerprintIndex(fp.dimension(cfg.type_map, fingerprint_spec(cfg)))
    index.add(matrix, ids)
    return index


def choose(store: ResultsStore, cfg: CampaignConfig, iteration: int, keys: list, cap: int, seed: int) -> Batch:
    """Deduplicate ``keys`` (unless ``selection.dedup`` is off), pick at most ``cap`` of the rest with
    ``selection.policy``, and keep of those what ``selection.budget`` affords."""
    sel = cfg.selection
    if not keys or cap <= 0:
        return Batch([])
    if not needs_fingerprints(cfg):
        weights = None
        if sel.policy == "deviation":
            weights = [d["model_deviation"]["max_f"] for d in store.configurations_by_ids(keys, {"model_deviation": 1})]
        picked = selection.select_candidates(keys, cap, seed, weights=weights, policy=sel.policy)
        return afforded(store, cfg, Batch(picked), random_order(picked, seed))
    index = stored_index(store, cfg, iteration)
    docs = store.configurations_by_ids(keys, {**_STRUCTURE, "model_deviation": 1})
    fps = fp.fingerprints([ResultsStore.atoms(d) for d in docs], cfg.type_map, fingerprint_spec(cfg))
    keys = [d["_id"] for d in docs]
    dev = np.array([(d.get("model_deviation") or {}).get("max_f", 0.0) for d in docs], dtype=float)
    duplicates: dict = {}
    kept = np.arange(len(keys))
    nearest = index.nearest(fps)  # each candidate's closest labeled or selected structure: searched once
    tolerance = None
    if sel.dedup.enabled:
        tolerance = sel.dedup.tolerance or banks.campaign_tolerance(store.db, cfg.name) or \
            duplicate_tolerance(cfg, [ResultsStore.atoms(d) for d in docs])  # no starting frames: the candidates
        kept, dups = fp.deduplicate(fps, tolerance, index, order=np.argsort(-dev, kind="stable"), nearest=nearest)
        duplicates = {keys[i]: (of if where == "stored" else keys[of], dist) for i, (where, of, dist) in dups.items()}
    kept_keys = [keys[i] for i in kept]
    if sel.policy in FINGERPRINT_POLICIES:
        if sel.policy == "diverse":
            rows = fp.farthest_point_indices(fps[kept], cap, weights=dev[kept], stored_distance=nearest[0][kept])
        else:
            rows = fp.representative_indices(fps[kept], cap, weights=dev[kept], seed=seed)
        priority = [kept_keys[r] for r in rows]  # farthest-point order; k-means: the representatives' order
        chosen = set(priority)
        picked = [k for k in kept_keys if k in chosen]
    else:
        weights = dev[kept] if sel.policy == "deviation" else None
        picked = selection.select_candidates(kept_keys, cap, seed, weights=weights, policy=sel.policy)
        priority = random_order(picked, seed)
    batch = afforded(store, cfg, Batch(picked, duplicates, tolerance), priority)
    picked = batch.picked
    row = {k: i for i, k in enumerate(keys)}
    banks.store_part(store.db, store.blobs, cfg.name, iteration, fingerprint_spec(cfg).key(cfg.type_map),
                     cfg.type_map, picked, fps[[row[k] for k in picked]] if picked else fps[:0])
    return batch


def random_order(picked: list, seed: int) -> list:
    """``picked`` in an order drawn from ``seed``: the priority of a uniform pick under a budget."""
    return [picked[i] for i in np.random.default_rng(seed).permutation(len(picked))]


def afforded(store: ResultsStore, cfg: CampaignConfig, batch: Batch, priority: list) -> Batch:
    """``batch`` with its picks cut to what ``selection.budget`` affords, taken in ``priority`` order (the picks
    stay in candidate order)."""
    kept, budget = within_budget(store, cfg, priority)
    if budget is None:
        return batch
    keep = set(kept)
    return Batch([k for k in batch.picked if k in keep], batch.duplicates, batch.tolerance,
                 [k for k in priority if k not in keep], budget)
