"""Export a campaign's data (dpdata ``deepmd/npy`` or ``extxyz``) and its frozen committee.

    export_data(store, "cu", "out/data")                       # every labeled configuration
    export_data(store, "cu", "out/it3", iteration=3)           # what iteration 3's models trained on
    export_model(store, "cu", "out/models")                    # the latest committee + manifest.json

Data are grouped by formula (one dpdata system per composition: ``out/<formula>/`` for
deepmd/npy, ``out/<formula>.xyz`` for extxyz); ``manifest.json`` beside them lists the
configuration ids and content hashes. Model files are written after their sha256 is checked
against the model document; the manifest names the dataset (ids + hashes) they were trained on.
Importing an exported deepmd/npy folder (``initial_data.deepmd_npy``) gives back the same
configurations (same content hashes) and labels.

Units: energies eV, forces eV/Å, virials eV, lengths Å.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from firegen.campaign.errors import FiregenError
from firegen.campaign.labeled_data import to_labeled_systems
from firegen.db.properties import FINAL_ITERATION
from firegen.db.repository import ResultsStore

__all__ = ["DATA_FORMATS", "Export", "export_data", "export_model"]

DATA_FORMATS = ("deepmd/npy", "extxyz")
_STATUSES = ("labeled", "candidate", "selected", "rejected", "label_failed")
_MODEL_SUFFIX = {"tensorflow": ".pb", "pytorch": ".pth"}


@dataclass
class Export:
    """What an export wrote: the output folder, its files and the manifest (also in manifest.json)."""

    out_dir: Path
    files: list[Path]
    manifest: dict


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _campaign(store: ResultsStore, campaign: str) -> dict:
    doc = store.get_campaign(campaign)
    if doc is None:
        names = store.campaign_names()
        raise FiregenError(f"campaign '{campaign}' is not in the database. Fix: use one of: "
                           f"{', '.join(names) or '(none yet)'}")
    return doc


def _write_manifest(out_dir: Path, manifest: dict) -> Path:
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _unlabeled_systems(docs, type_map: list[str]):
    """dpdata Systems (structures only) grouped by formula."""
    import dpdata

    multi = dpdata.MultiSystems(type_map=list(type_map))
    for doc in docs:
        multi.append(dpdata.System(ResultsStore.atoms({**doc, "label": None}), fmt="ase/structure",
                                   type_map=list(type_map)))
    return list(multi.systems.values())


def export_data(store: ResultsStore, campaign: str, out_dir: str | os.PathLike, *, iteration: int | None = None,
                status: str = "labeled", fmt: str = "deepmd/npy") -> Export:
    """Write a campaign's configurations with dpdata, grouped by formula, plus ``manifest.json``.

    Args:
        store: the results store.
        campaign: campaign name.
        out_dir: output folder (created; existing files of the same names are replaced).
        iteration: export the dataset snapshot that trained iteration ``iteration``'s models
            (status must then be ``labeled``); None: every configuration with ``status``.
        status: ``labeled`` (energies, forces, virials) or another status (structures only).
        fmt: ``deepmd/npy`` or ``extxyz``.

    Raises:
        FiregenError: unknown campaign, iteration without a snapshot, bad format/status, nothing to export.
    """
    if fmt not in DATA_FORMATS:
        raise FiregenError(f"unknown export format '{fmt}'. Fix: use one of {', '.join(DATA_FORMATS)}")
    if status not in _STATUSES:
        raise FiregenError(f"unknown status '{status}'. Fix: use one of {', '.join(_STATUSES)}")
    doc = _campaign(store, campaign)
    type_map = list(doc["type_map"])
    dataset = None
    if iteration is not None:
        if status != "labeled":
            raise FiregenError("--iteration exports a training snapshot, which holds labeled configurations only. "
                               "Fix: drop --status or --iteration")
        dataset = store.find_snapshot(campaign, iteration)
        if dataset is None:
            known = [d["iteration"] for d in store.snapshots(campaign)]
            raise FiregenError(f"campaign '{campaign}' has no training snapshot for iteration {iteration}. Fix: use "
                               f"one of: {', '.join(map(str, known)) or '(none yet: no iteration trained)'}")
        docs = store.snapshot_members(dataset)
    else:
        docs = store.configurations_with_status(campaign, status)
    docs.sort(key=lambda d: d["hash"])
    if not docs:
        raise FiregenError(f"campaign '{campaign}' has no {status} configurations to export"
                           + (f" in iteration {iteration}'s snapshot" if iteration is not None else ""))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labeled = status == "labeled"
    systems = to_labeled_systems(docs, type_map) if labeled else _unlabeled_systems(docs, type_map)
    files, entries = [], []
    for system in systems:
        formula = system.formula
        if fmt == "deepmd/npy":
            path = out_dir / formula
            system.to("deepmd/npy", str(path))
        elif labeled:
            path = out_dir / f"{formula}.xyz"
            system.to("extxyz", str(path))
        else:
            import ase.io

            path = out_dir / f"{formula}.xyz"
            ase.io.write(str(path), system.to("ase/structure"), format="extxyz")
        files.append(path)
        entries.append({"path": path.name, "formula": formula, "frames": len(system)})
    manifest = {
        "campaign": campaign, "iteration": iteration, "status": status, "format": fmt, "type_map": type_map,
        "dataset": None if dataset is None else {"id": str(dataset["_id"]), "hash": dataset["hash"],
                                                 "size": dataset.get("size", len(docs))},
        "systems": entries,
        "configurations": [{"id": str(d["_id"]), "hash": d["hash"]} for d in docs],
        "units": {"energy": "eV", "forces": "eV/Å", "virial": "eV", "length": "Å"},
        "exported_at": _now(), "firegen_version": _version("firegen"), "dpdata_version": _version("dpdata"),
    }
    files.append(_write_manifest(out_dir, manifest))
    return Export(out_dir, files, manifest)


def export_model(store: ResultsStore, campaign: str, out_dir: str | os.PathLike, *,
                 iteration: int | None = None) -> Export:
    """Write one iteration's frozen committee (``graph.000.pb``, ...) and ``manifest.json``.

    Each file's sha256 is checked against its model document before it is written. The manifest
    holds the campaign, iteration, model ids, members, seeds, files and hashes, training metrics,
    the dataset (id, hash, configuration ids and content hashes) and the deepmd-kit version.

    Args:
        iteration: the iteration whose committee to export (default: the latest with stored files);
            ``FINAL_ITERATION`` (-1): the final model (``final.pb``, ``final-compressed.pb`` when compressed).

    Raises:
        FiregenError: unknown campaign, no (such) trained committee, a file failing its check.
    """
    _campaign(store, campaign)
    known = store.trained_iterations(campaign)
    if iteration is None:
        known = [i for i in known if i != FINAL_ITERATION]
        if not known:
            raise FiregenError(f"campaign '{campaign}' has no trained model yet. Fix: export after iteration 0 trains")
        iteration = known[-1]
    models = store.trained_committee(campaign, iteration)
    if not models:
        raise FiregenError(f"campaign '{campaign}' has no trained models for iteration {iteration}. Fix: use one of: "
                           f"{', '.join(map(str, known)) or '(none yet)'}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, entries = [], []
    for m in models:
        data = store.blobs.get(m["file_id"])  # checks the GridFS copy against its own sha256
        digest = hashlib.sha256(data).hexdigest()
        if m.get("sha256") and digest != m["sha256"]:
            raise FiregenError(f"model {m['_id']} (iteration {iteration}, member {m['member']}): file sha256 {digest} "
                               f"differs from the model document's {m['sha256']}. Fix: retrain that member")
        final = iteration == FINAL_ITERATION  # the final model (firegen finalize): final.pb, and compressed
        path = out_dir / (f"final{_MODEL_SUFFIX.get(m.get('backend'), '.pb')}" if final else
                          f"graph.{m['member']:03d}{_MODEL_SUFFIX.get(m.get('backend'), '.pb')}")
        path.write_bytes(data)
        files.append(path)
        if final and m.get("compressed_file_id"):
            files.append(out_dir / "final-compressed.pb")
            files[-1].write_bytes(store.blobs.get(m["compressed_file_id"]))
        entries.append({"id": str(m["_id"]), "member": m["member"], "seed": m["seed"], "backend": m["backend"],
                        "file": path.name, "sha256": digest, "parent": str(m["parent"]) if m.get("parent") else None,
                        "restarted_because": m.get("restarted_because"),
                        "metrics": m.get("metrics"), "train_seconds": m.get("train_seconds"),
                        "n_train": m.get("n_train"), "n_validation": m.get("n_validation"),
                        "dataset_id": str(m["dataset_id"]), "kind": m.get("kind", "committee"),
                        **({"compressed_file": "final-compressed.pb", "compressed_sha256": m["compressed_sha256"],
                            "validation_groups": m.get("validation_groups")} if final and m.get("compressed_file_id")
                           else {"compress_error": m.get("compress_error")} if final else {})})
    dataset_ids = {m["dataset_id"] for m in models}
    datasets = []
    for ds_id in sorted(dataset_ids, key=str):
        ds = store.get_dataset(ds_id) or {}
        members = store.snapshot_briefs(ds) if ds else []
        datasets.append({"id": str(ds_id), "iteration": ds.get("iteration"), "hash": ds.get("hash"),
                         "size": len(members),
                         "configurations": [{"id": str(m["_id"]), "hash": m.get("hash")} for m in members]})
    trained_with = {m.get("deepmd_kit_version") for m in models} - {None}
    manifest = {
        "campaign": campaign, "iteration": iteration, "type_map": list(_campaign(store, campaign)["type_map"]),
        "models": entries, "dataset": datasets[0] if len(datasets) == 1 else datasets,
        "deepmd_kit_version": (sorted(trained_with)[0] if len(trained_with) == 1 else _version("deepmd-kit")),
        "deepmd_kit_version_source": "model documents" if len(trained_with) == 1 else "exporting environment",
        "exported_at": _now(), "firegen_version": _version("firegen"),
    }
    files.append(_write_manifest(out_dir, manifest))
    return Export(out_dir, files, manifest)
