"""A train Firework: one committee member on the dataset snapshot its gate passed."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
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
from firegen.workflows.steps.fitting_reset import fresh_fitting_net
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


@dataclass(frozen=True)
class Restart:
    """What a member of a poor previous model starts from instead (``committee.warm_start.poor_restart``).

    Attributes:
        because: one line with the numbers: why its own previous model was passed over, and what it started from.
        model: the previous committee's best member to warm-start from (``best``, ``best_descriptor``), or None:
            from scratch.
        fresh_fitting: keep only ``model``'s descriptor; the fitting net is drawn afresh (``best_descriptor``).
    """

    because: str
    model: dict | None
    fresh_fitting: bool = False


def poor_parent(store: ResultsStore, cfg: CampaignConfig, parent: dict) -> Restart | None:
    """What ``parent`` (a member of the previous iteration) is to be replaced by, or None to warm-start from it:
    its training force RMSE is more than ``committee.warm_start.poor_above`` times the median of its committee's.
    A member trained into a poor minimum stays there when warm-started (its error can even grow with the data),
    and the committee's mean prediction carries it. With ``poor_restart: best`` it warm-starts from the committee's
    member of lowest training force RMSE instead, so its training history stays as long as its siblings'; with
    ``best_descriptor`` from that member's descriptor and a fitting net of its own (a copy of the best member
    would agree with it, and the committee's deviation would stop measuring its error)."""
    warm = cfg.committee.warm_start
    if warm.poor_above is None:
        return None
    committee = store.trained_committee(cfg.name, parent["iteration"])
    errors = {m["member"]: m["metrics"]["train"]["rmse_f"] for m in committee if (m.get("metrics") or {}).get("train")}
    mine = errors.get(parent["member"])
    if mine is None or len(errors) < 2:
        return None
    median = float(np.median(list(errors.values())))
    if mine <= warm.poor_above * median:
        return None
    because = (f"member {parent['member']} of iteration {parent['iteration']} trained to {mine:.3f} eV/Å force RMSE, "
               f"{mine / median:.2f}x its committee's median {median:.3f} (committee.warm_start.poor_above = "
               f"{warm.poor_above})")
    if warm.poor_restart == "scratch":
        return Restart(because, None)
    best = min(errors, key=lambda k: (errors[k], k))
    model = next(m for m in committee if m["member"] == best)
    if warm.poor_restart == "best_descriptor":
        return Restart(f"{because}; warm-started from the descriptor of member {best} ({errors[best]:.3f} eV/Å) "
                       "with a fitting net drawn afresh instead", model, fresh_fitting=True)
    return Restart(f"{because}; warm-started from member {best} ({errors[best]:.3f} eV/Å) instead", model)


@dataclass(frozen=True)
class StartingPoint:
    """Where a member's training starts: ``parent``, the stored model it warm-starts from (None: from scratch),
    with ``template`` (the deepmd-kit input, its schedule restarted for a warm start) for ``steps`` steps;
    ``restarted_because``: why that is not its own previous model (:func:`poor_parent`), or None;
    ``fresh_fitting``: only the parent's descriptor is kept, its fitting net is drawn afresh."""

    parent: dict | None
    template: dict
    steps: int
    restarted_because: str | None = None
    fresh_fitting: bool = False


def starting_point(store: ResultsStore, cfg: CampaignConfig, iteration: int, member: int) -> StartingPoint:
    """From scratch (the first iteration, ``committee.warm_start`` off or its ``scratch_every``, no stored previous
    model, a poor one with ``poor_restart: scratch``), or warm-started from the member's previous model or, when
    that one is poor, from its committee's best or that member's descriptor (``committee.warm_start``)."""
    warm = cfg.committee.warm_start
    scratch = StartingPoint(None, cfg.committee.training, cfg.committee.numb_steps)
    own = store.find_model(cfg.name, iteration - 1, member) if warm.warm(iteration) else None
    if own is None:
        return scratch
    restart = poor_parent(store, cfg, own)
    if restart and restart.model is None:
        # as many steps as its warm-started siblings will have behind them: with committee.numb_steps alone a
        # redrawn member falls behind them more every iteration, and is redrawn again (cu_emt.yaml did)
        steps = store.steps_behind(own["_id"]) + (warm.numb_steps or scratch.steps)
        return StartingPoint(None, scratch.template, steps, f"{restart.because}; trained {steps} steps from scratch")
    parent = restart.model if restart else own
    if not parent.get("file_id"):
        return scratch  # no stored model (e.g. the member failed then)
    return StartingPoint(parent, restart_schedule(scratch.template, warm.start_lr, warm.start_pref_e,
                                                  warm.start_pref_f),
                         warm.numb_steps or scratch.steps, restart.because if restart else None,
                         bool(restart and restart.fresh_fitting))


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
    start = starting_point(store, cfg, iteration, member)
    init_model = store.blobs.fetch(start.parent["file_id"], workdir / "parent.pb") if start.parent else None
    if init_model is not None and start.fresh_fitting:
        fresh_fitting_net(init_model, workdir / "parent-fresh-fitting.pb", seed)
        init_model = workdir / "parent-fresh-fitting.pb"
    input_dict = training.make_training_input(start.template, train_sys, cfg.type_map, seed, start.steps,
                                             valid_sys)
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
                            dataset_id=snapshot["_id"], parent=start.parent["_id"] if start.parent else None,
                            input=plain(result.input_dict, nested_lists=False), metrics=plain(metrics),
                            train_seconds=result.wall_time, n_train=len(train_docs), n_validation=len(valid_docs),
                            restarted_because=start.restarted_because)
    model_id = store.store_model(record, result.frozen_model)
    if parity is not None:
        store.store_heldout_predictions(model_id, HeldOutPredictions(cfg.name, iteration, member, **parity))
    store.add_iteration_seconds(cfg.name, iteration, "train_s", science, model_id=model_id)
    observed = observe_member(store, cfg, iteration, member, result.frozen_model, workdir, lmp)
    return {"model_id": str(model_id), "seconds": science, "metrics": metrics,
            **({"observables": sorted(observed)} if observed else {})}
