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


#: Up to this many atoms, :func:`overlapping_pairs` compares every pair over the 27 nearest cell
#: images with numpy (0.2 ms for 32 atoms); larger cells use ASE's neighbour list (3 to 7 ms for
#: 32 atoms, but linear in the number of atoms).
DENSE_MAX_ATOMS = 256
_SHIFTS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=float)


def overlapping_pairs(atoms, ratio: float) -> int:
    """Number of atom pairs closer than ``ratio`` times the sum of their covalent radii (periodic
    images included, as ASE's ``neighbor_list`` counts them)."""
    if ratio <= 0 or len(atoms) < 2:
        return 0
    radii = covalent_radii[atoms.numbers]
    cutoff = ratio * 2 * float(radii.max())
    limit = ratio * (radii[:, None] + radii[None, :])
    dense = _image_sq_distances(atoms, cutoff) if len(atoms) <= DENSE_MAX_ATOMS else None
    if dense is not None:
        return int(np.count_nonzero(dense < (limit * limit)[:, :, None])) // 2
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    return int(np.count_nonzero(d < limit[i, j])) // 2


def _image_sq_distances(atoms, cutoff: float) -> np.ndarray | None:
    """Squared distances (Å²) of every ordered pair (i, j) to the nearest 27 images of j, shape
    (N, N, 27) (an atom to itself in its own cell: inf); None when those images might miss a pair
    closer than ``cutoff``: a cell thinner than ``cutoff``, or periodic in some directions only."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    n = len(atoms)
    if not pbc.any():
        diff = (atoms.positions[None, :, :] - atoms.positions[:, None, :]).reshape(-1, 3)
        images = np.zeros((1, 3))
    elif pbc.all():
        cell = atoms.cell.array
        if abs(np.linalg.det(cell)) < 1e-9:
            return None
        heights = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)  # distances between opposite faces
        if cutoff >= heights.min():
            return None  # an image beyond the nearest 27 could be within the cutoff
        frac = np.linalg.solve(cell.T, atoms.positions.T).T
        wrapped = frac[None, :, :] - frac[:, None, :]
        wrapped -= np.round(wrapped)
        diff = (wrapped @ cell).reshape(-1, 3)
        images = _SHIFTS @ cell
    else:
        return None
    # |diff + image|² expanded, one matrix product instead of an (N, N, 27, 3) array
    d2 = ((diff * diff).sum(1)[:, None] + 2 * diff @ images.T + (images * images).sum(1)[None, :])
    d2 = d2.reshape(n, n, len(images))
    d2[np.arange(n), np.arange(n), np.flatnonzero(~images.any(axis=1))[0]] = np.inf
    return d2


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
