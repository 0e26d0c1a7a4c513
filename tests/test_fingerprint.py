"""Structure fingerprints, deduplication, farthest-point and k-means selection (workflows/steps/fingerprint.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from firegen.campaign.config_loop import DedupConfig
from firegen.workflows.steps import fingerprint as fp


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def na3ocl():
    s = Structure.from_file(str(ROOT / "configs" / "structures" / "Na3OCl.cif"))
    s.make_supercell([2, 2, 2])
    atoms = AseAtomsAdaptor.get_atoms(s)
    atoms.rattle(0.1, seed=3)  # a thermal-like frame, not the perfect crystal
    return atoms


@pytest.fixture(scope="module")
def TOL(na3ocl):
    """The default duplicate tolerance of a Na3OCl campaign: what moving every atom by 0.01 Å does."""
    frames = []
    for seed in range(4):
        a = na3ocl.copy()
        a.rattle(0.1, seed=10 + seed)
        frames.append(a)
    return fp.displacement_distance(frames, ["Na", "O", "Cl"], DedupConfig().displacement)


def _distance(a, b, species=("Na", "O", "Cl")):
    x = fp.fingerprints([a, b], species)
    return float(np.linalg.norm(x[0] - x[1]))


def test_permuted_translated_and_wrapped_copies_have_the_same_fingerprint(na3ocl, TOL):
    permuted = na3ocl[np.random.default_rng(0).permutation(len(na3ocl))]
    shifted = na3ocl.copy()
    shifted.translate([1.3, -0.4, 2.9])  # atoms leave the cell ...
    wrapped = shifted.copy()
    wrapped.wrap()  # ... and are folded back: another periodic image of each
    for copy in (permuted, shifted, wrapped):
        assert _distance(na3ocl, copy) < 1e-6
    assert _distance(na3ocl, permuted) < TOL


def test_one_displaced_atom_is_a_different_structure(na3ocl, TOL):
    moved = na3ocl.copy()
    pos = moved.positions.copy()
    pos[5] += [0.3, 0.0, 0.0]  # one Na by 0.3 Å
    moved.positions = pos
    assert _distance(na3ocl, moved) > TOL
    # and every atom moved by a third of the default displacement is still the same structure
    nudged = na3ocl.copy()
    nudged.positions = na3ocl.positions + np.random.default_rng(4).normal(0, 0.0033 / np.sqrt(3), na3ocl.positions.shape)
    assert _distance(na3ocl, nudged) < TOL


def test_a_swapped_pair_of_unlike_atoms_is_a_different_structure(na3ocl, TOL):
    swapped = na3ocl.copy()
    symbols = swapped.get_chemical_symbols()
    na, cl = symbols.index("Na"), symbols.index("Cl")
    symbols[na], symbols[cl] = "Cl", "Na"  # an antisite pair: same composition, different structure
    swapped.set_chemical_symbols(symbols)
    assert _distance(na3ocl, swapped) > TOL


def test_an_element_outside_the_type_map_is_refused(na3ocl):
    with pytest.raises(ValueError, match=r"holds \['Cl'\], not in the type map"):
        fp.fingerprints([na3ocl], ["Na", "O"])


def test_deduplicate_against_stored_and_within_the_batch():
    cu = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((2, 2, 2))
    frames = []
    for seed in range(4):
        a = cu.copy()
        a.rattle(0.08, seed=seed)
        frames.append(a)
    near_copy = frames[1].copy()
    near_copy.positions = near_copy.positions + 1e-4  # a rigid shift: the same structure
    x = fp.fingerprints(frames + [near_copy], ["Cu"])
    stored = fp.FingerprintIndex(x.shape[1])
    stored.add(x[:1], ["labeled-0"])
    # candidates: frames 0..3 and the near copy of frame 1; frame 0 is already labeled
    kept, dups = fp.deduplicate(x, 1e-6, stored, order=[4, 3, 2, 1, 0])
    assert kept.tolist() == [2, 3, 4]  # the near copy came first, so it is kept and frame 1 is its duplicate
    assert dups[0][:2] == ("stored", "labeled-0")
    assert dups[1][:2] == ("candidate", 4)
    assert set(dups) == {0, 1}


def test_farthest_point_sampling_covers_every_cluster_before_repeating_one():
    rng = np.random.default_rng(7)
    centres = np.eye(6)[:4] * 10.0
    cloud = np.concatenate([c + 0.1 * rng.standard_normal((25, 6)) for c in centres])  # 4 clusters of 25
    picked = fp.farthest_point_indices(cloud, 4)
    assert sorted({int(i) // 25 for i in picked}) == [0, 1, 2, 3]
    # random choice of 4 among 100 misses a cluster most of the time: the policy is not chance
    misses = sum(len({int(i) // 25 for i in rng.choice(100, 4, replace=False)}) < 4 for _ in range(200))
    assert misses > 100


def test_farthest_point_sampling_avoids_what_is_stored_and_follows_weights():
    cloud = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0]], dtype=np.float32)
    stored = fp.FingerprintIndex(2)
    stored.add(np.array([[5.05, 0.0]], dtype=np.float32), ["old"])
    first = fp.farthest_point_indices(cloud, 1, stored=stored)
    assert int(first[0]) in (0, 1)  # away from the labeled data near x = 5
    weighted = fp.farthest_point_indices(cloud, 1, weights=np.array([0.2, 0.9, 0.1, 0.1]))
    assert weighted.tolist() == [1]  # no stored data: the most uncertain first


def test_kmeans_covers_every_cluster_for_every_seed():
    rng = np.random.default_rng(7)
    centres = np.eye(6)[:4] * 10.0
    cloud = np.concatenate([c + 0.1 * rng.standard_normal((25, 6)) for c in centres])  # 4 clusters of 25
    for seed in range(10):
        picked = fp.representative_indices(cloud, 4, seed=seed)
        assert sorted(int(i) // 25 for i in picked) == [0, 1, 2, 3], seed


def test_kmeans_follows_the_dense_part_where_farthest_point_goes_to_the_edges():
    """A broad Gaussian blob of 200 frames and a tight clump of 10 near-copies far away: farthest-point sampling
    spends its picks on the blob's rim, k-means on its bulk; both take one frame of the clump, not more."""
    rng = np.random.default_rng(3)
    blob = rng.standard_normal((200, 2))
    clump = np.array([20.0, 0.0]) + 0.1 * rng.standard_normal((10, 2))
    cloud = np.concatenate([blob, clump])
    rim = fp.farthest_point_indices(cloud, 10)
    assert int((rim >= 200).sum()) == 1
    radius_rim = float(np.median(np.linalg.norm(cloud[rim[rim < 200]], axis=1)))
    for seed in range(5):
        picked = fp.representative_indices(cloud, 10, seed=seed)
        assert len(picked) == len(set(picked.tolist())) == 10 and int((picked >= 200).sum()) == 1
        radius = float(np.median(np.linalg.norm(cloud[picked[picked < 200]], axis=1)))
        assert radius < 2.0 < radius_rim, (seed, radius, radius_rim)
        assert fp.representative_indices(cloud, 10, seed=seed).tolist() == picked.tolist()  # reproducible


def test_kmeans_weights_pull_the_batch_towards_the_uncertain_frames():
    rng = np.random.default_rng(5)
    left, right = rng.standard_normal((100, 2)) - [10.0, 0.0], rng.standard_normal((100, 2)) + [10.0, 0.0]
    cloud = np.concatenate([left, right])
    deviation = np.r_[np.full(100, 0.3), np.full(100, 0.015)]  # eV/Å: the left half is twenty times as uncertain
    unweighted = [int((fp.representative_indices(cloud, 10, seed=seed) < 100).sum()) for seed in range(10)]
    weighted = [int((fp.representative_indices(cloud, 10, weights=deviation, seed=seed) < 100).sum())
                for seed in range(10)]
    assert set(unweighted) <= {4, 5, 6} and np.median(unweighted) == 5  # alike halves: alike shares
    assert min(w - u for w, u in zip(weighted, unweighted)) >= 1 and np.median(weighted) >= 8, weighted
    assert fp.representative_indices(cloud, 500).tolist() == list(range(200))  # a cap above the count: all
    with pytest.raises(ValueError, match="weights must be finite"):
        fp.representative_indices(cloud, 10, weights=np.full(200, np.nan))


def test_index_nearest_is_exact():
    rng = np.random.default_rng(1)
    stored = rng.standard_normal((2000, 16)).astype(np.float32)
    index = fp.FingerprintIndex(16)
    index.add(stored, list(range(2000)))
    queries = rng.standard_normal((50, 16)).astype(np.float32)
    dist, rows = index.nearest(queries)
    brute = np.linalg.norm(stored[None] - queries[:, None], axis=2)
    assert rows.tolist() == brute.argmin(axis=1).tolist()
    assert np.allclose(dist, brute.min(axis=1), atol=1e-4)
