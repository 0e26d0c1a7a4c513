"""The final-model Firework: one DeePMD model trained longer on every label of the campaign, frozen,
compressed, validated on held-out frames per system and per condition, stored like a committee member.

Provenance is the committee's: the ``models`` document (``iteration`` :data:`~firegen.db.properties.FINAL_ITERATION`,
member 0, ``kind: "final"``) names its dataset snapshot (every labeled configuration when it was taken), holds
its deepmd input, seed and metrics, and its held-out predictions go to ``heldout_predictions`` for parity plots.
"""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from pathlib import Path

from fireworks import Firework, Workflow

from firegen.campaign.config import CampaignConfig, validate_dict
from firegen.campaign.config_final import FinalConfig
from firegen.campaign.errors import FatalError
from firegen.campaign.labeled_data import LABELED_FIELDS, split_train_validation, write_deepmd_npy
from firegen.campaign.mappings import deep_merge
from firegen.campaign.plain import plain
from firegen.campaign.records import HeldOutPredictions, TrainingRecord
from firegen.campaign.seeds import training_seed
from firegen.db.properties import FINAL_ITERATION, PropertyStore
from firegen.db.repository import ResultsStore
from firegen.workflows.steps import train as training
from firegen.workflows.steps.final_model import compress_model, validation_metrics
from firegen.workflows.tasks import FinalizeTask

#: Force components of the held-out frames kept for the final model's parity plot.
PARITY_FORCES = 3000


def group_of(origin: dict) -> tuple[str, str]:
    """``(system, condition)`` labels of a configuration's origin: the condition of an explored frame as
    ``"<ensemble> <T> K[ <P> bar]"``, ``"initial data"`` for the starting data, ``"imported"`` for imports."""
    kind = origin.get("kind")
    system = origin.get("system") or ("imported" if kind == "imported" else "unknown")
    cond = origin.get("condition") or {}
    if kind != "explored" or not cond:
        return system, "imported" if kind == "imported" else "initial data"
    label = f"{cond.get('ensemble', 'md')} {cond.get('temperature', 0):g} K"
    if cond.get("pressure") is not None and str(cond.get("ensemble", "")).startswith("npt"):
        label += f" {cond['pressure']:g} bar"
    return system, label


def grouped_metrics(model: Path, docs: list[dict], type_map: list[str], workdir: Path) -> dict:
    """Validation metrics of ``model`` per system and per condition of the held-out ``docs``:
    ``{"per_system": {system: metrics}, "per_condition": {"<system> | <condition>": metrics}}``."""
    by_system, by_condition = defaultdict(list), defaultdict(list)
    for doc in docs:
        system, condition = group_of(doc.get("origin") or {})
        by_system[system].append(doc)
        by_condition[f"{system} | {condition}"].append(doc)
    out: dict = {"per_system": {}, "per_condition": {}}
    for key, groups in (("per_system", by_system), ("per_condition", by_condition)):
        for i, (name, members) in enumerate(sorted(groups.items())):
            folder = workdir / key / f"g{i:03d}"
            shutil.rmtree(folder, ignore_errors=True)
            out[key][name] = validation_metrics(model, write_deepmd_npy(members, type_map, folder), type_map)
    return out


def with_final(cfg: CampaignConfig, overrides: dict | None, source: str = "firegen finalize") -> CampaignConfig:
    """``cfg`` with ``overrides`` over its ``final:`` section (``firegen finalize --numb-steps / --training``: a
    longer or otherwise different final training of a campaign already run), validated as a config is: one
    error line per problem, naming ``final.<field>`` and the fix. ``training`` is merged into the section's own
    (deepmd-kit input parts); ``cfg`` itself when there is nothing to override."""
    if not overrides:
        return cfg
    data = cfg.frozen()
    final = dict(data.get("final") or {})
    for key, value in overrides.items():
        final[key] = deep_merge(final.get(key) or {}, value) if key == "training" and isinstance(value, dict) else value
    data["final"] = final
    return validate_dict(data, source)


def member_steps(store: ResultsStore, cfg: CampaignConfig) -> int:
    """Training steps behind a member of the campaign's last committee (the most of its members'), warm-start
    parents included; ``committee.numb_steps`` when none is trained or it had fewer."""
    iterations = [i for i in store.trained_iterations(cfg.name) if i >= 0]
    if not iterations:
        return cfg.committee.numb_steps
    behind = [store.steps_behind(m["_id"]) for m in store.trained_committee(cfg.name, iterations[-1])]
    return max([cfg.committee.numb_steps, *behind])


def final_input(cfg: CampaignConfig, train_sys: list[str], valid_sys: list[str] | None, seed: int,
                behind: int | None = None) -> dict:
    """The final model's deepmd input: committee.training with final.training merged over it, the final steps
    (``final.numb_steps``, or :data:`~firegen.campaign.config_final.STEPS_FACTOR` x ``behind``, the steps behind
    a last-committee member: :func:`member_steps`)."""
    final = cfg.final or FinalConfig()
    template = deep_merge(cfg.committee.training, final.training)
    steps = final.steps(behind or cfg.committee.numb_steps)
    return training.make_training_input(template, train_sys, cfg.type_map, seed, steps, valid_sys)


def finalize(store: ResultsStore, cfg: CampaignConfig, workdir: Path, force: bool = False) -> dict:
    """Train, freeze, compress, validate and store the campaign's final model.

    Skipped when the final model is stored already (unless ``force``: then it is trained again on the
    same final snapshot and replaces the stored one).

    Returns:
        ``{"model_id", "seconds", "metrics", "compressed", "compress_error", "dataset_size"}``, or
        ``{"model_id", "skipped": True}``.
    """
    props = PropertyStore(store.db)
    existing = props.final_model(cfg.name)
    if existing and existing.get("file_id") and not force:
        return {"model_id": str(existing["_id"]), "skipped": True}
    final = cfg.final or FinalConfig()
    snapshot = store.snapshot_dataset(cfg.name, FINAL_ITERATION)
    docs = store.snapshot_members(snapshot, {**LABELED_FIELDS, "origin": 1})
    if not docs:
        raise FatalError(f"campaign {cfg.name}: no labeled configurations to train the final model on; "
                         "see `firegen provenance failures`")
    train_docs, valid_docs = split_train_validation(docs, final.validation_fraction)
    workdir = Path(workdir)
    data_dir = workdir / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    train_sys = write_deepmd_npy(train_docs, cfg.type_map, data_dir / "train")
    valid_sys = write_deepmd_npy(valid_docs, cfg.type_map, data_dir / "valid") if valid_docs else None
    seed = training_seed(cfg.name, FINAL_ITERATION, 0)
    t0 = time.perf_counter()
    result = training.train_model(workdir / "train", final_input(cfg, train_sys, valid_sys, seed,
                                                                 member_steps(store, cfg)))
    compressed, compress_error = (compress_model(result.frozen_model, workdir / "compress") if final.compress
                                  else (None, "compression switched off (final.compress: false)"))
    metrics = {"train": training.evaluate_model(result.frozen_model, train_sys, cfg.type_map)}
    parity, groups = None, {}
    if valid_sys:
        metrics["validation"] = training.evaluate_model(result.frozen_model, valid_sys, cfg.type_map,
                                                        parity_forces=PARITY_FORCES)
        parity = metrics["validation"].pop("parity", None)
        groups = grouped_metrics(result.frozen_model, valid_docs, cfg.type_map, workdir / "groups")
    science = time.perf_counter() - t0
    record = TrainingRecord(cfg.name, FINAL_ITERATION, 0, seed=seed, backend=cfg.committee.backend,
                            dataset_id=snapshot["_id"], input=plain(result.input_dict, nested_lists=False),
                            metrics=plain(metrics), train_seconds=result.wall_time, n_train=len(train_docs),
                            n_validation=len(valid_docs))
    model_id = store.store_model(record, result.frozen_model)
    extra: dict = {"validation_groups": groups, "final_settings": final.model_dump(mode="json"),
                   "compress_error": compress_error, "finalize_seconds": science}
    if compressed is not None:
        extra["compressed_file_id"], extra["compressed_sha256"] = store.blobs.put(
            compressed, filename=f"{cfg.name}-final-compressed.pb", metadata={"campaign": cfg.name, "final": True})
    props.mark_final(model_id, extra)
    if parity is not None:
        store.store_heldout_predictions(model_id, HeldOutPredictions(cfg.name, FINAL_ITERATION, 0, **parity))
    store.update_campaign(cfg.name, final_model_id=model_id)
    return {"model_id": str(model_id), "seconds": science, "metrics": plain(metrics),
            "compressed": compressed is not None, "compress_error": compress_error, "dataset_size": len(docs)}


def finalize_workflow(campaign: str, force: bool = False, overrides: dict | None = None) -> Workflow:
    """One gpu Firework that runs :func:`finalize` (``firegen finalize``, or the end of a campaign with
    ``final.at_end``), with ``overrides`` over the campaign's ``final:`` settings (:func:`with_final`)."""
    spec = {"_category": "gpu", "_add_launchpad_and_fw_id": True, "firegen": {"kind": "finalize", "campaign": campaign}}
    extra = {"final": overrides} if overrides else {}
    fw = Firework([FinalizeTask(campaign=campaign, force=force, **extra)], spec=spec, name=f"{campaign}/final")
    return Workflow([fw], name=f"{campaign}/final", metadata={"firegen_campaign": campaign, "firegen_kind": "final"})
