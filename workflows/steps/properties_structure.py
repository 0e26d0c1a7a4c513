"""Structural properties of an MD trajectory: density (NPT) and radial distribution functions.

Pure science, no FireWorks and no database. Units: lengths Å, volumes Å³, masses amu, density g/cm³.

* :func:`density` turns the cell volumes of an NPT run into a density with a block-averaged error bar
  (:func:`~firegen.workflows.steps.properties_stats.block_average`).
* :func:`rdf` computes the total and every element pair's partial g(r) with ASE
  (:func:`ase.geometry.rdf.get_rdf`, LAMMPS' ``compute rdf`` normalisation: ``g_ab = g_ba`` and
  ``g = sum_ab c_a c_b g_ab``), averaged over the frames, each frame normalised by its own volume.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from firegen.workflows.steps.properties_stats import DEFAULT_BLOCKS, block_average

#: g/cm³ per (amu/Å³): 1 amu = 1.66053906660e-24 g, 1 Å³ = 1e-24 cm³.
AMU_PER_A3_IN_G_PER_CM3 = 1.66053906660


@dataclass(frozen=True)
class Density:
    """Mean density of an NPT run.

    Attributes:
        density_g_cm3, error_g_cm3: block mean and its standard error (g/cm³).
        volume_A3, volume_error_A3: the same for the cell volume (Å³).
        mass_amu: mass of the cell's atoms (amu).
        n_frames: frames averaged (after the equilibration cut); n_blocks: blocks.
    """

    density_g_cm3: float
    error_g_cm3: float
    volume_A3: float
    volume_error_A3: float
    mass_amu: float
    n_frames: int
    n_blocks: int

    def as_dict(self) -> dict:
        return asdict(self)


def density(volumes_A3: Sequence[float], mass_amu: float, n_blocks: int = DEFAULT_BLOCKS) -> Density:
    """Density (g/cm³) from the cell volumes (Å³) of an equilibrated NPT run.

    The density of each frame, ``mass / volume``, is block-averaged (not the mass over the mean
    volume: the two differ at second order in the volume fluctuation, and the mean density is what
    experiments average). Drop the equilibration frames before calling.

    Raises:
        ValueError: a non-positive mass or volume, or too few frames for ``n_blocks``.
    """
    volumes = np.asarray(volumes_A3, float).ravel()
    if mass_amu <= 0 or volumes.size == 0 or np.any(volumes <= 0):
        raise ValueError("density needs a positive mass (amu) and positive cell volumes (Å³)")
    rho = AMU_PER_A3_IN_G_PER_CM3 * mass_amu / volumes
    d = block_average(rho, n_blocks)
    v = block_average(volumes, n_blocks)
    return Density(d.mean, d.error, v.mean, v.error, float(mass_amu), int(volumes.size), n_blocks)


def trajectory_density(frames, n_blocks: int = DEFAULT_BLOCKS) -> Density:
    """:func:`density` of a list of ``ase.Atoms`` (their cells and masses)."""
    if not frames:
        raise ValueError("density needs at least one frame")
    return density([abs(a.cell.volume) for a in frames], float(np.sum(frames[0].get_masses())), n_blocks)


@dataclass(frozen=True)
class RDF:
    """Radial distribution functions averaged over frames.

    Attributes:
        r_A: bin centres (Å).
        total: g(r) of all atoms.
        partial: g(r) per element pair ``"A-B"`` (each unordered pair once, ``A`` before ``B`` in the
            given element order).
        rmax_A: the largest distance counted (Å); n_frames: frames averaged.
        first_peak_A: per pair (and ``"total"``), the position of the highest bin (Å), a quick
            nearest-neighbour distance.
    """

    r_A: list[float]
    total: list[float]
    partial: dict[str, list[float]]
    rmax_A: float
    n_frames: int
    first_peak_A: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def max_rdf_radius(frames) -> float:
    """The largest ``rmax`` (Å) every frame's periodic cell allows: just under half its smallest height."""
    heights = []
    for atoms in frames:
        cell = atoms.cell.array
        vol = abs(np.linalg.det(cell))
        for i in range(3):
            heights.append(vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])))
    return 0.5 * min(heights) * (1 - 1e-9)


def element_pairs(elements: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair of ``elements`` (with repeats: ``Na-Na``), in their order."""
    return list(itertools.combinations_with_replacement(list(elements), 2))


def rdf(frames, rmax_A: float | None = None, nbins: int = 200, elements: Sequence[str] | None = None) -> RDF:
    """Total and partial RDFs of ``frames`` (``ase.Atoms``, periodic) with :func:`ase.geometry.rdf.get_rdf`.

    Args:
        frames: the trajectory (at least one frame).
        rmax_A: largest distance (Å); default the smaller of 8 Å and :func:`max_rdf_radius`.
        nbins: bins between 0 and ``rmax_A``.
        elements: the elements whose pairs to compute (default: those of the first frame, sorted by
            atomic number); an element absent from the frames is refused.

    Raises:
        ValueError: no frames, an ``rmax_A`` the cell cannot hold, or an unknown element.
    """
    from ase.data import atomic_numbers
    from ase.geometry.rdf import get_rdf

    frames = list(frames)
    if not frames:
        raise ValueError("an RDF needs at least one frame")
    limit = max_rdf_radius(frames)
    if rmax_A is None:
        rmax_A = min(8.0, limit)
    elif rmax_A > limit:
        raise ValueError(f"rmax {rmax_A:g} Å is more than half the smallest cell height ({limit:.3f} Å); "
                         "use a smaller rmax or a larger supercell")
    present = sorted(set(frames[0].get_chemical_symbols()), key=lambda s: atomic_numbers[s])
    elements = present if elements is None else list(elements)
    missing = [e for e in elements if e not in present]
    if missing:
        raise ValueError(f"elements {missing} are not in the trajectory (it has {present})")
    total, r = get_rdf(frames, rmax_A, nbins)
    partial, peaks = {}, {"total": float(r[int(np.argmax(total))])}
    for a, b in element_pairs(elements):
        g = get_rdf(frames, rmax_A, nbins, elements=(a, b), no_dists=True)
        partial[f"{a}-{b}"] = g.tolist()
        peaks[f"{a}-{b}"] = float(r[int(np.argmax(g))])
    return RDF(r.tolist(), total.tolist(), partial, float(rmax_A), len(frames), peaks)


def rdf_difference(r_A: Sequence[float], g: Sequence[float], g_ref: Sequence[float]) -> dict[str, float]:
    """How far ``g`` is from ``g_ref`` on the same bins: the integrated absolute difference
    ``∫ |g - g_ref| dr`` (Å) and the R-factor ``sqrt(Σ (g - g_ref)² / Σ g_ref²)`` (Wright's, dimensionless)."""
    r = np.asarray(r_A, float)
    g = np.asarray(g, float)
    ref = np.asarray(g_ref, float)
    if not (r.shape == g.shape == ref.shape):
        raise ValueError("the two RDFs must share their bins")
    dr = float(r[1] - r[0]) if r.size > 1 else 0.0
    denom = float(np.sum(ref ** 2))
    return {"integrated_abs_difference_A": float(np.sum(np.abs(g - ref)) * dr),
            "r_factor": float(np.sqrt(np.sum((g - ref) ** 2) / denom)) if denom > 0 else float("nan")}
