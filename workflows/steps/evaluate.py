"""Testing a frozen model: energy, force and virial errors on labeled ``deepmd/npy`` systems, as ``dp test``
reports them, and the parity points the report plots; and testing a committee: whether its force deviation still
measures its error (:func:`committee_calibration`).

Units (DeePMD-kit conventions): energies in eV, forces in eV/Å, virials in eV; RMSEs of energy and virial per atom
(eV/atom), force RMSEs per component (eV/Å).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _file_stamp(path) -> tuple[int, int]:
    st = Path(path).stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=2)
def _deep_pot(path: str, stamp: tuple[int, int]):
    """deepmd-kit's inference object for a frozen model, loaded once per (path, mtime, size): a train
    Firework tests the same model on its training and validation sets."""
    from deepmd.infer import DeepPot

    return DeepPot(path)


def evaluate_model(
    model: Path,
    systems: Sequence[str | os.PathLike],
    type_map: Sequence[str] | None = None,
    parity_forces: int = 0,
) -> dict[str, Any]:
    """Energy, force and virial RMSEs of a frozen model on labeled ``deepmd/npy`` systems.

    Uses deepmd-kit's Python inference (:class:`deepmd.infer.DeepPot`) and dpdata, and
    mirrors ``dp test``: energy and virial errors are divided by the number of atoms of
    each frame, force errors are over all Cartesian components. Frames of all systems
    are pooled.

    Args:
        model (Path): Frozen model (``.pb``).
        systems (Sequence[str | PathLike]): ``deepmd/npy`` system folders with energies,
            forces and, optionally, virials.
        type_map (Sequence[str] | None): Element order of the data; default each
            system's own ``type_map.raw``. Elements are matched to the model's type map
            by name.
        parity_forces (int): When positive, also return the points of parity plots
            (``parity``): every frame's energy per atom and about this many force
            components (every ``force_stride``-th), labels and predictions.

    Returns:
        dict: ``n_frames`` (int), ``n_atoms`` (total atoms over frames, int),
        ``rmse_e_per_atom`` (eV/atom), ``rmse_f`` (eV/Å), ``mae_e_per_atom``
        (eV/atom), ``mae_f`` (eV/Å) and, only if every system has virials,
        ``rmse_v_per_atom`` (eV/atom). NaN metrics if there are no frames. With
        ``parity_forces``: ``parity`` {``energy_label``, ``energy_model`` (eV/atom),
        ``force_label``, ``force_model`` (eV/Å), ``force_stride``}, flat lists.

    Raises:
        ValueError: If a system has an element the model does not know.
    """
    import dpdata

    dp_model = _deep_pot(str(Path(model).resolve()), _file_stamp(model))
    model_types = list(dp_model.get_type_map())
    e_err: list[np.ndarray] = []
    f_err: list[np.ndarray] = []
    v_err: list[np.ndarray] = []
    have_virials = True
    n_frames = n_atoms = 0
    e_pairs: list[tuple[np.ndarray, np.ndarray]] = []  # (label, model) energies per atom
    f_pairs: list[tuple[np.ndarray, np.ndarray]] = []  # (label, model) force components
    for path in systems:
        kwargs = {"type_map": list(type_map)} if type_map is not None else {}
        system = dpdata.LabeledSystem(str(path), fmt="deepmd/npy", **kwargs)
        nf = system.get_nframes()
        if nf == 0:
            continue
        atype = model_atom_types(system, model_types, path)
        nat = len(atype)
        cells = None if system.nopbc else system["cells"].reshape(nf, 9)
        energy, force, virial = dp_model.eval(
            system["coords"].reshape(nf, -1), cells, atype
        )[:3]
        e_err.append((energy.reshape(nf) - system["energies"].reshape(nf)) / nat)
        f_err.append((force.reshape(nf, -1) - system["forces"].reshape(nf, -1)).ravel())
        e_pairs.append((system["energies"].reshape(nf) / nat, energy.reshape(nf) / nat))
        f_pairs.append((system["forces"].ravel(), force.ravel()))
        if "virials" in system.data and not system.nopbc:
            v_err.append((virial.reshape(nf, 9) - system["virials"].reshape(nf, 9)).ravel() / nat)
        else:
            have_virials = False
        n_frames += nf
        n_atoms += nf * nat

    def rmse(parts: list[np.ndarray]) -> float:
        return float(np.sqrt(np.mean(np.concatenate(parts) ** 2))) if parts else float("nan")

    def mae(parts: list[np.ndarray]) -> float:
        return float(np.mean(np.abs(np.concatenate(parts)))) if parts else float("nan")

    metrics: dict[str, Any] = {
        "n_frames": n_frames,
        "n_atoms": n_atoms,
        "rmse_e_per_atom": rmse(e_err),
        "rmse_f": rmse(f_err),
        "mae_e_per_atom": mae(e_err),
        "mae_f": mae(f_err),
    }
    if have_virials and v_err:
        metrics["rmse_v_per_atom"] = rmse(v_err)
    if parity_forces > 0 and e_pairs:
        metrics["parity"] = parity_points(e_pairs, f_pairs, parity_forces)
    return metrics


def model_atom_types(system, model_types: Sequence[str], path) -> np.ndarray:
    """The system's atom types as indices into the model's type map (elements matched by name).

    Raises:
        ValueError: the system has an element the model does not know.
    """
    names = system["atom_names"]
    unknown = sorted({names[t] for t in system["atom_types"]} - set(model_types))
    if unknown:
        raise ValueError(f"system {path} has elements {unknown} not in the model's type map {list(model_types)}")
    return np.array([list(model_types).index(names[t]) for t in system["atom_types"]])


def parity_points(energies: list[tuple[np.ndarray, np.ndarray]], forces: list[tuple[np.ndarray, np.ndarray]],
                  max_forces: int) -> dict[str, Any]:
    """Flat lists of (label, model) energies per atom (every frame) and force components (every
    ``force_stride``-th, about ``max_forces``), for parity plots."""
    f_label = np.concatenate([lab for lab, _ in forces])
    f_model = np.concatenate([mod for _, mod in forces])
    stride = max(1, -(-len(f_label) // max_forces))
    return {"energy_label": np.concatenate([lab for lab, _ in energies]).tolist(),
            "energy_model": np.concatenate([mod for _, mod in energies]).tolist(),
            "force_label": f_label[::stride].tolist(), "force_model": f_model[::stride].tolist(),
            "force_stride": stride}


@dataclass(frozen=True)
class Calibration:
    """Whether a committee's force deviation still measures its error, on labeled frames (eV/Å).

    Attributes:
        frames: the frames scored.
        devi_f: the mean over frames of ``max_devi_f``, the largest atomic deviation of the members' forces from
            their mean (deepmd-kit's ``calc_model_devi_f``: what exploration compares with the trust levels).
        max_err_f: the mean over frames of the largest atomic force error of the members' mean prediction.
    """

    frames: int
    devi_f: float
    max_err_f: float

    @property
    def ratio(self) -> float:
        """``devi_f / max_err_f``: about 1 or above when the deviation measures the error; near 0 for a committee
        of near-copies, which agree however wrong they are."""
        return self.devi_f / self.max_err_f if self.max_err_f > 0 else float("inf")

    def as_dict(self) -> dict[str, float]:
        return {"frames": self.frames, "devi_f": self.devi_f, "max_err_f": self.max_err_f, "ratio": self.ratio}


def deviation_and_error(forces: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, from the members' forces (models x frames x atoms x 3, eV/Å) and the reference's (frames x atoms
    x 3): ``max_devi_f`` (the largest atomic RMS deviation of the members from their mean; deepmd-kit's
    ``calc_model_devi_f``, what LAMMPS writes during exploration) and the largest atomic force error of the
    members' mean (the same function against the reference)."""
    from deepmd.infer.model_devi import calc_model_devi_f

    return calc_model_devi_f(forces)[0], calc_model_devi_f(forces.mean(axis=0)[None], reference)[0]


def committee_calibration(models: Sequence[Path], systems: Sequence[str | os.PathLike],
                          type_map: Sequence[str]) -> Calibration | None:
    """:class:`Calibration` of a committee (frozen models) on labeled ``deepmd/npy`` systems; None without frames."""
    import dpdata

    read = [(path, dpdata.LabeledSystem(str(path), fmt="deepmd/npy", type_map=list(type_map))) for path in systems]
    loaded = [(path, system) for path, system in read if system.get_nframes()]
    if not loaded:
        return None
    forces: list[list[np.ndarray]] = [[] for _ in loaded]  # per system, per model: frames x atoms x 3
    for model in models:  # each model loaded once
        dp_model = _deep_pot(str(Path(model).resolve()), _file_stamp(model))
        types = list(dp_model.get_type_map())
        for k, (path, system) in enumerate(loaded):
            nf = system.get_nframes()
            atype = model_atom_types(system, types, path)
            cells = None if system.nopbc else system["cells"].reshape(nf, 9)
            forces[k].append(dp_model.eval(system["coords"].reshape(nf, -1), cells, atype)[1].reshape(nf, -1, 3))
    devi, err = zip(*(deviation_and_error(np.asarray(f), system["forces"].reshape(system.get_nframes(), -1, 3))
                      for f, (_, system) in zip(forces, loaded)))
    devi_all, err_all = np.concatenate(devi), np.concatenate(err)
    return Calibration(len(devi_all), float(devi_all.mean()), float(err_all.mean()))
