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
    assert first_unphysical_frame(frames, 0.5)[0] == 2
    codes = np.full(5, CANDIDATE)
    cut, at, why = cut_trajectory(codes, frames, 0.5)
    assert at == 2 and list(cut) == [CANDIDATE, CANDIDATE, FAILED, FAILED, FAILED] and "covalent" in why
    assert list(codes) == [CANDIDATE] * 5  # the input is not changed
    assert cut_trajectory(codes, [good] * 5, 0.5)[1] is None


def test_an_energy_explosion_cuts_the_trajectory_where_it_starts():
    frames = [_na3ocl_like()] * 6
    energies = [-3.10, -3.05, -2.90, 1.5, 40.0, -3.0]  # eV/atom; frame 3 is 4.6 eV/atom above frame 0
    at, why = first_unphysical_frame(frames, 0.5, energies, max_energy_rise=2.0)
    assert at == 3 and "eV/atom" in why
    assert first_unphysical_frame(frames, 0.5, energies, max_energy_rise=None) == (None, "")
    assert first_unphysical_frame(frames, 0.5, [-3.1, float("nan")] + [-3.1] * 4, 2.0)[0] == 1
    squeezed = frames[0].copy()
    squeezed.positions[1] = squeezed.positions[0] + [0.4, 0.0, 0.0]
    # an overlap before the energy runs away is reported as the overlap
    at, why = first_unphysical_frame([frames[0], squeezed] + frames[2:], 0.5, energies, 2.0)
    assert at == 1 and "covalent" in why


def test_lammps_thermo_gives_the_potential_energy_of_every_judged_frame(tmp_path):
    from firegen.workflows.steps.lammps import thermo_potential_energy

    log = tmp_path / "log.lammps"
    log.write_text("\n".join([
        "LAMMPS (2 Aug 2023)", "Setting up Verlet run ...",
        "   Step          Temp          PotEng         KinEng",
        "         0   300           -110.5          1.2",
        "        10   310           -110.1          1.3",
        "Loop time of 0.5 on 1 procs for 10 steps with 32 atoms", "",
        "   Step          Temp          PotEng         KinEng",  # the next segment repeats step 10
        "        10   310           -110.1          1.3",
        "        20   900           -95.0           3.4",
        "Loop time of 0.5 on 1 procs for 10 steps with 32 atoms"]))
    assert thermo_potential_energy(log, np.array([0, 10, 20])).tolist() == [-110.5, -110.1, -95.0]
    assert thermo_potential_energy(log, np.array([0, 10, 30])) is None  # a frame without a thermo row
    assert thermo_potential_energy(tmp_path / "missing.lammps", np.array([0])) is None


def _neighbor_list_count(atoms, ratio):
    from ase.data import covalent_radii
    from ase.neighborlist import neighbor_list

    radii = covalent_radii[atoms.numbers]
    i, j, d = neighbor_list("ijd", atoms, ratio * 2 * radii.max())
    return int(np.count_nonzero(d < ratio * (radii[i] + radii[j]))) // 2


def test_the_dense_pair_count_agrees_with_ase_neighbor_lists_in_skewed_small_and_open_cells():
    rng = np.random.default_rng(7)
    cases = []
    for k in range(12):
        atoms = bulk("NaCl", "rocksalt", a=5.64) * (2, 2, 2)  # primitive fcc cell: 60° between vectors
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.uniform(-0.15, 0.15, (3, 3))), scale_atoms=True)
        atoms.positions += rng.normal(0, 0.6, atoms.positions.shape)  # some pairs overlap, across faces too
        cases.append(atoms)
    thin = bulk("Cu", "fcc", a=3.61, cubic=True)
    thin.set_cell(np.diag([3.61, 3.61, 1.2]), scale_atoms=False)  # thinner than the cutoff: ASE's list
    open_cluster = cases[0].copy()
    open_cluster.pbc = False
    slab = cases[1].copy()
    slab.pbc = (True, True, False)
    counts = [overlapping_pairs(a, 0.6) for a in cases + [thin, open_cluster, slab]]
    assert counts == [_neighbor_list_count(a, 0.6) for a in cases + [thin, open_cluster, slab]]
    assert sum(counts[:12]) > 0 and counts[12] > 0  # the comparison saw overlaps, not only zeros
