"""MD sanity: where a trajectory stops being physical.

A committee that has not seen close contacts can drive MD into overlapping atoms; those frames
have enormous but meaningless deviations and must not reach the candidate pool. The check is per
atom pair: a frame is unphysical when some pair is closer than ``ratio × (r_cov(i) + r_cov(j))``
(covalent radii from :mod:`ase.data`, distances with periodic images, in Å). Everything from the
first unphysical frame on is cut: once atoms have overlapped, later frames are artefacts too.

Not wired into the exploration yet (issue 5): with a ratio of 0.5 it cuts the 1500 K trajectory of
the EMT test campaign at frame 26, whose later frames the tiny committee calls "accurate".
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


def first_unphysical_frame(frames: Sequence, ratio: float) -> int | None:
    """Index of the first frame with overlapping atoms, or None when the whole trajectory is sane."""
    if ratio <= 0:
        return None
    for k, atoms in enumerate(frames):
        if overlapping_pairs(atoms, ratio):
            return k
    return None


def cut_trajectory(codes: np.ndarray, frames: Sequence, ratio: float) -> tuple[np.ndarray, int | None]:
    """Frame codes with every frame from the first unphysical one on set to failed; and that index."""
    cut = first_unphysical_frame(frames, ratio)
    codes = np.array(codes, copy=True)
    if cut is not None:
        codes[cut:] = FAILED
    return codes, cut
