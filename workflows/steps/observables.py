"""The observables of physics-aware convergence measured on one short MD run (pure science, no database).

What :mod:`firegen.campaign.observable_rule` compares across committee members and iterations: the density
(g/cm³, block mean and error of an NPT run), a species' diffusion coefficient D (cm²/s, MSD slope / 6 with
its block error, as ``firegen properties run``), or an RDF (total or one element pair) on fixed bins, so
that curves of different members and iterations share them.
"""

from __future__ import annotations

import numpy as np

from firegen.campaign.config_observables import OBSERVABLE_BLOCKS, ObservableConfig
from firegen.workflows.steps.properties_structure import rdf, trajectory_density
from firegen.workflows.steps.properties_transport import diffusion_coefficients

#: Bins of an observable RDF, and its range: this fraction of the starting cell's smallest height (at most
#: :data:`RDF_MAX_A`), so that an NPT cell that shrinks a little still holds it.
RDF_BINS = 100
RDF_CELL_FRACTION = 0.45
RDF_MAX_A = 6.0
#: Frames of a run the RDF averages at most (evenly spaced).
RDF_FRAMES = 50


def rdf_range(start) -> float:
    """The RDF range (Å) of a system: :data:`RDF_CELL_FRACTION` of its starting cell's smallest height,
    at most :data:`RDF_MAX_A`; the same every iteration."""
    cell = start.cell.array
    vol = abs(np.linalg.det(cell))
    heights = [vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    return float(min(RDF_MAX_A, RDF_CELL_FRACTION * min(heights)))


def measure(obs: ObservableConfig, frames, dt_ps: float, rmax_A: float) -> dict:
    """One observable of a sampled run (frames with unwrapped positions, ``dt_ps`` apart).

    Returns:
        density: ``{"value", "error"}`` (g/cm³); diffusion: ``{"value", "error"}`` (cm²/s);
        rdf: ``{"r_A", "g", "first_peak_A"}`` (Å, dimensionless).
    """
    if obs.property == "density":
        d = trajectory_density(frames, OBSERVABLE_BLOCKS)
        return {"value": d.density_g_cm3, "error": d.error_g_cm3}
    if obs.property == "diffusion":
        positions = np.array([a.positions for a in frames])
        d = diffusion_coefficients(positions, frames[0].get_chemical_symbols(), dt_ps, masses=frames[0].get_masses(),
                                   n_blocks=OBSERVABLE_BLOCKS, species=[obs.species])[obs.species]
        return {"value": d.D_cm2_s, "error": d.error_cm2_s}
    picks = np.unique(np.linspace(0, len(frames) - 1, min(RDF_FRAMES, len(frames))).round().astype(int))
    wrapped = []
    for i in picks:
        atoms = frames[i].copy()
        atoms.wrap()
        wrapped.append(atoms)
    elements = obs.pair.split("-") if obs.pair else None
    g = rdf(wrapped, rmax_A, RDF_BINS, elements=sorted(set(elements)) if elements else None)
    if obs.pair:
        a, b = elements
        curve = g.partial.get(f"{a}-{b}") or g.partial[f"{b}-{a}"]
        peak = g.first_peak_A.get(f"{a}-{b}") or g.first_peak_A[f"{b}-{a}"]
    else:
        curve, peak = g.total, g.first_peak_A["total"]
    return {"r_A": g.r_A, "g": curve, "first_peak_A": peak}
