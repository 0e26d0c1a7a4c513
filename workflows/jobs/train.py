"""A train Firework: one committee member on the dataset snapshot its gate passed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from firegen.campaign.config import CampaignConfig
from firegen.campaign.errors import FatalError
from firegen.campaign.labeled_data import LABELED_FIELDS, split_train_validation, write_deepmd_npy
from firegen.campaign.plain import plain
from firegen.campaign.records import HeldOutPredictions, TrainingRecord
from firegen.campaign.seeds import training_seed
from firegen.db.repository import ResultsStore
from firegen.workflows.jobs.gate import snapshot_to_train
from firegen.workflows.jobs.observe import observe_member
from firegen.workflows.steps import train as training
from firegen.workflows.steps.train_input import restart_schedule

#: Force components of the held-out frames kept per model for its parity plot (every frame's energy is kept).
PARITY_FORCES = 3000
_SNAPSHOT_DOCUMENTS: dict = {}  # (dataset id, content hash) -> its labeled documents; the last snapshot read


def snapshot_documents(store: ResultsStore, snapshot: dict) -> list[dict]:
    """The labeled configurations of a dataset snapshot (:data:`LABELED_FIELDS`), read from the database
    once per worker process: a snapshot never changes, and the committee members of an iteration
    usually train one after another on the same worker. The next snapshot reads only its new members:
    snapshots are cumulative, and a labeled configuration's structure and label never change, so a
    worker's reads per iteration follow the labels added, not the size of the dataset."""
    key = (snapshot["_id"], snapshot["hash"])
    if key not in _SNAPSHOT_DOCUMENTS:
        known = {d["_id"]: d for docs in _SNAPSHOT_DOCUMENTS.values() for d in docs}
        docs = store.snapshot_members(snapshot, LABELED_FIELDS, known)
        _SNAPSHOT_DOCUMENTS.clear()
        _SNAPSHOT_DOCUMENTS[key] = docs
    return _SNAPSHOT_DOCUMENTS[key]


def poor_parent(store: ResultsStore, cfg: CampaignConfig, parent: dict) -> str | None:
    """Why ``parent`` (a member of the previous iteration) should not be warm-started from, or None: its training
    force RMSE is more than ``committee.warm_start.scratch_above`` times the median of its committee's. A member
    trained into a poor minimum stays there when warm-started (its error can even grow with the data), and the
    committee's mean prediction carries it."""
    ratio = cfg.committee.warm_start.scratch_above
    if ratio is None:
        return None
    committee = store.trained_committee(cfg.name, parent["iteration"])
    errors = {m["member"]: m["metrics"]["train"]["rmse_f"] for m in committee if (m.get("metrics") or {}).get("train")}
    mine = errors.get(parent["member"])
    if mine is None or len(errors) < 2:
        return None
    median = float(np.median(list(errors.values())))
    if mine <= ratio * median:
        return None
    return (f"member {parent['member']} of iteration {parent['iteration']} trained to {mine:.3f} eV/Å force RMSE, "
            f"{mine / median:.2f}x its committee's median {median:.3f} (committee.warm_start.scratch_above = {ratio})")


def train_member(store: ResultsStore, cfg: CampaignConfig, iteration: int, member: int, workdir: Path,
                 snapshot_id: str | None = None, lmp: str = "lmp") -> dict:
    """Train one committee member on the iteration's dataset snapshot, the one the snapshot gate passed
    (``snapshot_id``; see :func:`~firegen.workflows.jobs.gate.snapshot_to_train` when None).
    Skipped when the member is already stored. Then, when the stage names observables
    (``converged_when.observables``), measure them with the member (:func:`~.observe.observe_member`).

    Returns:
        ``{"model_id", "seconds", "metrics"}``, or ``{"model_id", "skipped": True}`` for a stored member.
    """
    existing = store.find_model(cfg.name, iteration, member)
    if existing and existing.get("file_id"):
        if any(st.converged_when.observables for st in cfg.stages):  # a rerun: measure what is missing
            observe_member(store, cfg, iteration, member, store.blobs.fetch(existing["file_id"], workdir / "model.pb"),
                           workdir, lmp)
        return {"model_id": str(existing["_id"]), "skipped": True}
    snapshot = snapshot_to_train(store, cfg, iteration, snapshot_id)
    docs = snapshot_documents(store, snapshot)
    if not docs:
        raise FatalError(f"campaign {cfg.name}: no labeled configurations to train iteration {iteration} on; "
                         "every initial label failed? see `firegen provenance failures`")
    train_docs, valid_docs = split_train_validation(docs)
    data_dir = workdir / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    train_sys = write_deepmd_npy(train_docs, cfg.type_map, data_dir / "train")
    valid_sys = write_deepmd_npy(valid_docs, cfg.type_map, data_dir / "valid") if valid_docs else None
    seed = training_seed(cfg.name, iteration, member)
    template, steps = cfg.committee.training, cfg.committee.numb_steps
    parent = None
    init_model = None
    scratch_because = None
    warm = cfg.committee.warm_start
    if warm.warm(iteration):
        parent = store.find_model(cfg.name, iteration - 1, member)
        scratch_because = poor_parent(store, cfg, parent) if parent else None
        if scratch_because:
            # as many steps as its warm-started siblings will have behind them: with committee.numb_steps alone a
            # redrawn member falls behind them more every iteration, and is redrawn again (cu_emt.yaml did)
            steps = store.steps_behind(parent["_id"]) + (warm.numb_steps or steps)
            scratch_because += f"; trained {steps} steps from scratch"
            parent = None
        elif parent and parent.get("file_id"):
            init_model = store.blobs.fetch(parent["file_id"], workdir / "parent.pb")
            template = restart_schedule(template, warm.start_lr, warm.start_pref_e, warm.start_pref_f)
            steps = warm.numb_steps or steps
        else:
            parent = None  # no stored parent (e.g. the member failed then): from scratch
    input_dict = training.make_training_input(template, train_sys, cfg.type_map, seed, steps, valid_sys)
    t0 = time.perf_counter()
    result = training.train_model(workdir / "train", input_dict, init_model=init_model)
    metrics = {"train": training.evaluate_model(result.frozen_model, train_sys, cfg.type_map)}
    parity = None
    if valid_sys:
        metrics["validation"] = training.evaluate_model(result.frozen_model, valid_sys, cfg.type_map,
                                                        parity_forces=PARITY_FORCES)
        parity = metrics["validation"].pop("parity", None)
    science = time.perf_counter() - t0  # dp train + dp freeze + testing
    record = TrainingRecord(cfg.name, iteration, member, seed=seed, backend=cfg.committee.backend,
                            dataset_id=snapshot["_id"], parent=parent["_id"] if parent else None,
                            input=plain(result.input_dict, nested_lists=False), metrics=plain(metrics),
                            train_seconds=result.wall_time, n_train=len(train_docs), n_validation=len(valid_docs),
                            from_scratch_because=scratch_because)
    model_id = store.store_model(record, result.frozen_model)
    if parity is not None:
        store.store_heldout_predictions(model_id, HeldOutPredictions(cfg.name, iteration, member, **parity))
    store.add_iteration_seconds(cfg.name, iteration, "train_s", science, model_id=model_id)
    observed = observe_member(store, cfg, iteration, member, result.frozen_model, workdir, lmp)
    return {"model_id": str(model_id), "seconds": science, "metrics": metrics,
            **({"observables": sorted(observed)} if observed else {})}
