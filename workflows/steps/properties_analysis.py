"""One property run's analysis: density, RDF, MSD, D and Nernst–Einstein conductivity of a trajectory.

Pure science, no FireWorks and no database; it assembles :mod:`.properties_structure` and
:mod:`.properties_transport` into the results a ``properties`` document stores (plain dicts, units in
the keys: g/cm³, Å, ps, cm²/s, S/cm).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from firegen.workflows.steps.properties_stats import DEFAULT_BLOCKS
from firegen.workflows.steps.properties_structure import density, rdf
from firegen.workflows.steps.properties_transport import (diffusion_coefficients, mean_squared_displacement,
                                                          nernst_einstein)

#: Frames of a run that the RDF averages at most (evenly spaced): its cost grows with them, its noise hardly.
RDF_FRAMES = 100
#: Points of the stored MSD curve at most (evenly spaced lags).
MSD_POINTS = 200


@dataclass(frozen=True)
class AnalysisSettings:
    """How a trajectory is analysed.

    Attributes:
        charges: formal charge (e) of each conducting species, e.g. ``{"Na": 1}``; empty: no conductivity.
        haven_ratio: Haven ratio of the Nernst–Einstein conductivity (1: tracer conductivity).
        n_blocks: blocks of the error bars (density, D).
        fit_window_ps: ``(start, end)`` lag times of the MSD fit (ps); None: from 1 ps at the earliest (past the
            vibrational transient), 10–50 % of one block in long runs (``properties_transport.default_fit_window``).
        rdf_nbins: bins of the RDFs; rdf_rmax_A: their range (Å; None: up to 8 Å as the cell allows).
    """

    charges: Mapping[str, float] | None = None
    haven_ratio: float = 1.0
    n_blocks: int = DEFAULT_BLOCKS
    fit_window_ps: tuple[float, float] | None = None
    rdf_nbins: int = 200
    rdf_rmax_A: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _wrapped(frames, count: int) -> list:
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    out = []
    for i in picks:
        atoms = frames[i].copy()
        atoms.wrap()
        out.append(atoms)
    return out


def analyse_trajectory(frames, dt_ps: float, temperature_K: float, settings: AnalysisSettings,
                       fixed_cell: bool = False) -> dict:
    """Every property of one sampled run (frames with unwrapped positions, ``dt_ps`` apart).

    Returns:
        ``density`` (:class:`~.properties_structure.Density`; from the one cell of an NVT run when
        ``fixed_cell``), ``rdf``, ``msd`` (at most :data:`MSD_POINTS` lags), ``diffusion`` (per species),
        and ``conductivity`` when ``settings.charges`` names conducting species; plain dicts.
    """
    if len(frames) < 2:
        raise ValueError("a property analysis needs at least two frames")
    symbols = frames[0].get_chemical_symbols()
    masses = frames[0].get_masses()
    volumes = [abs(a.cell.volume) for a in frames]
    dens = density(volumes, float(np.sum(masses)), settings.n_blocks)
    positions = np.array([a.positions for a in frames])
    diff = diffusion_coefficients(positions, symbols, dt_ps, masses=masses, fit_window_ps=settings.fit_window_ps,
                                  n_blocks=settings.n_blocks)
    msd = mean_squared_displacement(positions, symbols, dt_ps, masses=masses)
    keep = np.unique(np.linspace(0, len(msd.time_ps) - 1, min(MSD_POINTS, len(msd.time_ps))).round().astype(int))
    results = {
        "density": {**dens.as_dict(), "fixed_cell": bool(fixed_cell)},
        "rdf": rdf(_wrapped(frames, RDF_FRAMES), settings.rdf_rmax_A, settings.rdf_nbins).as_dict(),
        "msd": {"time_ps": [msd.time_ps[i] for i in keep],
                "msd_A2": {s: [v[i] for i in keep] for s, v in msd.msd_A2.items()}},
        "diffusion": {s: d.as_dict() for s, d in diff.items()},
        "n_frames": len(frames), "dt_ps": dt_ps,
    }
    if settings.charges:
        cond = nernst_einstein(diff, Counter(symbols), settings.charges, dens.volume_A3, temperature_K,
                               settings.haven_ratio, dens.volume_error_A3)
        results["conductivity"] = cond.as_dict()
    return results
