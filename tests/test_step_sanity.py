"""MD sanity: overlapping atoms end a trajectory's useful part; everything after counts as failed."""

import numpy as np
from ase.build import bulk

from firegen.workflows.steps.sanity import cut_trajectory, first_unphysical_frame, overlapping_pairs
from firegen.workflows.steps.select import CANDIDATE, FAILED


def _na3ocl_like():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=3)
    return atoms


def test_a_crystal_is_sane_and_an_overlap_is_not():
    atoms = _na3ocl_like()
    assert overlapping_pairs(atoms, 0.5) == 0
    squeezed = atoms.copy()
    # Na–Cl covalent radii 1.66 + 1.02 Å: 1.0 Å apart is below half their sum
    squeezed.positions[1] = squeezed.positions[0] + [1.0, 0.0, 0.0]
    assert overlapping_pairs(squeezed, 0.5) >= 1
    assert overlapping_pairs(squeezed, 0.0) == 0  # the check can be turned off


def test_overlap_across_the_periodic_boundary_counts():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.positions[0] = [0.05, 0.0, 0.0]
    atoms.positions[1] = [atoms.cell[0, 0] - 0.05, 0.0, 0.0]  # 0.1 Å apart through the boundary
    assert overlapping_pairs(atoms, 0.5) == 1


def test_frames_after_the_first_unphysical_one_are_failed():
    good = _na3ocl_like()
    bad = good.copy()
    bad.positions[1] = bad.positions[0] + [0.4, 0.0, 0.0]
    frames = [good, good, bad, good, good]  # a frame after the overlap is an artefact too
    assert first_unphysical_frame(frames, 0.5) == 2
    codes = np.full(5, CANDIDATE)
    cut, at = cut_trajectory(codes, frames, 0.5)
    assert at == 2 and list(cut) == [CANDIDATE, CANDIDATE, FAILED, FAILED, FAILED]
    assert list(codes) == [CANDIDATE] * 5  # the input is not changed
    assert cut_trajectory(codes, [good] * 5, 0.5)[1] is None
