"""Labeled data in and out: configuration documents → dpdata ``deepmd/npy`` training folders, and
labeled dpdata folders (initial data, a DP-GEN run's ``02.fp/data.*``) → dpdata systems.

Frames are grouped by composition with atoms sorted by type, so every group is one dpdata
``LabeledSystem`` (one folder). Arrays are stored flat in the database; reshaped here.
Units: energies eV, forces eV/Å, virials eV, lengths Å.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import FatalError

if TYPE_CHECKING:
    import dpdata

class LabeledDataError(FatalError, ValueError):
    """Labeled data that must not be trained on (the message names the folder and the fix)."""


LABELED_FIELDS = {"species": 1, "cell": 1, "positions": 1, "label": 1, "hash": 1, "pbc": 1}


def is_validation(config_hash: str, fraction: float) -> bool:
    """Deterministic hold-out by content hash: the same configuration is always on the same side."""
    return fraction > 0 and (int(config_hash[:8], 16) % 1000) < fraction * 1000


def to_labeled_systems(docs, type_map: list[str]) -> list[dpdata.LabeledSystem]:
    """Group labeled configuration documents into dpdata systems (one per composition)."""
    import dpdata  # 1.4 s (its plugins import matplotlib and ASE's io): only where data are converted
    groups: dict[tuple, list[dict]] = defaultdict(list)
    index = {el: i for i, el in enumerate(type_map)}
    for doc in docs:
        types = np.array([index[s] for s in doc["species"]])
        order = np.argsort(types, kind="stable")
        groups[tuple(types[order])].append((doc, order))
    systems = []
    for types, members in sorted(groups.items()):
        types = np.array(types)
        coords, cells, energies, forces, virials = [], [], [], [], []
        for doc, order in members:
            label = doc["label"]
            coords.append(np.reshape(doc["positions"], (-1, 3))[order])
            cells.append(np.reshape(doc["cell"], (3, 3)))
            energies.append(label["energy"])
            forces.append(np.reshape(label["forces"], (-1, 3))[order])
            virials.append(None if label.get("virial") is None else np.reshape(label["virial"], (3, 3)))
        data = {
            "atom_names": list(type_map),
            "atom_numbs": [int((types == i).sum()) for i in range(len(type_map))],
            "atom_types": types,
            "orig": np.zeros(3),
            "cells": np.array(cells),
            "coords": np.array(coords),
            "energies": np.array(energies, dtype=float),
            "forces": np.array(forces),
            "nopbc": False,
        }
        if all(v is not None for v in virials):
            data["virials"] = np.array(virials)
        systems.append(dpdata.LabeledSystem(data=data))
    return systems


def write_deepmd_npy(docs, type_map: list[str], out_dir: Path) -> list[str]:
    """Write one ``deepmd/npy`` folder per composition under ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    paths = []
    for i, system in enumerate(to_labeled_systems(docs, type_map)):
        path = out_dir / f"sys.{i:03d}"
        system.to("deepmd/npy", str(path))
        paths.append(str(path))
    return paths


def split_train_validation(docs, fraction: float = 0.1, min_validation: int = 2) -> tuple[list, list]:
    """Hold out ``fraction`` of the frames (by hash) when at least ``min_validation`` would be held out."""
    train, valid = [], []
    for doc in docs:
        (valid if is_validation(doc["hash"], fraction) else train).append(doc)
    if len(valid) < min_validation or not train:
        return list(docs), []
    return train, valid


def system_folders(path: str | os.PathLike) -> list[Path]:
    """The dpdata system folders (holding ``type.raw``) at or below ``path``, sorted."""
    path = Path(path)
    if (path / "type.raw").is_file():
        return [path]
    return sorted(p.parent for p in path.glob("**/type.raw"))


def _format_of(folder: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    return "deepmd/npy" if any(folder.glob("set.*")) else "deepmd/raw"


def labeled_data_problem(system: dpdata.LabeledSystem) -> str | None:
    """What makes a labeled dpdata system unfit to train on, or None: no frames, or coordinates, cells,
    energies, forces or virials that are not finite numbers (NaN, infinity), named with the first frame."""
    if system.get_nframes() == 0:
        return "has no frames"
    for key, what in (("coords", "coordinates"), ("cells", "cells"), ("energies", "energies"),
                      ("forces", "forces"), ("virials", "virials")):
        if key not in system.data:
            continue
        values = np.asarray(system.data[key], dtype=float).reshape(system.get_nframes(), -1)
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if len(bad):
            return f"has {what} that are not finite numbers (NaN or infinity) in {len(bad)} frame(s), first frame {bad[0]}"
    return None


def labeled_systems(path: str | os.PathLike, type_map: list[str],
                    fmt: str = "auto") -> Iterator[tuple[Path, dpdata.LabeledSystem]]:
    """Each labeled dpdata system at or below ``path``, as ``(folder, LabeledSystem)``.

    Args:
        path: a deepmd/npy or deepmd/raw system folder, or a folder holding several.
        type_map: element symbols in the campaign's type order (dpdata remaps the data's types).
        fmt: ``"deepmd/npy"``, ``"deepmd/raw"`` or ``"auto"`` (npy when ``set.*`` exists).

    Raises:
        FileNotFoundError: no system (no ``type.raw``) at or below ``path``.
        LabeledDataError: a system with non-finite numbers (see :func:`labeled_data_problem`).
    """
    import dpdata  # 1.4 s: only where data are read
    folders = system_folders(path)
    if not folders:
        raise FileNotFoundError(f"{path}: no deepmd/npy or deepmd/raw system (no type.raw) at or below it")
    for folder in folders:
        system = dpdata.LabeledSystem(str(folder), fmt=_format_of(folder, fmt), type_map=list(type_map))
        problem = labeled_data_problem(system)
        if problem:
            raise LabeledDataError(f"{folder} {problem}. Fix: remove or relabel those frames (firegen trains on "
                                   "no NaN)")
        yield folder, system
