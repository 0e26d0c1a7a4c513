"""Physics-aware convergence: the observables a stage may require to agree across the committee and stop
changing (`stages[i].converged_when.observables`, :class:`ObservableConfig`).

Each iteration, every committee member runs one short MD per observable protocol with its own model (in its
train Firework, right after training: gpu, one per member, side by side) and the observable is measured
on it: the density (g/cm³, NPT), the RDF of an element pair (or the total one), or a species' diffusion
coefficient D (cm²/s). The select step then requires, besides the accurate ratio, for every observable

* **agreement**: the members' spread is at most `tolerance` — for density and D, ``(max − min) / |mean|``
  (relative); for the RDF, the largest R-factor ``sqrt(Σ (g_m − ḡ)² / Σ ḡ²)`` of a member's g(r) against the
  committee mean ḡ;
* **no change**: the committee mean moved by at most `tolerance` since the previous iteration of the stage
  (relative for density and D, the R-factor of the two mean g(r) for the RDF); the first iteration of a stage
  has nothing to compare with, so a stage with observables runs at least two iterations.

Units: K, bar, ps, fs; tolerance dimensionless (a fraction, 0.02 = 2 %). Cost: one MD of
`equilibration_ps + production_ps` per member per distinct protocol (system, T, P, run lengths) per
iteration; observables that share a protocol share its run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from .config_fields import ELEMENTS, Problem, Slug, Symbol, _Model, fail, fx

#: Independent blocks of the diffusion coefficient's error bar (as `firegen properties run`).
OBSERVABLE_BLOCKS = 5
#: The MSD fit never starts before this lag (ps): workflows/steps/properties_transport.py's MIN_FIT_START_PS
#: (the vibrational transient; this package cannot import the steps). A diffusion run must hold two blocks of it.
DIFFUSION_FIT_START_PS = 1.0


class ObservableConfig(_Model):
    """One observable a stage's committee must agree on and stop changing before the stage converges."""

    property: Literal["density", "rdf", "diffusion"] = fx(
        desc="What to measure: density (g/cm³, needs a pressure: NPT), rdf (g(r) of `pair`), or diffusion "
        "(D of `species`, cm²/s).", fix="use density, rdf or diffusion")
    system: Slug | None = fx(None, desc="The system whose starting structure is run (default: the stage's "
                             "first system); one of the stage's systems.",
                             fix="name one of the stage's systems")
    temperature: float = fx(gt=0, le=10000, desc="Temperature of the run (K).",
                            fix="give a temperature in K, e.g. 600")
    pressure: float | None = fx(None, gt=0, desc="Pressure (bar): an NPT run; none: NVT in the starting cell. "
                                "Required for density.", fix="give a pressure in bar, e.g. 1.0")
    species: Symbol | None = fx(None, desc="Element whose D is measured (diffusion only).",
                                fix="name an element of type_map, e.g. Na")
    pair: str | None = fx(None, pattern=r"^[A-Z][a-z]?-[A-Z][a-z]?$",
                          desc="Element pair of the RDF, e.g. Na-Cl (rdf only; default the total g(r)).",
                          fix="write two elements joined by '-', e.g. Na-Cl")
    tolerance: float = fx(gt=0, le=1, desc="Largest members' spread and largest change between iterations "
                          "(fraction: relative for density and D, R-factor for the RDF).",
                          fix="give a fraction, e.g. 0.02 (2 %)")
    dt_fs: float = fx(1.0, gt=0, le=10, desc="Time step (fs).", fix="use a time step in fs, e.g. 1.0")
    equilibration_ps: float = fx(1.0, ge=0, desc="Run first, not measured (ps).",
                                 fix="give a non-negative time in ps, e.g. 1.0")
    production_ps: float = fx(5.0, gt=0, desc="Measured run (ps).", fix="give a time in ps, e.g. 5.0")
    sample_fs: float = fx(10.0, gt=0, desc="Time between measured frames (fs); a multiple of dt_fs.",
                          fix="give a multiple of dt_fs in fs, e.g. 10")

    @model_validator(mode="after")
    def _consistent(self):
        probs = []
        if self.property == "density" and self.pressure is None:
            probs.append(Problem("pressure", "is required for density (an NPT run)", fix="give a pressure in bar, "
                                 "e.g. pressure: 1.0"))
        if self.property == "diffusion" and self.species is None:
            probs.append(Problem("species", "is required for diffusion", fix="name the diffusing element, "
                                 "e.g. species: Na"))
        if self.property != "diffusion" and self.species is not None:
            probs.append(Problem("species", f"is not used by property '{self.property}'", self.species,
                                 "remove it, or use property: diffusion"))
        if self.pair is not None and any(e not in ELEMENTS for e in self.pair.split("-")):
            probs.append(Problem("pair", "names an unknown element", self.pair,
                                 "use chemical symbols as in the periodic table, e.g. Na-Cl"))
        if self.property != "rdf" and self.pair is not None:
            probs.append(Problem("pair", f"is not used by property '{self.property}'", self.pair,
                                 "remove it, or use property: rdf"))
        every = self.sample_fs / self.dt_fs
        if abs(every - round(every)) > 1e-9:
            probs.append(Problem("sample_fs", f"is not a multiple of dt_fs = {self.dt_fs:g} fs", self.sample_fs,
                                 "use a multiple of the time step"))
        frames = int(round(self.production_ps * 1000 / self.sample_fs)) + 1
        need = 6 * OBSERVABLE_BLOCKS if self.property == "diffusion" else 2
        if frames < need:
            probs.append(Problem("production_ps", f"gives {frames} frames every {self.sample_fs:g} fs; "
                                 f"{self.property} needs at least {need}", self.production_ps,
                                 "run longer or sample more often (sample_fs)"))
        shortest = 2 * (DIFFUSION_FIT_START_PS + 2 * self.sample_fs / 1000)  # ps: 2 blocks, 3 lags from 1 ps each
        if self.property == "diffusion" and frames >= need and self.production_ps < shortest - 1e-9:
            probs.append(Problem("production_ps", f"is too short for a diffusion coefficient: the MSD is fitted "
                                 f"from {DIFFUSION_FIT_START_PS:g} ps (past the vibrational transient) in at least "
                                 f"2 blocks, so at least {shortest:g} ps", self.production_ps,
                                 "run longer: tens of ps for a useful error"))
        if probs:
            fail(*probs)
        return self

    def elements(self) -> list[str]:
        """The elements this observable needs in the system (checked against type_map at submit)."""
        return ([self.species] if self.species else []) + (self.pair.split("-") if self.pair else [])

    def protocol(self) -> dict:
        """The MD run (``PropertyMD`` fields but the seed): NPT at `pressure`, else NVT."""
        return {"temperature_K": float(self.temperature), "ensemble": "npt" if self.pressure else "nvt",
                "pressure_bar": float(self.pressure) if self.pressure else None, "dt_fs": self.dt_fs,
                "equilibration_ps": self.equilibration_ps, "production_ps": self.production_ps,
                "sample_fs": self.sample_fs}

    def key(self, system: str) -> str:
        """The observable's name in the iteration and the decision, e.g. ``density-fcc-600K-1bar``,
        ``rdf_Na-Cl-na3ocl-600K-nvt``, ``diffusion_Na-na3ocl-900K-1bar`` (no dots: it is a field name)."""
        what = self.property + (f"_{self.species}" if self.species else "") + (f"_{self.pair}" if self.pair else "")
        where = f"{self.pressure:g}bar" if self.pressure else "nvt"
        return f"{what}-{system}-{self.temperature:g}K-{where}".replace(".", "_")


def stage_observable_problems(observables: list[ObservableConfig], systems: list[str] | None) -> list[Problem]:
    """Observables naming a system the stage does not explore (``systems``: the stage's list, None: not
    given, checked later against the campaign's explore systems)."""
    probs = []
    for i, obs in enumerate(observables):
        if obs.system is not None and systems is not None and obs.system not in systems:
            probs.append(Problem(f"converged_when.observables[{i}].system", "is not a system of this stage",
                                 obs.system, f"use one of: {', '.join(systems)}"))
    return probs


def observable_element_problems(observables: list[ObservableConfig], type_map: list[str],
                                where: str = "converged_when") -> list[Problem]:
    """Observables naming an element that is not in ``type_map``."""
    probs = []
    for i, obs in enumerate(observables):
        for element in obs.elements():
            if element not in type_map:
                field = "species" if obs.species == element else "pair"
                probs.append(Problem(f"{where}.observables[{i}].{field}", "names an element not in type_map",
                                     element if field == "species" else obs.pair,
                                     f"use elements of type_map: {', '.join(type_map)}"))
    return probs

