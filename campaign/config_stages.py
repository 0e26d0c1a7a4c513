"""Config of the exploration stages: ensembles, temperature and pressure ladders, ramps, fixed strains,
`fix deform` and melt-quench protocols (`StageConfig`). `config.py` assembles them into `CampaignConfig`.

Units (LAMMPS metal): eV, eV/Å, Å, K, bar, fs for `dt`, ps for the thermostat/barostat damping times.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from firegen.campaign.conditions import MDCondition
from firegen.campaign.protocols import condition_key, melt_quench_nsteps

from .config_fields import NOTHING, SLUG_FIX, Problem, Slug, _Model, fail, fx
from .config_loop import ConvergenceConfig
from .config_observables import ObservableConfig, stage_observable_problems


_ENSEMBLE_ALIASES = {"npt-iso": "npt", "npt-i": "npt", "npt-a": "npt-aniso", "npt-t": "npt-tri"}
ENSEMBLE_FIX = "use nvt, npt (npt-iso), npt-aniso or npt-tri"


def _ensemble_alias(value: Any) -> Any:
    """DP-GEN's npt-i/npt-a/npt-t and npt-iso name firegen's npt/npt-aniso/npt-tri."""
    return _ENSEMBLE_ALIASES.get(value, value) if isinstance(value, str) else value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, (int, float, str)) and not isinstance(value, bool) else value


NormalDirection = Literal["xx", "yy", "zz"]
ShearDirection = Literal["yz", "xz", "xy"]


class _StrainSet(_Model):
    """Strains along some directions: every direction × every value is one strained start."""

    values: list[float] | None = fx(None, min_length=1, desc="Strains (fractions, 0.05 = 5 %; "
                                    "negative = compression or opposite shear).",
                                    fix="list strain fractions, e.g. [-0.05, 0.05]")
    max: float | None = fx(None, gt=0, le=1, desc="Largest strain (fraction); without `values`, "
                           "`count` evenly spaced strains up to it.",
                           fix="give the largest strain as a fraction, e.g. 0.5 (50 %)")
    count: int = fx(1, gt=0, le=20, desc="Strains generated up to `max` (max/count … max).",
                    fix="use a small positive number, e.g. 5")
    symmetric: bool = fx(True, desc="With `max`: also the negative strains.")

    @model_validator(mode="after")
    def _some_values(self):
        if self.values is None and self.max is None:
            fail(Problem("", "gives no strains", fix="give `values: [0.02, 0.05]` or `max: 0.5`"))
        if self.values is not None:
            bad = [v for v in self.values if v == 0 or v <= -1 or v > 1
                   or (self.max is not None and abs(v) > self.max)]
            if bad:
                fail(Problem("values", "must be non-zero fractions in (-1, 1]"
                             + (f", at most max = {self.max}" if self.max is not None else ""),
                             bad[0], "use fractions such as 0.05; the unstrained cell is "
                             "`isotropic: [1.0]`"))
        return self

    def strains(self) -> list[float]:
        """The strain values (fractions)."""
        if self.values is not None:
            return list(self.values)
        up = [self.max * k / self.count for k in range(1, self.count + 1)]
        return [-v for v in reversed(up)] + up if self.symmetric else up


class UniaxialStrainConfig(_StrainSet):
    """Uniaxial strains along xx, yy, zz (fractions)."""

    directions: list[NormalDirection] = fx(default_factory=lambda: ["xx", "yy", "zz"],
                                           min_length=1, desc="Normal directions.",
                                           fix="list some of xx, yy, zz")


class ShearStrainConfig(_StrainSet):
    """Shear strains in yz, xz, xy (engineering shear strain, LAMMPS tilt convention)."""

    directions: list[ShearDirection] = fx(default_factory=lambda: ["yz", "xz", "xy"],
                                          min_length=1, desc="Shear directions.",
                                          fix="list some of yz, xz, xy")


class FixedStrainConfig(_Model):
    """Strained copies of the starting cell (atoms scaled with it), each its own condition."""

    isotropic: list[Annotated[float, Field(gt=0.5, lt=2.0)]] | None = fx(
        None, min_length=1, desc="Linear scale factors (1.0 = unstrained; volume scales as s³).",
        fix="use factors near 1, e.g. [0.95, 1.00, 1.05]")
    uniaxial: UniaxialStrainConfig | None = fx(None, desc="Uniaxial strains.")
    shear: ShearStrainConfig | None = fx(None, desc="Shear strains.")

    @model_validator(mode="after")
    def _some(self):
        if self.isotropic is None and self.uniaxial is None and self.shear is None:
            fail(Problem("", "gives no strain",
                         fix="give isotropic: [0.95, 1.0, 1.05] and/or uniaxial/shear strains"))
        return self

    def specs(self) -> list[dict[str, Any] | None]:
        """Strain specs (protocols' {mode, direction, value}); None is the unstrained cell."""
        out: list[dict[str, Any] | None] = [
            None if s == 1.0 else {"mode": "isotropic", "direction": None, "value": s - 1.0}
            for s in self.isotropic or []]
        for mode, part in (("uniaxial", self.uniaxial), ("shear", self.shear)):
            if part is not None:
                out += [{"mode": mode, "direction": d, "value": v}
                        for d in part.directions for v in part.strains()]
        return out


class DeformConfig(_Model):
    """Continuous deformation over the run (LAMMPS `fix deform ... remap x`), NVT only."""

    mode: Literal["isotropic", "uniaxial", "shear"] = fx(
        desc="isotropic (all lengths), uniaxial (one length) or shear (one tilt).",
        fix="use isotropic, uniaxial or shear")
    direction: Annotated[list[Literal["xx", "yy", "zz", "yz", "xz", "xy"]],
                         BeforeValidator(_one_or_many)] | None = fx(
        None, desc="Direction(s): xx/yy/zz for uniaxial, yz/xz/xy for shear (default all "
        "three); none for isotropic.", fix="use xx, yy, zz (uniaxial) or yz, xz, xy (shear)")
    final_strain: Annotated[list[float], BeforeValidator(_one_or_many)] = fx(
        min_length=1, desc="Strain(s) reached at the end of the run (fraction; negative = "
        "compression).", fix="give a fraction such as 0.5 (50 %) or a list, e.g. [0.5, -0.3]")

    @model_validator(mode="after")
    def _fits(self):
        normal, shear = ["xx", "yy", "zz"], ["yz", "xz", "xy"]
        if self.mode == "isotropic" and self.direction:
            fail(Problem("direction", "is not used by mode 'isotropic'", self.direction,
                         "remove direction, or use mode uniaxial/shear"))
        allowed = {"uniaxial": normal, "shear": shear}.get(self.mode)
        if allowed is not None:
            bad = [d for d in self.direction or [] if d not in allowed]
            if bad:
                fail(Problem("direction", f"does not fit mode '{self.mode}'", bad[0],
                             f"use {', '.join(allowed)} with mode {self.mode}"))
        bad = [v for v in self.final_strain if v == 0 or v <= -1 or v > 1]
        if bad:
            fail(Problem("final_strain", "must be a non-zero fraction in (-1, 1]", bad[0],
                         "use e.g. 0.5 for 50 % (negative compresses)"))
        return self

    def specs(self) -> list[dict[str, Any]]:
        """Strain specs (protocols' {mode, direction, value}), one per direction and strain."""
        default = {"isotropic": [None], "uniaxial": ["xx", "yy", "zz"], "shear": ["yz", "xz", "xy"]}
        dirs = self.direction or default[self.mode]
        return [{"mode": self.mode, "direction": d, "value": v}
                for d in dirs for v in self.final_strain]


class RampConfig(_Model):
    """Temperature ramp over the run: the thermostat target goes linearly start → stop (K)."""

    start: float = fx(gt=0, desc="Target temperature at the first step (K); also the initial "
                      "velocities' temperature.", fix="give a positive temperature in K, e.g. 10")
    stop: float = fx(gt=0, desc="Target temperature at the last step (K); below start = "
                     "cooling.", fix="give a positive temperature in K, e.g. 2000")

    @model_validator(mode="after")
    def _differs(self):
        if self.start == self.stop:
            fail(Problem("stop", "equals start (no ramp)", self.stop,
                         "use `temperatures: [T]` for a constant temperature"))
        return self


class MeltQuenchConfig(_Model):
    """Melt-quench in one run: heat, hold, cool (NVT), relax (NVT), then NPT at the final T/P."""

    melt_temperature: Annotated[list[Annotated[float, Field(gt=0)]],
                                BeforeValidator(_one_or_many)] = fx(
        min_length=1, desc="Melt (hold) temperature(s) (K); each is one condition.",
        fix="give the melt temperature in K, e.g. 1400, or a list [1200, 1400]")
    heat_ps: float = fx(10.0, gt=0, desc="Heating ramp final_temperature → melt (ps).",
                        fix="give a positive duration in ps, e.g. 10")
    hold_ps: float = fx(20.0, ge=0, desc="Hold at the melt temperature (ps).",
                        fix="give a duration in ps, e.g. 20")
    quench_rate_K_per_ps: float = fx(5.0, gt=0, desc="Cooling rate melt → final_temperature "
                                     "(K/ps).", fix="give a positive rate in K/ps, e.g. 5")
    relax_ps: float = fx(10.0, ge=0, desc="NVT relaxation at final_temperature (ps).",
                         fix="give a duration in ps, e.g. 10")
    npt_ps: float = fx(20.0, ge=0, desc="Closing NPT run at final_temperature and "
                       "final_pressure (ps).", fix="give a duration in ps, e.g. 20")
    final_temperature: float = fx(300.0, gt=0, desc="Start and end temperature (K).",
                                  fix="give a positive temperature in K, e.g. 300")
    final_pressure: float = fx(1.0, desc="Pressure of the closing NPT run (bar).",
                               fix="give a pressure in bar, e.g. 1")

    @model_validator(mode="after")
    def _hot_enough(self):
        low = [t for t in self.melt_temperature if t <= self.final_temperature]
        if low:
            fail(Problem("melt_temperature", f"must be above final_temperature = "
                         f"{self.final_temperature:g} K", low[0],
                         "melt above the final temperature, e.g. 1400 K"))
        return self

    def recipes(self) -> list[dict[str, float]]:
        """One MDCondition `melt_quench` recipe per melt temperature."""
        keys = ("heat_ps", "hold_ps", "quench_rate_K_per_ps", "relax_ps", "npt_ps")
        return [{"melt_temperature": t, **{k: getattr(self, k) for k in keys}}
                for t in self.melt_temperature]


class StageConfig(_Model):
    """One exploration protocol, iterated until it converges or reaches max_iterations.

    Its conditions (one MD run per system each) are the product of the thermal ladder
    (`temperatures`, or `ramp`s), the pressure ladder (NPT), the fixed `strain`s and the
    `deform`ations given; a `melt_quench` stage has one condition per melt temperature.
    """

    name: Slug = fx(desc="Stage name (unique).", fix=SLUG_FIX)
    ensemble: Annotated[Literal["nvt", "npt", "npt-aniso", "npt-tri"] | None,
                        BeforeValidator(_ensemble_alias)] = fx(
        None, desc="MD ensemble: nvt, npt (isotropic; alias npt-iso, DP-GEN npt-i), npt-aniso "
        "(npt-a), npt-tri (npt-t). Required, except with melt_quench (closing NPT; default npt).",
        fix=ENSEMBLE_FIX)
    temperatures: list[Annotated[float, Field(gt=0)]] | None = fx(
        None, min_length=1, desc="Temperature ladder (K); required unless ramp or melt_quench.",
        fix="list positive temperatures in K, e.g. [300, 600]")
    pressures: list[float] | None = fx(None, desc="Pressure ladder (bar); npt ensembles only.",
                                       fix="list pressures in bar, e.g. [1, 1000]")
    nsteps: int | None = fx(None, gt=0, desc="MD steps per trajectory (melt_quench: derived "
                            "from its durations).", fix="set a positive number of MD steps")
    dt: float = fx(1.0, gt=0, le=10, desc="MD time step (fs).",
                   fix="use a time step in fs, e.g. 1.0 (0.5 with light atoms)")
    trj_freq: int = fx(10, gt=0, desc="Write (and judge) a frame every this many steps.",
                       fix="set a positive number of steps between frames, e.g. 10")
    tau_t: float = fx(0.1, gt=0, le=10, desc="Thermostat damping time (ps).",
                      fix="use a damping time in ps (not fs), e.g. 0.1 (100 time steps)")
    tau_p: float = fx(0.5, gt=0, le=100, desc="Barostat damping time (ps).",
                      fix="use a damping time in ps (not fs), e.g. 0.5")
    ramp: Annotated[list[RampConfig], BeforeValidator(_as_list)] | None = fx(
        None, min_length=1, desc="Temperature ramp(s) {start, stop} (K) over each run, instead "
        "of `temperatures`; each ramp is one condition.",
        fix="e.g. ramp: [{start: 10, stop: 2000}, {start: 2000, stop: 10}]")
    strain: FixedStrainConfig | None = fx(None, desc="Fixed strains of the starting cell.",
                                          fix="e.g. strain: {isotropic: [0.95, 1.0, 1.05]}")
    deform: Annotated[list[DeformConfig], BeforeValidator(_as_list)] | None = fx(
        None, min_length=1, desc="Continuous deformation(s) over the run (NVT, LAMMPS only).",
        fix="e.g. deform: {mode: uniaxial, direction: xx, final_strain: 0.5}")
    melt_quench: MeltQuenchConfig | None = fx(None, desc="Melt-quench recipe (one multi-segment "
                                              "run per melt temperature).",
                                              fix="e.g. melt_quench: {melt_temperature: 1400}")
    systems: list[str] | None = fx(None, min_length=1, desc="Names of the systems explored (default: all "
                                   "with role explore); at least one.",
                                   fix="list names from the top-level `systems`")
    converged_when: ConvergenceConfig = fx(default_factory=ConvergenceConfig,
                                           desc="Convergence criterion.")
    max_iterations: int = fx(5, gt=0, desc="Most iterations spent in this stage.",
                             fix="set a positive number of iterations")

    @model_validator(mode="after")
    def _consistent(self):
        probs = self._melt_quench_problems() if self.melt_quench else self._ladder_problems()
        steps = (self.nsteps if not self.melt_quench
                 else min(c["nsteps"] for c in self.conditions()))
        if steps is not None and self.trj_freq > steps:
            probs.append(Problem("trj_freq", f"exceeds nsteps = {steps}", self.trj_freq,
                                 "write frames more often than once per trajectory"))
        if self.tau_t * 1000 <= self.dt:
            probs.append(Problem("tau_t", f"is not longer than dt = {self.dt} fs", self.tau_t,
                                 "tau_t is in ps; use about 100 time steps, e.g. 0.1"))
        probs += stage_observable_problems(self.converged_when.observables, self.systems)
        if probs:
            fail(*probs)
        for i, cond in enumerate(self.conditions()):  # what explore() will build, checked now
            try:
                MDCondition(**cond)
            except ValueError as exc:
                fail(Problem("", f"condition {i} is not a valid MD run: {exc}",
                             fix="adjust the stage's protocol fields"))
        return self

    def observables(self) -> list[tuple[str, str, ObservableConfig]]:
        """The stage's observables as ``(key, system, config)``; an observable without a system runs the stage's
        first system."""
        out = []
        for obs in self.converged_when.observables:
            system = obs.system or (self.systems or [""])[0]
            out.append((obs.key(system), system, obs))
        return out

    def _ladder_problems(self) -> list[Problem]:
        probs = []
        if self.ensemble is None:
            probs.append(Problem("ensemble", "is required", fix=f"add `ensemble`: {ENSEMBLE_FIX}"))
        if self.nsteps is None:
            probs.append(Problem("nsteps", "is required",
                                 fix="add `nsteps`: set a positive number of MD steps"))
        if self.temperatures is None and self.ramp is None:
            probs.append(Problem("temperatures", "is required (or a ramp)",
                                 fix="list temperatures in K, e.g. temperatures: [300, 600], or "
                                 "give ramp: {start: 10, stop: 2000}"))
        if self.temperatures is not None and self.ramp is not None:
            probs.append(Problem("ramp", "replaces the temperature ladder", fix="remove "
                                 "`temperatures`, or remove `ramp` (one thermal protocol a stage)"))
        if self.ensemble and self.ensemble.startswith("npt") and not self.pressures:
            probs.append(Problem("pressures", f"is required for ensemble '{self.ensemble}'",
                                 NOTHING if self.pressures is None else self.pressures,
                                 "list pressures in bar, e.g. pressures: [1]"))
        if self.ensemble == "nvt" and self.pressures:
            probs.append(Problem("pressures", "is not used by ensemble 'nvt'", self.pressures,
                                 "remove pressures or use ensemble npt"))
        if self.deform and self.ensemble not in (None, "nvt"):
            probs.append(Problem("deform", f"needs ensemble 'nvt', not '{self.ensemble}'",
                                 fix="use ensemble nvt with deform (a barostat would fight the "
                                 "imposed box change), or a fixed `strain` with NPT"))
        return probs

    def _melt_quench_problems(self) -> list[Problem]:
        probs = [Problem(name, "is not used with melt_quench", getattr(self, name),
                         f"remove `{name}`; the melt_quench recipe sets " +
                         ("the run length from its durations" if name == "nsteps" else
                          "temperatures and pressure (final_temperature, final_pressure)"
                          if name in ("temperatures", "pressures", "ramp") else
                          "the whole protocol"))
                 for name in ("temperatures", "pressures", "ramp", "nsteps", "strain", "deform")
                 if getattr(self, name) is not None]
        if self.ensemble == "nvt":
            probs.append(Problem("ensemble", "must be an NPT ensemble with melt_quench (its "
                                 "closing segment)", self.ensemble,
                                 "use npt, npt-aniso or npt-tri, or leave ensemble out (npt)"))
        return probs

    def conditions(self) -> list[dict[str, Any]]:
        """One MD condition per dict, the keyword arguments of `MDCondition` (less the seed).

        Order: thermal (temperature or ramp) outer, then pressure, fixed strain, deformation.
        Keys: ensemble, temperature (K; a ramp's start), pressure (bar; None for nvt), nsteps,
        dt (fs), trj_freq, tau_t (ps), tau_p (ps); and only where used: temperature_stop (K,
        ramp end), strain and deform ({mode, direction, value}), melt_quench (recipe; then
        temperature/pressure are the final ones). A plain ladder gives exactly the first eight.
        """
        base = dict(dt=self.dt, trj_freq=self.trj_freq, tau_t=self.tau_t, tau_p=self.tau_p)
        if self.melt_quench:
            mq = self.melt_quench
            return [dict(ensemble=self.ensemble or "npt", temperature=mq.final_temperature,
                         pressure=mq.final_pressure,
                         nsteps=melt_quench_nsteps(r, mq.final_temperature, self.dt), **base,
                         melt_quench=r) for r in mq.recipes()]
        thermal = ([(t, None) for t in self.temperatures] if self.temperatures is not None
                   else [(r.start, r.stop) for r in self.ramp or []])
        pressures: list[float | None] = list(self.pressures or []) if self.ensemble != "nvt" \
            else [None]
        strains = self.strain.specs() if self.strain else [None]
        deforms = [s for d in self.deform for s in d.specs()] if self.deform else [None]
        out = []
        for t, t_stop in thermal:
            for p in pressures:
                for strain in strains:
                    for deform in deforms:
                        cond = dict(ensemble=self.ensemble, temperature=t, pressure=p,
                                    nsteps=self.nsteps, **base)
                        extra = dict(temperature_stop=t_stop, strain=strain, deform=deform)
                        out.append({**cond, **{k: v for k, v in extra.items() if v is not None}})
        return out

    def condition_keys(self) -> list[str]:
        """Short human key of each condition (same order), e.g. `T300-P1`, `ramp10-2000K`,
        `T600-uniaxial_xx+0.05`; a repeated one gets `~2`, `~3` appended."""
        keys, seen = [], {}
        for cond in self.conditions():
            key = condition_key(cond)
            seen[key] = seen.get(key, 0) + 1
            keys.append(key if seen[key] == 1 else f"{key}~{seen[key]}")
        return keys

    def lammps_only(self) -> list[str]:
        """Fields of this stage the ASE engine cannot run (continuous `deform`)."""
        return ["deform"] if self.deform else []

    def summary(self) -> dict[str, Any]:
        """What a per-iteration table prints for this stage, for every protocol: ensemble,
        temperatures (K: the ladder, the ramps' ends, or the melt and final temperatures),
        pressures (bar), nsteps (the longest run) and protocols (e.g. ['ramp', 'deform'])."""
        conds = self.conditions()
        temps = sorted({t for c in conds for t in (c["temperature"], c.get("temperature_stop"),
                                                   (c.get("melt_quench") or {}).get("melt_temperature"))
                        if t is not None})
        kinds = [k for k in ("ramp", "strain", "deform", "melt_quench") if getattr(self, k)]
        return {"ensemble": conds[0]["ensemble"], "temperatures": temps,
                "pressures": sorted({c["pressure"] for c in conds if c["pressure"] is not None}),
                "nsteps": max(c["nsteps"] for c in conds), "protocols": kinds}
