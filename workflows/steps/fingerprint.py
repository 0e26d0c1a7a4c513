"""Structure fingerprints: which candidates are near-copies, and which batch covers descriptor space.

Pure numpy/dscribe/faiss; no FireWorks, no database.

A fingerprint is dscribe's SOAP power spectrum of every atom (periodic images included), averaged
over the atoms of the structure (``average="outer"``) and scaled to unit length. It does not change
when like atoms are permuted, the structure is translated or atoms are wrapped into the cell; it
changes when an atom moves. The distance between two structures is the Euclidean distance between
their fingerprints (0 for images of one structure, at most 2). The averaged power spectrum moves with
the square of small displacements, so the distances are small numbers: for 32-atom fcc Cu (EMT MD,
frames every 10 fs) the median distance is about 4e-5 between consecutive frames at 300 K and 2e-4
between frames 200 fs or more apart; one atom moved by 0.3 Å gives 2.5e-4 (``benchmarks/README.md``,
"Label efficiency").

:class:`FingerprintIndex` keeps the fingerprints of the labeled and selected configurations in a
faiss index (exact L2 search, BLAS; 10^5 fingerprints of 312 floats are 125 MB), so looking up the
nearest stored structure of a batch of candidates needs no Python loop over the stored ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "FingerprintIndex",
    "FingerprintSpec",
    "deduplicate",
    "dimension",
    "displacement_distance",
    "farthest_point_indices",
    "fingerprints",
    "representative_indices",
]


@dataclass(frozen=True)
class FingerprintSpec:
    """SOAP settings of a fingerprint (dscribe's names; lengths in Å).

    Fingerprints made with other settings or another species list are not comparable: :meth:`key` names
    the space a fingerprint lives in.
    """

    r_cut: float = 5.0
    n_max: int = 4
    l_max: int = 3
    sigma: float = 0.5

    def key(self, species: Sequence[str]) -> str:
        """A string naming the fingerprint space of these settings and species (stored with fingerprints)."""
        return "soap-outer:" + ",".join(species) + ":" + ",".join(f"{k}={v}" for k, v in asdict(self).items())


_SOAP_CACHE: dict = {}


def _soap(species: tuple[str, ...], spec: FingerprintSpec, periodic: bool):
    from dscribe.descriptors import SOAP  # dscribe (and numba) load in about a second: only when used

    key = (species, spec, periodic)
    if key not in _SOAP_CACHE:
        _SOAP_CACHE[key] = SOAP(species=list(species), r_cut=spec.r_cut, n_max=spec.n_max, l_max=spec.l_max,
                                sigma=spec.sigma, periodic=periodic, average="outer", sparse=False)
    return _SOAP_CACHE[key]


def dimension(species: Sequence[str], spec: FingerprintSpec = FingerprintSpec()) -> int:
    """Length of a fingerprint for this species list and these settings."""
    return int(_soap(tuple(species), spec, True).get_number_of_features())


def fingerprints(frames: Sequence, species: Sequence[str], spec: FingerprintSpec = FingerprintSpec()) -> np.ndarray:
    """Unit-length fingerprints, one row per structure.

    Args:
        frames: ``ase.Atoms`` structures; each is periodic in all three directions or in none.
        species: every element the campaign may contain (its type map): fixes the fingerprint's length.
        spec: SOAP settings.

    Returns:
        ``float32`` array of shape ``(len(frames), d)``.

    Raises:
        ValueError: a structure holds an element outside ``species``, or is periodic in some directions only.
    """
    species = tuple(species)
    out = []
    for i, atoms in enumerate(frames):
        unknown = set(atoms.get_chemical_symbols()) - set(species)
        if unknown:
            raise ValueError(f"structure {i} holds {sorted(unknown)}, not in the type map {list(species)}")
        pbc = np.asarray(atoms.pbc, bool)
        if pbc.any() and not pbc.all():
            raise ValueError(f"structure {i} is periodic in some directions only ({pbc.tolist()}); "
                             "fingerprints need all three or none")
        out.append(_soap(species, spec, bool(pbc.all())).create(atoms))
    if not out:
        return np.zeros((0, dimension(species, spec)), np.float32)
    x = np.asarray(out, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def displacement_distance(frames: Sequence, species: Sequence[str], displacement: float,
                          spec: FingerprintSpec = FingerprintSpec(), seed: int = 0) -> float:
    """The fingerprint distance that an rms displacement of every atom by ``displacement`` (Å) makes: the median,
    over ``frames``, of the distance between a frame and a copy of it with Gaussian displacements. Turns a
    physical near-copy criterion into a tolerance for :func:`deduplicate` for this campaign's elements."""
    if not frames:
        raise ValueError("no frames to measure the displacement distance on")
    rng = np.random.default_rng(seed)
    moved = []
    for atoms in frames:
        copy = atoms.copy()
        copy.positions = atoms.positions + rng.normal(0.0, displacement / np.sqrt(3.0), atoms.positions.shape)
        moved.append(copy)
    x = fingerprints(list(frames) + moved, species, spec)
    n = len(frames)
    return float(np.median(np.linalg.norm(x[:n] - x[n:], axis=1)))


class FingerprintIndex:
    """Fingerprints of stored configurations and their ids, searchable by nearest neighbour (faiss)."""

    def __init__(self, dim: int):
        import faiss  # a 20 MB library: loaded only where fingerprints are compared

        self.dim = int(dim)
        self._index = faiss.IndexFlatL2(self.dim)
        self.ids: list = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, fps: np.ndarray, ids: Sequence) -> None:
        """Add fingerprints (rows) with their configuration ids."""
        fps = np.ascontiguousarray(fps, dtype=np.float32).reshape(-1, self.dim)
        if len(fps) != len(ids):
            raise ValueError(f"{len(fps)} fingerprints for {len(ids)} ids")
        if len(fps):
            self._index.add(fps)
            self.ids.extend(ids)

    def nearest(self, fps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to the nearest stored fingerprint (inf when empty) and its row, for each row of ``fps``."""
        fps = np.ascontiguousarray(fps, dtype=np.float32).reshape(-1, self.dim)
        if not len(self.ids) or not len(fps):
            return np.full(len(fps), np.inf), np.full(len(fps), -1, dtype=np.int64)
        d2, rows = self._index.search(fps, 1)
        return np.sqrt(np.maximum(d2[:, 0], 0.0)).astype(float), rows[:, 0]


def deduplicate(fps: np.ndarray, tolerance: float, stored: FingerprintIndex | None = None,
                order: Sequence[int] | None = None, nearest: tuple[np.ndarray, np.ndarray] | None = None,
                ) -> tuple[np.ndarray, dict[int, tuple[str, object, float]]]:
    """Which candidates to keep: a candidate within ``tolerance`` of a stored fingerprint, or of a candidate
    kept before it, is a duplicate.

    Args:
        fps: candidate fingerprints (rows, from :func:`fingerprints`).
        tolerance: distance below which two structures count as the same (see the module docstring).
        stored: the labeled and selected configurations so far (None: none).
        order: the order in which candidates claim their place (e.g. by decreasing model deviation, so the
            most uncertain of a group of near-copies is the one kept); default: as given.
        nearest: ``stored.nearest(fps)`` when already computed (the search is the costly part).

    Returns:
        ``(kept, duplicates)``: the kept candidate indices (ascending), and for every other candidate
        ``i``: ``("stored", id, distance)`` or ``("candidate", j, distance)`` naming what it duplicates.
    """
    fps = np.asarray(fps, dtype=np.float32)
    n = len(fps)
    order = np.arange(n) if order is None else np.asarray(order, dtype=np.intp)
    if sorted(order.tolist()) != list(range(n)):
        raise ValueError(f"order must be a permutation of range({n})")
    dups: dict[int, tuple[str, object, float]] = {}
    if stored is not None and len(stored):
        dist, rows = stored.nearest(fps) if nearest is None else nearest
        for i in np.flatnonzero(dist < tolerance):
            dups[int(i)] = ("stored", stored.ids[int(rows[i])], float(dist[i]))
    neighbours = _pairs_within(fps, tolerance)  # candidate -> {other candidate: distance}, usually small
    kept: list[int] = []
    is_kept = np.zeros(n, dtype=bool)
    for i in order:
        i = int(i)
        if i in dups:
            continue
        near = [(d, j) for j, d in neighbours.get(i, {}).items() if is_kept[j]]
        if near:
            d, j = min(near)
            dups[i] = ("candidate", j, d)
            continue
        kept.append(i)
        is_kept[i] = True
    return np.array(sorted(kept), dtype=np.intp), dups


def _pairs_within(fps: np.ndarray, tolerance: float) -> dict[int, dict[int, float]]:
    """For each row, the other rows closer than ``tolerance`` (faiss range search of the rows among themselves)."""
    import faiss  # see FingerprintIndex

    fps = np.ascontiguousarray(fps, dtype=np.float32)
    if len(fps) < 2 or tolerance <= 0:
        return {}
    index = faiss.IndexFlatL2(fps.shape[1])
    index.add(fps)
    lims, d2, rows = index.range_search(fps, float(tolerance) ** 2)
    out: dict[int, dict[int, float]] = {}
    for i in range(len(fps)):
        for j, dd in zip(rows[lims[i]:lims[i + 1]], d2[lims[i]:lims[i + 1]]):
            if int(j) != i:
                out.setdefault(i, {})[int(j)] = float(np.sqrt(max(dd, 0.0)))
    return out


def _checked_weights(weights, n: int) -> np.ndarray:
    """``weights`` as n floats (all 1 when None); finite and non-negative, or a ValueError."""
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float).reshape(n)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and >= 0")
    return w


def _sq_distances_to(fps: np.ndarray, sq: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of every row of ``fps`` to row ``k`` (``sq``: the rows' squared norms): one matrix-vector
    product."""
    return np.maximum(sq + sq[k] - 2.0 * (fps @ fps[k]), 0.0)


def farthest_point_indices(fps: np.ndarray, max_n: int, weights: np.ndarray | None = None,
                           stored: FingerprintIndex | None = None,
                           stored_distance: np.ndarray | None = None) -> np.ndarray:
    """A batch of at most ``max_n`` rows that covers fingerprint space: greedy farthest-point sampling.

    Each step takes the candidate with the largest ``weight * distance`` to everything chosen so far,
    the stored fingerprints included (so a batch goes where the labeled data are not). Without stored
    fingerprints the first pick is the candidate of largest weight. Weights are e.g. the force deviation
    (a more uncertain frame is worth more at the same distance); ``None`` weighs all alike. Deterministic:
    ties go to the lower index.

    ``stored_distance``: each row's distance to its nearest stored fingerprint, when already computed
    (in place of ``stored``).

    Returns:
        The chosen row indices, in the order chosen.
    """
    fps = np.asarray(fps, dtype=np.float32)
    n = len(fps)
    max_n = min(int(max_n), n)
    sq = np.einsum("ij,ij->i", fps, fps)
    if max_n <= 0:
        return np.empty(0, dtype=np.intp)
    w = _checked_weights(weights, n)
    if stored_distance is not None:
        nearest = np.asarray(stored_distance, dtype=float).reshape(n).copy()
    elif stored is not None and len(stored):
        nearest = stored.nearest(fps)[0]
    else:
        nearest = np.full(n, np.inf)
    chosen: list[int] = []
    taken = np.zeros(n, dtype=bool)
    for _ in range(max_n):
        # no stored fingerprints and nothing chosen yet: every distance is inf, so the weight alone decides
        score = w.copy() if np.isinf(nearest[0]) else w * nearest
        score[taken] = -1.0
        k = int(np.argmax(score))
        chosen.append(k)
        taken[k] = True
        nearest = np.minimum(nearest, np.sqrt(_sq_distances_to(fps, sq, k).astype(np.float64)))
    return np.asarray(chosen, dtype=np.intp)


def _kmeans_plus_plus(fps: np.ndarray, k: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """k starting centres (rows of ``fps``): weighted k-means++ seeding, each drawn with probability proportional
    to its weight times its squared distance to the centres drawn before (Arthur and Vassilvitskii 2007)."""
    n = len(fps)
    sq = np.einsum("ij,ij->i", fps, fps).astype(np.float64)
    first = int(rng.choice(n, p=weights / weights.sum())) if weights.sum() > 0 else int(rng.integers(n))
    chosen = [first]
    d2 = _sq_distances_to(fps, sq, first)
    for _ in range(1, k):
        score = weights * d2
        score[chosen] = 0.0
        total = score.sum()
        if total > 0:
            pick = int(rng.choice(n, p=score / total))
        else:  # every row sits on a centre (or weighs nothing): any row not yet taken
            pick = int(rng.choice(np.setdiff1d(np.arange(n), chosen)))
        chosen.append(pick)
        d2 = np.minimum(d2, _sq_distances_to(fps, sq, pick))
    return fps[chosen]


def representative_indices(fps: np.ndarray, max_n: int, weights: np.ndarray | None = None, seed: int = 0,
                           niter: int = 25, neighbours: int = 16) -> np.ndarray:
    """A batch of at most ``max_n`` rows that stands for all of them: k-means medoids in fingerprint space.

    k-means with k = ``max_n`` (k-means++ seeding, then faiss' Lloyd iterations), weighted by ``weights`` (e.g.
    the force deviation, so that centres lean towards the uncertain frames), then one row per centre: the row
    nearest to it, matched greedily (the closest centre-row pair first; a row serves one centre). Unlike
    farthest-point sampling, which goes to the edges of the cloud, the batch follows where the candidates are
    dense, without near-copies. A centre whose ``neighbours`` nearest rows are all taken by closer centres
    (rare) is replaced by the row farthest from the batch. Deterministic for a given ``seed``.

    Returns:
        The chosen row indices, ascending.
    """
    import faiss

    fps = np.ascontiguousarray(fps, dtype=np.float32)
    n = len(fps)
    k = min(int(max_n), n)
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if k == n:
        return np.arange(n, dtype=np.intp)
    w = _checked_weights(weights, n)
    if w.sum() <= 0:
        w = np.ones(n)
    start = _kmeans_plus_plus(fps, k, w, np.random.default_rng(seed))
    km = faiss.Kmeans(fps.shape[1], k, niter=niter, seed=int(seed) & 0x7FFFFFFF, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=max(n, 256))
    km.train(fps, weights=np.ascontiguousarray(w, dtype=np.float32), init_centroids=start)
    rows = faiss.IndexFlatL2(fps.shape[1])
    rows.add(fps)
    dist, near = rows.search(km.centroids, min(int(neighbours), n))
    centre_done = np.zeros(k, dtype=bool)
    taken = np.zeros(n, dtype=bool)
    for flat in np.argsort(dist, axis=None, kind="stable"):  # every (centre, row) pair, closest first
        c, j = divmod(int(flat), near.shape[1])
        r = int(near[c, j])
        if r < 0 or centre_done[c] or taken[r]:
            continue
        centre_done[c] = taken[r] = True
    missing = int(k - taken.sum())
    if missing:
        rest, chosen = np.flatnonzero(~taken), np.flatnonzero(taken)
        batch = faiss.IndexFlatL2(fps.shape[1])
        batch.add(fps[chosen])
        d2 = batch.search(fps[rest], 1)[0][:, 0].astype(np.float64)
        extra = farthest_point_indices(fps[rest], missing, stored_distance=np.sqrt(np.maximum(d2, 0.0)))
        taken[rest[extra]] = True
    return np.flatnonzero(taken).astype(np.intp)
