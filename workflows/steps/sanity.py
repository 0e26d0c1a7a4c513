"""MD sanity: where a trajectory stops being physical.

A committee that has not seen close contacts can drive MD into overlapping atoms, or into a run-away
potential energy; those frames have enormous but meaningless deviations and must not reach the
candidate pool. Two checks, per frame:

* distance: some atom pair is closer than ``ratio × (r_cov(i) + r_cov(j))`` (covalent radii from
  :mod:`ase.data`, distances with periodic images, in Å);
* energy: the potential energy per atom rose more than ``max_energy_rise`` eV/atom above the first
  frame's (only when the engine reports energies).

Everything from the first unphysical frame on is cut (counted as failed, never a candidate): once
atoms have overlapped or the energy has exploded, later frames are artefacts too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from firegen.workflows.steps.select import FAILED


def overlapping_pairs(atoms, ratio: float) -> int:
    """Number of atom pairs closer than ``ratio`` times the sum of their covalent radii."""
    if ratio <= 0 or len(atoms) < 2:
        return 0
    radii = covalent_radii[atoms.numbers]
    cutoff = ratio * 2 * float(radii.max())
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    return int(np.count_nonzero(d < ratio * (radii[i] + radii[j]))) // 2


def first_unphysical_frame(frames: Sequence, ratio: float, energies_per_atom=None,
                           max_energy_rise: float | None = None) -> tuple[int | None, str]:
    """Index of the first unphysical frame (None when the whole trajectory is sane) and why.

    Args:
        frames: the trajectory's ``ase.Atoms``.
        ratio: fraction of the covalent-radius sum below which a pair overlaps (0 disables).
        energies_per_atom: potential energy per atom of each frame (eV/atom), or None.
        max_energy_rise: largest allowed rise over the first frame's energy (eV/atom); None disables.
    """
    energy_cut = None
    if energies_per_atom is not None and max_energy_rise is not None and len(energies_per_atom):
        e = np.asarray(energies_per_atom, dtype=float)
        bad = np.flatnonzero(~np.isfinite(e) | (e - e[0] > max_energy_rise))
        energy_cut = int(bad[0]) if bad.size else None
    stop = len(frames) if energy_cut is None else energy_cut
    if ratio > 0:
        for k in range(stop):
            if overlapping_pairs(frames[k], ratio):
                return k, f"atoms closer than {ratio:g} x the sum of their covalent radii"
    if energy_cut is not None:
        return energy_cut, f"potential energy rose more than {max_energy_rise:g} eV/atom above the first frame"
    return None, ""


def cut_trajectory(codes: np.ndarray, frames: Sequence, ratio: float, energies_per_atom=None,
                   max_energy_rise: float | None = None) -> tuple[np.ndarray, int | None, str]:
    """Frame codes with every frame from the first unphysical one on set to failed; that index; why."""
    cut, why = first_unphysical_frame(frames, ratio, energies_per_atom, max_energy_rise)
    codes = np.array(codes, copy=True)
    if cut is not None:
        codes[cut:] = FAILED
    return codes, cut, why
