"""Shared pieces of the exploration engines: the MD condition, the result, the model-deviation file.

See :mod:`firegen.workflows.steps.explore` for units and the meaning of the deviation columns.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from firegen.campaign.conditions import ENSEMBLES, MDCondition  # noqa: F401  (the engines' input, re-exported)
from firegen.workflows.steps import StepError

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


#: File names inside an exploration work folder.
CONF_FILE = "conf.lmp"
INPUT_FILE = "input.lammps"
LOG_FILE = "log.lammps"
SCREEN_FILE = "lmp.out"
DEVI_FILE = "model_devi.out"
DUMP_FILE = "traj.dump"
MANIFEST_FILE = "explore.json"
ASE_TRAJ_FILE = "traj.extxyz"


class ExplorationError(StepError):
    """An exploration run failed; ``log_tail`` holds the end of the engine's log."""


@dataclass
class ExplorationResult:
    """Outcome of one exploration trajectory.

    Attributes:
        steps: MD step of each saved frame, shape ``(n,)``.
        max_devi_f: Max over atoms of the committee force deviation (eV/Å), ``(n,)``.
        min_devi_f, avg_devi_f: Min / mean over atoms of the same (eV/Å).
        max_devi_v, min_devi_v, avg_devi_v: Virial deviation (eV/atom), see module doc.
        devi_e: Energy deviation (eV/atom) or None if the engine did not write it.
        frames: The saved configurations, ``frames[i]`` at ``steps[i]`` (list of
            :class:`ase.Atoms`; ``info`` has ``step``, ``max_devi_f``, ``max_devi_v``).
        wall_time: Wall-clock seconds of the MD run (engine start to end).
        engine: ``"lammps"`` or ``"ase"``.
        workdir: The work folder with the inputs, logs and raw outputs.
        extra: Engine details: LAMMPS gives ``command`` (argv) and ``loop_time`` (s of
            the MD loop alone, from ``log.lammps``; ``wall_time`` also counts start-up,
            i.e. loading TensorFlow and the models, several seconds).
    """

    steps: np.ndarray
    max_devi_f: np.ndarray
    max_devi_v: np.ndarray
    frames: list[Atoms]
    wall_time: float
    min_devi_f: np.ndarray | None = None
    avg_devi_f: np.ndarray | None = None
    min_devi_v: np.ndarray | None = None
    avg_devi_v: np.ndarray | None = None
    devi_e: np.ndarray | None = None
    engine: str = "lammps"
    workdir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


# --------------------------------------------------------------------------- helpers


def _check_type_map(type_map: Sequence[str]) -> list[str]:
    from ase.data import atomic_numbers

    if isinstance(type_map, str) or not type_map:
        raise ValueError(f"type_map must be a non-empty list of element symbols, got {type_map!r}")
    tm = list(type_map)
    for sym in tm:
        if sym not in atomic_numbers or sym == "X":
            raise ValueError(f"type_map entry {sym!r} is not a chemical element symbol")
    if len(set(tm)) != len(tm):
        raise ValueError(f"type_map has duplicate entries: {tm}")
    return tm


def _check_atoms(atoms: Atoms, type_map: list[str]) -> None:
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    missing = sorted(set(atoms.get_chemical_symbols()) - set(type_map))
    if missing:
        raise ValueError(f"species {missing} of the structure are not in type_map {type_map}")
    if not all(atoms.pbc):
        raise ValueError("exploration needs a fully periodic structure (atoms.pbc all True)")
    if abs(atoms.cell.volume) < 1e-6:
        raise ValueError("the structure's cell has zero volume; set atoms.cell")


def _check_models(models: Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(models, (str, os.PathLike)) or not models:
        raise ValueError(f"models must be a non-empty list of frozen model files, got {models!r}")
    paths = [Path(m).resolve() for m in models]
    if len(paths) < 2:
        # pair_style deepmd writes no model_devi.out for a single model, and the
        # deviation of a one-model committee would be 0 anyway.
        raise ValueError(
            f"models must be a committee of at least 2 frozen models for the model "
            f"deviation, got {len(paths)}"
        )
    for p in paths:
        if not p.is_file():
            raise ValueError(f"model file {p} does not exist")
    return paths


def parse_model_devi(path: Path) -> dict[str, np.ndarray | None]:
    """Read a deepmd-kit ``model_devi.out`` into named columns.

    Returns:
        dict with ``steps`` (int), ``max_devi_v``, ``min_devi_v``, ``avg_devi_v``
        (eV/atom), ``max_devi_f``, ``min_devi_f``, ``avg_devi_f`` (eV/Å) and ``devi_e``
        (eV/atom, None if the file has only 7 columns); extra (per-atom) columns are
        ignored.

    Raises:
        ExplorationError: If the file is missing, has no rows or too few columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ExplorationError(f"model deviation file {path} was not written")
    data = np.loadtxt(path, comments="#", ndmin=2)
    if data.size == 0:
        raise ExplorationError(f"model deviation file {path} has no rows")
    if data.shape[1] < 7:
        raise ExplorationError(
            f"model deviation file {path} has {data.shape[1]} columns, expected >= 7 "
            "(step, max/min/avg_devi_v, max/min/avg_devi_f)"
        )
    names = ("max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f")
    out: dict[str, np.ndarray | None] = {"steps": np.rint(data[:, 0]).astype(np.int64)}
    for i, name in enumerate(names, start=1):
        out[name] = data[:, i].copy()
    out["devi_e"] = data[:, 7].copy() if data.shape[1] >= 8 else None
    return out


def _annotate(frames: list[Atoms], devi: dict[str, Any]) -> None:
    for i, atoms in enumerate(frames):
        atoms.info["step"] = int(devi["steps"][i])
        atoms.info["max_devi_f"] = float(devi["max_devi_f"][i])
        atoms.info["max_devi_v"] = float(devi["max_devi_v"][i])


def _result(devi: dict[str, Any], frames: list[Atoms], wall: float, engine: str, workdir: Path,
            **extra: Any) -> ExplorationResult:
    _annotate(frames, devi)
    return ExplorationResult(
        steps=devi["steps"],
        max_devi_f=devi["max_devi_f"],
        max_devi_v=devi["max_devi_v"],
        frames=frames,
        wall_time=wall,
        min_devi_f=devi["min_devi_f"],
        avg_devi_f=devi["avg_devi_f"],
        min_devi_v=devi["min_devi_v"],
        avg_devi_v=devi["avg_devi_v"],
        devi_e=devi["devi_e"],
        engine=engine,
        workdir=workdir,
        extra=dict(extra),
    )


